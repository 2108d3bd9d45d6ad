"""Throttle: first change goes out at once, later ones coalesce into one pending flush."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomserver.throttle import Throttle


def test_first_change_emits_immediately() -> None:
    throttle = Throttle(0.2)
    assert throttle.changed(10.0) == 0.0
    assert throttle.pending is False


def test_change_within_interval_schedules_one_flush() -> None:
    throttle = Throttle(0.5)
    assert throttle.changed(10.0) == 0.0
    assert throttle.changed(10.1) == pytest.approx(0.4)
    assert throttle.pending is True
    assert throttle.changed(10.2) is None
    assert throttle.changed(10.45) is None
    assert throttle.pending is True


def test_flush_after_delay_emits_and_clears_pending() -> None:
    throttle = Throttle(0.5)
    throttle.changed(10.0)
    delay = throttle.changed(10.1)
    assert delay is not None
    assert throttle.flush(10.1 + delay) is True
    assert throttle.pending is False
    assert throttle.flush(10.7) is False


def test_flush_without_pending_is_false() -> None:
    throttle = Throttle(1.0)
    assert throttle.flush(0.0) is False
    throttle.changed(0.0)
    assert throttle.flush(0.5) is False


def test_change_right_after_flush_waits_a_full_interval() -> None:
    throttle = Throttle(1.0)
    throttle.changed(0.0)
    throttle.changed(0.3)
    assert throttle.flush(1.0) is True
    assert throttle.changed(1.2) == pytest.approx(0.8)
    assert throttle.flush(2.0) is True


def test_change_after_a_quiet_interval_emits_immediately() -> None:
    throttle = Throttle(1.0)
    assert throttle.changed(0.0) == 0.0
    assert throttle.changed(1.0) == 0.0  # exactly one interval later
    assert throttle.changed(5.0) == 0.0
    assert throttle.pending is False


def test_change_after_quiet_interval_following_a_flush() -> None:
    throttle = Throttle(0.5)
    throttle.changed(0.0)
    throttle.changed(0.1)
    throttle.flush(0.5)
    assert throttle.changed(3.0) == 0.0


def test_zero_interval_never_delays() -> None:
    throttle = Throttle(0.0)
    assert [throttle.changed(1.0) for _ in range(3)] == [0.0, 0.0, 0.0]


def test_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError):
        Throttle(-0.1)


@given(gaps=st.lists(st.floats(0, 1.5, allow_nan=False), min_size=1, max_size=60))
def test_rate_bound_and_no_change_left_unsent(gaps: list[float]) -> None:
    """Simulate a caller that runs its timer exactly on time."""
    interval = 0.5
    throttle = Throttle(interval)
    emissions: list[float] = []
    flush_at: float | None = None
    last_change = 0.0
    now = 0.0
    for gap in gaps:
        now += gap
        if flush_at is not None and flush_at <= now:
            assert throttle.flush(flush_at)
            emissions.append(flush_at)
            flush_at = None
        last_change = now
        decision = throttle.changed(now)
        if decision == 0.0:
            emissions.append(now)
        elif decision is not None:
            assert decision > 0
            assert flush_at is None
            flush_at = now + decision
        else:
            assert flush_at is not None
    if flush_at is not None:
        assert throttle.flush(flush_at)
        emissions.append(flush_at)
    assert throttle.pending is False
    # never more often than once per interval
    for earlier, later in itertools.pairwise(emissions):
        assert later - earlier >= interval - 1e-9
    # the last change is covered by an emission at or after it
    assert emissions[-1] >= last_change


def test_float_rounding_never_leaves_a_pending_flush_behind_a_zero_delay() -> None:
    # Here now - last is 0.4999999999999991 (< interval) while last + interval - now
    # rounds to 0.0: the answer must be "emit now" with nothing left pending.
    throttle = Throttle(0.5)
    assert throttle.changed(7.705231398308006) == 0.0
    assert throttle.changed(8.205231398308005) == 0.0
    assert throttle.pending is False
