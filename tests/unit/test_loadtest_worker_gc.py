"""A load worker keeps its own garbage collector out of the latencies it measures."""

from __future__ import annotations

import gc

from loadtest.worker import GC_FULL_THRESHOLD, GC_THRESHOLD, quiet_gc


def test_quiet_gc_freezes_setup_objects_and_makes_collections_rare() -> None:
    before = gc.get_threshold()
    kept = [object() for _ in range(10)]  # alive now: frozen with the rest
    try:
        quiet_gc()
        threshold = gc.get_threshold()
        assert threshold[0] == GC_THRESHOLD and threshold[2] == GC_FULL_THRESHOLD
        assert threshold[1] == before[1]
        assert gc.get_freeze_count() > len(kept)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
