"""The garbage collector on a node: startup objects frozen, full collections at quiet
moments, pauses counted.

A node holds tens of thousands of long-lived objects from start-up (modules,
aiortc, the app), and each member connection adds a few dozen more. CPython's
full collections walk all of them, and a join burst, which creates many
objects that survive, sets off several: about 70 ms each at 2,000 members, a
pause for every join in flight. :func:`freeze_startup_objects` moves what
start-up made out of the collector's walks (``gc.freeze``); objects freed by
reference counting are still freed, and start-up objects are not expected to
become cyclic garbage.

What is left of a full collection is the walk over the members' own objects;
CPython starts one whenever objects that survived grew by a quarter, which is
what a join burst does. :class:`FullCollectionPolicy` keeps that rule, but
waits for a moment without joins (at most :data:`MAX_DEFER_S`), and
:class:`FullCollections` runs it on the loop, with CPython's own full
collections left only as a backstop. The heap's growth is read from
``sys.getallocatedblocks()`` (about 0.1 ms at 5 million blocks).
:class:`GcWatch` counts collections and their time, for ``/metrics``.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections.abc import Callable
from typing import Any

#: CPython's own full collections only after this many middle-generation ones (default 10).
FULL_BACKSTOP = 1_000
#: A full collection is due once the heap grew by this factor since the last one.
GROWTH = 1.25
#: ... and no join has started for this long,
QUIET_S = 1.0
#: ... or it has been due this long.
MAX_DEFER_S = 30.0
#: How often the loop checks.
CHECK_S = 0.5


def freeze_startup_objects() -> int:
    """Collect once, then exclude every object alive now from later collections.

    Returns how many objects are frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class FullCollectionPolicy:
    """When a full collection is due: the heap grew by :data:`GROWTH` since the last one
    (or since its lowest point after it), and either the node has been quiet for
    :data:`QUIET_S` or it has been due for :data:`MAX_DEFER_S`. Pure: times and block
    counts come in."""

    def __init__(self, blocks: int) -> None:
        self.baseline = blocks
        self.due_since: float | None = None

    def due(self, blocks: int, now: float, last_busy: float) -> bool:
        self.baseline = min(self.baseline, blocks)
        if blocks < self.baseline * GROWTH:
            self.due_since = None
            return False
        if self.due_since is None:
            self.due_since = now
        return now - last_busy >= QUIET_S or now - self.due_since >= MAX_DEFER_S

    def collected(self, blocks: int) -> None:
        self.baseline = blocks
        self.due_since = None


class FullCollections:
    """Runs :class:`FullCollectionPolicy` on the event loop every :data:`CHECK_S`.

    ``last_busy`` gives the monotonic time of the node's last join.
    """

    def __init__(self, last_busy: Callable[[], float]) -> None:
        self._last_busy = last_busy
        self.policy = FullCollectionPolicy(sys.getallocatedblocks())
        self.collections = 0
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        # Young collections as CPython has them: a larger threshold makes fewer but
        # longer pauses (28 ms at 10,000 during a join burst), a worse tail.
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, FULL_BACKSTOP)
        self._schedule()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(CHECK_S, self.check)

    def check(self) -> None:
        if self.policy.due(sys.getallocatedblocks(), time.monotonic(), self._last_busy()):
            gc.collect()
            self.collections += 1
            self.policy.collected(sys.getallocatedblocks())
        self._schedule()


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
