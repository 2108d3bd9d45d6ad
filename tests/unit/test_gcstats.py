"""The node's garbage collector: the watch counts collections and their time; full
collections wait for a lull in joins."""

from __future__ import annotations

import gc

from roomserver.gcstats import (
    FULL_BACKSTOP,
    MAX_DEFER_S,
    QUIET_S,
    FullCollectionPolicy,
    FullCollections,
    GcWatch,
)


def test_the_watch_counts_each_collection_by_generation() -> None:
    watch = GcWatch()
    gc.callbacks.append(watch)
    try:
        gc.collect(0)
        gc.collect(2)
        gc.collect(2)
    finally:
        gc.callbacks.remove(watch)
    assert watch.collections[0] >= 1
    assert watch.collections[2] == 2
    assert watch.seconds[2] > 0
    assert watch.pause_seconds == sum(watch.seconds)
    gc.collect(2)  # no longer installed: nothing more counted
    assert watch.collections[2] == 2


def test_a_full_collection_is_due_once_the_heap_grew_by_a_quarter_and_joins_paused() -> None:
    policy = FullCollectionPolicy(blocks=1000)
    assert not policy.due(1240, now=100.0, last_busy=0.0)  # grown, but under a quarter
    assert policy.due(1250, now=100.0, last_busy=0.0)  # a quarter, and quiet for long
    assert not policy.due(1300, now=100.0, last_busy=99.5)  # joins going on: it waits
    policy.collected(1300)
    assert not policy.due(1600, now=101.0, last_busy=0.0)  # counted from the new baseline
    assert policy.due(1625, now=101.0, last_busy=0.0)


def test_a_full_collection_waits_for_a_lull_at_most_max_defer_s() -> None:
    policy = FullCollectionPolicy(blocks=1000)
    assert not policy.due(2000, now=10.0, last_busy=10.0)
    assert not policy.due(2000, now=10.0 + MAX_DEFER_S - 1, last_busy=10.0 + MAX_DEFER_S - 1)
    assert policy.due(2000, now=10.0 + MAX_DEFER_S, last_busy=10.0 + MAX_DEFER_S)
    assert not policy.due(1100, now=50.0, last_busy=50.0)  # shrank back: no longer due
    assert policy.due(2000, now=51.0, last_busy=51.0 - QUIET_S)  # and due again, counted anew


def test_growth_is_counted_from_the_heaps_lowest_point_since_the_last_collection() -> None:
    policy = FullCollectionPolicy(blocks=10_000)
    assert not policy.due(4000, now=1.0, last_busy=0.0)  # members left: the heap shrank
    assert policy.due(5000, now=2.0, last_busy=0.0)  # a quarter above 4,000


async def test_the_loop_runs_a_full_collection_when_due_and_gc_backstops_the_rest() -> None:
    before = gc.get_threshold()
    watch = GcWatch()
    gc.callbacks.append(watch)
    collections = FullCollections(last_busy=lambda: 0.0)
    try:
        collections.start()
        assert gc.get_threshold() == (before[0], before[1], FULL_BACKSTOP)
        collections.check()  # the heap has not grown since it started: nothing
        assert collections.collections == 0 and watch.collections[2] == 0
        collections.policy.baseline = 1  # as if the heap had grown since
        collections.check()
        assert collections.collections == 1 and watch.collections[2] == 1
        assert collections.policy.baseline > 1  # counted from now on
    finally:
        collections.stop()
        gc.callbacks.remove(watch)
        gc.set_threshold(*before)
