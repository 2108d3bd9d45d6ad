"""The node's garbage-collector watch counts collections and their time."""

from __future__ import annotations

import gc

from roomserver.gcstats import GcWatch


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
