"""Time sources, passed in so that rules can be tested without sleeping."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Clock:
    """Wall time for timestamps, monotonic time for rates and timers."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def mono(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK = Clock()
