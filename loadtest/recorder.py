"""What one client process measured: counters, errors by code, latency histograms.

Invariants:

- Every latency recorded goes into its kind's total histogram, and, once the measured
  interval has started (``t0_ns`` set), also into the histogram of its one-second
  window; windows are taken out by :meth:`Recorder.take_windows` exactly once, so
  the coordinator can merge them from all processes without double counting.
- Errors are never dropped: every error answer, failed connect and unexpected close
  is counted under its code (``error_key``), and the counters are cumulative.
- The recorder does no I/O and reads no clock; callers pass times in, which keeps it
  testable and cheap on the hot path.
"""

from __future__ import annotations

import errno
from collections import Counter
from typing import Any

from loadtest.stats import Histogram

#: Latency kinds, in the order reports show them.
KINDS = ("join", "chat", "chat_ack", "vote", "like", "first_frame", "subscribe_frame")

NS_PER_S = 1_000_000_000


class Recorder:
    """Counters, errors and latencies of one process (see the module docstring)."""

    __slots__ = ("counters", "errors", "t0_ns", "totals", "windows")

    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.totals: dict[str, Histogram] = {}
        self.windows: dict[int, dict[str, Histogram]] = {}
        self.t0_ns: int | None = None

    def latency(self, kind: str, at_ns: int, value_ns: int) -> None:
        """Record one latency of ``kind`` observed at ``at_ns`` (wall clock)."""
        us = value_ns // 1000
        total = self.totals.get(kind)
        if total is None:
            total = self.totals[kind] = Histogram()
        total.record(us)
        t0 = self.t0_ns
        if t0 is None:
            return
        index = (at_ns - t0) // NS_PER_S
        window = self.windows.get(index)
        if window is None:
            window = self.windows[index] = {}
        hist = window.get(kind)
        if hist is None:
            hist = window[kind] = Histogram()
        hist.record(us)

    def error(self, code: str) -> None:
        self.errors[code] += 1

    def take_windows(self) -> dict[str, dict[str, Any]]:
        """The windows recorded since the last call, as JSON, and forget them."""
        taken, self.windows = self.windows, {}
        return {
            str(index): {kind: hist.to_json() for kind, hist in kinds.items()}
            for index, kinds in taken.items()
        }

    def snapshot(self) -> dict[str, Any]:
        """Cumulative counters and errors (cheap: sent every second)."""
        return {"counters": dict(self.counters), "errors": dict(self.errors)}

    def totals_json(self) -> dict[str, Any]:
        return {kind: hist.to_json() for kind, hist in self.totals.items()}


def error_key(exc: BaseException) -> str:
    """A stable error code for a client-side failure (connect, timeout, close)."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is not None:
        return f"http_{status}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connect_refused"
    if isinstance(exc, ConnectionResetError):
        return "connect_reset"
    if isinstance(exc, OSError) and exc.errno is not None:
        return "os_" + errno.errorcode.get(exc.errno, str(exc.errno)).lower()
    return "client_" + type(exc).__name__
