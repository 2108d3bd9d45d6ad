"""Merging what the client processes report: pure, so the arithmetic is testable.

Invariants:

- Counters and errors of a worker are cumulative; the aggregate keeps each worker's
  latest and sums across workers, so a late or repeated tick never double counts.
- Per-second windows arrive once each (a worker forgets a window once sent); they are
  merged by window index across workers into one histogram per kind and second.
- Totals come from the workers' final results only (not from ticks), and are merged
  exactly (see :mod:`loadtest.stats`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from loadtest.recorder import KINDS
from loadtest.stats import Histogram


class Aggregate:
    """The run's figures as they arrive from the workers."""

    def __init__(self) -> None:
        self.counters: dict[int, dict[str, int]] = {}
        self.errors: dict[int, dict[str, int]] = {}
        self.windows: dict[str, dict[int, Histogram]] = {}
        self.totals: dict[str, Histogram] = {}
        self.sent: dict[int, dict[str, Any]] = {}
        self.results: dict[int, dict[str, Any]] = {}

    def progress(self, worker: int, body: dict[str, Any]) -> None:
        """A tick or a result: latest counters, and new windows."""
        self.counters[worker] = dict(body.get("counters", {}))
        self.errors[worker] = dict(body.get("errors", {}))
        for index, kinds in body.get("windows", {}).items():
            for kind, data in kinds.items():
                series = self.windows.setdefault(kind, {})
                hist = Histogram.from_json(data)
                window = int(index)
                if window in series:
                    series[window].merge(hist)
                else:
                    series[window] = hist

    def result(self, worker: int, body: dict[str, Any]) -> None:
        self.progress(worker, body)
        self.results[worker] = dict(body.get("role", {}))
        for kind, data in body.get("totals", {}).items():
            self.totals.setdefault(kind, Histogram()).merge(Histogram.from_json(data))

    def counter_sum(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for counters in self.counters.values():
            total.update(counters)
        return dict(sorted(total.items()))

    def error_sum(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for errors in self.errors.values():
            total.update(errors)
        return dict(sorted(total.items()))

    def last_window(self, kind: str, before: int) -> Histogram | None:
        """The latest complete window of ``kind`` with an index below ``before``."""
        series = self.windows.get(kind, {})
        indexes = [i for i in series if i < before]
        return series[max(indexes)] if indexes else None

    def series(self) -> dict[str, list[dict[str, Any]]]:
        """Per kind, one row per second: count and percentiles (ms)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for kind in sorted(self.windows, key=_kind_order):
            rows = []
            for index in sorted(self.windows[kind]):
                rows.append({"t": index, **self.windows[kind][index].summary()})
            out[kind] = rows
        return out


def _kind_order(kind: str) -> tuple[int, str]:
    return (KINDS.index(kind) if kind in KINDS else len(KINDS), kind)


def ordered_kinds(kinds: list[str] | dict[str, Any]) -> list[str]:
    return sorted(kinds, key=_kind_order)
