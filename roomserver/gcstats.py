"""The garbage collector on a node: startup objects frozen, pauses counted.

A node holds tens of thousands of long-lived objects from start-up (modules,
aiortc, the app), and each member connection adds a few dozen more. CPython's
full collections walk all of them, and a join burst, which creates many
objects that survive, sets off several: about 70 ms each at 2,000 members, a
pause for every join in flight. :func:`freeze_startup_objects` moves what
start-up made out of the collector's walks (``gc.freeze``); objects freed by
reference counting are still freed, and start-up objects are not expected to
become cyclic garbage. :class:`GcWatch` counts collections and their time,
for ``/metrics``.
"""

from __future__ import annotations

import gc
import time
from typing import Any


def freeze_startup_objects() -> int:
    """Collect once, then exclude every object alive now from later collections.

    Returns how many objects are frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class GcWatch:
    """Collections and the CPU time spent in them, by generation (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = int(info.get("generation", 2))
        self.collections[generation] += 1
        self.seconds[generation] += time.perf_counter() - self._started

    @property
    def pause_seconds(self) -> float:
        return sum(self.seconds)


_watch: GcWatch | None = None


def watch() -> GcWatch:
    """The process's watch, installed on first use."""
    global _watch
    if _watch is None:
        _watch = GcWatch()
        gc.callbacks.append(_watch)
    return _watch
