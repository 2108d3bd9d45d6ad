"""Latency histograms and percentiles: pure, no clock, no I/O.

Invariants kept by :class:`Histogram`:

- Values are non-negative integers in microseconds. A value is counted in exactly one
  bucket; buckets below ``2 * SUB_BUCKETS`` hold one value each (exact), and above
  that every power of two is split into ``SUB_BUCKETS`` equal buckets, so a bucket's
  width is at most ``1 / SUB_BUCKETS`` (under 0.8 %) of its values.
- ``count`` is always the sum of the bucket counts; ``min`` and ``max`` are the exact
  extreme values seen, and a reported percentile is clamped to ``[min, max]``, so the
  100th percentile is the true maximum.
- Merging is exact and commutative: merging the histograms of several processes gives
  the histogram of all their values, which is why workers ship raw buckets rather
  than percentiles (percentiles of parts do not combine).
- Percentiles use the nearest-rank rule: ``percentile(p)`` is the smallest bucket value
  at or below which at least ``p`` % of the values lie.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

#: Sub-buckets per power of two; the relative bucket width is at most 1/SUB_BUCKETS.
SUB_BUCKETS = 128
_EXACT_BELOW = 2 * SUB_BUCKETS
_SHIFT_BASE = SUB_BUCKETS.bit_length()  # v >> shift lands in [SUB_BUCKETS, 2*SUB_BUCKETS)

#: The percentiles every report shows.
REPORTED = (50.0, 95.0, 99.0)


def bucket_of(value: int) -> int:
    """The bucket index of ``value`` (µs); monotonic in ``value``."""
    if value < _EXACT_BELOW:
        return value if value > 0 else 0
    shift = value.bit_length() - _SHIFT_BASE
    return SUB_BUCKETS * shift + (value >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """The lowest and highest value (inclusive, µs) that fall in bucket ``index``."""
    if index < _EXACT_BELOW:
        return index, index
    shift = index // SUB_BUCKETS - 1
    mantissa = index - SUB_BUCKETS * shift
    return mantissa << shift, ((mantissa + 1) << shift) - 1


class Histogram:
    """Counts of latencies in log-linear buckets (see the module docstring)."""

    __slots__ = ("buckets", "count", "max", "min", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0
        self.min = 0
        self.max = 0

    def record(self, value: int) -> None:
        """Count one value in µs; negative values (clock steps) count as 0."""
        if value < 0:
            value = 0
        index = value if value < _EXACT_BELOW else bucket_of(value)
        buckets = self.buckets
        buckets[index] = buckets.get(index, 0) + 1
        if self.count == 0 or value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.count += 1
        self.total += value

    def merge(self, other: Histogram) -> None:
        """Add every value of ``other`` to this histogram."""
        if other.count == 0:
            return
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n
        self.min = other.min if self.count == 0 else min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.count += other.count
        self.total += other.total

    def percentile(self, p: float) -> int:
        """The nearest-rank ``p``-th percentile in µs (bucket midpoint, clamped); 0 if empty."""
        if not 0.0 <= p <= 100.0:
            raise ValueError(f"percentile must be within 0-100, got {p}")
        if self.count == 0:
            return 0
        rank = max(1, math.ceil(p / 100.0 * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                low, high = bucket_bounds(index)
                return min(max((low + high) // 2, self.min), self.max)
        return self.max  # unreachable while count == sum(buckets)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def summary(self) -> dict[str, float | int]:
        """Count and the reported percentiles in milliseconds, for tables and JSON."""
        out: dict[str, float | int] = {"count": self.count}
        for p in REPORTED:
            out[f"p{p:g}_ms"] = round(self.percentile(p) / 1000.0, 3)
        out["max_ms"] = round(self.max / 1000.0, 3)
        out["mean_ms"] = round(self.mean / 1000.0, 3)
        return out

    def to_json(self) -> dict[str, Any]:
        """The raw histogram: ``[low_us, high_us, count]`` per non-empty bucket, ascending."""
        return {
            "count": self.count,
            "total_us": self.total,
            "min_us": self.min,
            "max_us": self.max,
            "buckets": [[*bucket_bounds(i), self.buckets[i]] for i in sorted(self.buckets)],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Histogram:
        """The inverse of :meth:`to_json` (what workers send the coordinator)."""
        hist = cls()
        for low, _high, n in data.get("buckets", ()):
            index = bucket_of(int(low))
            hist.buckets[index] = hist.buckets.get(index, 0) + int(n)
        hist.count = int(data.get("count", 0))
        hist.total = int(data.get("total_us", 0))
        hist.min = int(data.get("min_us", 0))
        hist.max = int(data.get("max_us", 0))
        if hist.count != sum(hist.buckets.values()):
            raise ValueError("histogram count does not match its buckets")
        return hist

    @classmethod
    def of(cls, values: Iterable[int]) -> Histogram:
        hist = cls()
        for value in values:
            hist.record(value)
        return hist


def merge_all(histograms: Iterable[Histogram]) -> Histogram:
    """One histogram holding every value of ``histograms``."""
    out = Histogram()
    for hist in histograms:
        out.merge(hist)
    return out


def rate(count: int, seconds: float) -> float:
    """Events per second, 0 for an empty interval (a run stopped before it began)."""
    return count / seconds if seconds > 0 else 0.0
