"""When each simulated action happens: pure functions of the options, in seconds from t0.

Invariants:

- Schedules are open-loop: an action's time never depends on how fast the server
  answered earlier ones, so a slow server shows up as latency rather than as a
  quietly lower offered load (no coordinated omission).
- Every schedule is computed globally (for all members) and then split by worker, so
  the load the server sees does not depend on how many client processes share it.
- Schedules are finite and sorted; every time is ``>= 0``. Randomised schedules take
  a seed, so a run can be repeated exactly.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

ArrivalMode = Literal["rate", "once", "waves"]


@dataclass(frozen=True, slots=True)
class Arrivals:
    """How members arrive: at ``rate`` per second, all at once, or in waves."""

    mode: ArrivalMode = "once"
    rate: float = 0.0
    wave: int = 0
    wave_interval_s: float = 1.0

    def times(self, n: int) -> list[float]:
        """The start time of each of ``n`` arrivals, in order."""
        if n <= 0:
            return []
        if self.mode == "once":
            return [0.0] * n
        if self.mode == "rate":
            if not self.rate > 0:
                raise ValueError("arrival rate must be > 0")
            return [i / self.rate for i in range(n)]
        if self.wave < 1:
            raise ValueError("wave size must be >= 1")
        return [(i // self.wave) * self.wave_interval_s for i in range(n)]

    def describe(self) -> str:
        if self.mode == "once":
            return "all at once"
        if self.mode == "rate":
            return f"{self.rate:g}/s"
        return f"waves of {self.wave} every {self.wave_interval_s:g}s"


def even(count: int, duration_s: float, offset_s: float = 0.0) -> list[float]:
    """``count`` times spread evenly over ``[offset, offset + duration)``."""
    if count <= 0:
        return []
    step = duration_s / count
    return [offset_s + i * step for i in range(count)]


def paced(rate: float, duration_s: float, phase_s: float = 0.0) -> list[float]:
    """Times at ``rate`` per second from ``phase`` until ``duration`` (exclusive)."""
    if not rate > 0 or duration_s <= 0:
        return []
    step = 1.0 / rate
    count = math.ceil(max(0.0, duration_s - phase_s) * rate - 1e-9)
    return [phase_s + i * step for i in range(count) if phase_s + i * step < duration_s]


def uniform(count: int, start_s: float, end_s: float, seed: int) -> list[float]:
    """``count`` times drawn uniformly from ``[start, end)``, sorted, reproducible."""
    if count <= 0:
        return []
    rng = random.Random(seed)
    low, high = min(start_s, end_s), max(start_s, end_s)
    return sorted(low + rng.random() * (high - low) for _ in range(count))


def split(indexes: range | list[int], workers: int, worker: int) -> list[int]:
    """The members that ``worker`` of ``workers`` runs: round-robin by index."""
    if workers < 1 or not 0 <= worker < workers:
        raise ValueError(f"bad worker {worker} of {workers}")
    return [i for i in indexes if i % workers == worker]
