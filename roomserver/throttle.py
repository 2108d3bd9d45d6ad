"""Coalescing of high-rate events: ``poll.tally`` (5/s per poll), ``likes`` (2/s per room),
``presence`` (1/s per room).

Invariants kept by :class:`Throttle`:

- Two emissions are never less than ``interval`` apart, provided the caller flushes no
  earlier than the delay :meth:`Throttle.changed` returned.
- A change is never left unsent: a change that cannot go out at once leaves a flush
  pending, and the flush emits the state *at flush time*, so the latest state wins and
  any number of changes within one interval cost one event.
- At most one flush is pending at a time, so the caller arms at most one timer.

The throttle holds no state of the event itself, only timing; time is passed in (seconds
from a monotonic clock) so the rules are deterministic.
"""

from __future__ import annotations


class Throttle:
    """Decides when a coalesced event may go out: at most one per ``interval`` seconds,
    the latest state wins, and a change is never left unsent."""

    __slots__ = ("_last_emitted_at", "_pending", "interval")

    def __init__(self, interval: float) -> None:
        if interval < 0:
            raise ValueError(f"interval must be >= 0, got {interval}")
        self.interval = interval
        self._last_emitted_at: float | None = None
        self._pending = False

    @property
    def pending(self) -> bool:
        """True while a flush is scheduled and has not run yet."""
        return self._pending

    def changed(self, now: float) -> float | None:
        """The state changed at ``now``: when should the event go out?

        ``0.0``: emit now (recorded as emitted at ``now``). A positive delay: schedule a
        flush in that many seconds (a flush is now pending). ``None``: a flush is already
        pending and will carry this change too.
        """
        if self._pending:
            return None
        if self._last_emitted_at is not None:
            # One subtraction decides both the branch and the delay, so float rounding can
            # never yield a "pending" answer of 0.0.
            delay = self._last_emitted_at + self.interval - now
            if delay > 0:
                self._pending = True
                return delay
        self._last_emitted_at = now
        return 0.0

    def flush(self, now: float) -> bool:
        """The scheduled delay elapsed: True if the caller should emit now (recorded as
        emitted at ``now``), False if nothing was pending."""
        if not self._pending:
            return False
        self._pending = False
        self._last_emitted_at = now
        return True
