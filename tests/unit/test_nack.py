"""NACK scheduling: ask at the gap, again every repair round trip, within bounds."""

from __future__ import annotations

import pytest

from media.nack import (
    GUARD_MAX_S,
    GUARD_MIN_S,
    MAX_TRIES,
    RETRY_INITIAL_S,
    RETRY_MIN_S,
    WINDOW,
    NackSchedule,
    ResendGuard,
)


def test_a_gap_is_asked_for_at_once_and_nothing_while_none_is_missing() -> None:
    nacks = NackSchedule()
    assert nacks.add(100, 0.0) == [] and nacks.add(101, 0.001) == []
    assert nacks.add(104, 0.002) == [102, 103]
    assert nacks.missing == [102, 103]
    assert nacks.add(105, 0.003) == []  # asked already, not yet due again


def test_a_missing_packet_is_asked_for_again_each_retry_interval_until_it_comes() -> None:
    nacks = NackSchedule()
    nacks.add(1, 0.0)
    assert nacks.add(3, 0.0) == [2]
    assert nacks.add(4, RETRY_INITIAL_S / 2) == []
    assert nacks.add(5, RETRY_INITIAL_S) == [2]  # no new gap: asked again all the same
    assert nacks.add(2, RETRY_INITIAL_S + 0.001) == []
    assert nacks.missing == [] and nacks.recovered == 1
    assert nacks.add(6, 1.0) == []


def test_the_retry_interval_follows_the_measured_repair_time() -> None:
    nacks = NackSchedule()
    nacks.add(0, 0.0)
    now = 0.0
    for seq in range(2, 200, 2):  # every other packet lost, each repaired in 2 ms
        now += 0.01
        assert nacks.add(seq, now) == [seq - 1]
        nacks.add(seq - 1, now + 0.002)
    assert nacks.repair_s is not None and abs(nacks.repair_s - 0.002) < 1e-6
    assert nacks.retry_s == RETRY_MIN_S  # 1.5 x 2 ms is under the floor
    nacks.repair_s = 0.04
    assert abs(nacks.retry_s - 0.06) < 1e-9


def test_a_packet_is_given_up_after_max_tries_or_once_out_of_the_window() -> None:
    nacks = NackSchedule()
    nacks.add(0, 0.0)
    nacks.add(2, 0.0)
    asked = 1
    now = 0.0
    for seq in range(3, 3 + 5 * MAX_TRIES):
        now += RETRY_INITIAL_S
        asked += nacks.add(seq, now).count(1)
    assert asked == MAX_TRIES and nacks.missing == [] and nacks.given_up == 1

    far = NackSchedule()
    far.add(0, 0.0)
    far.add(2, 0.0)
    for seq in range(3, WINDOW + 3):
        far.add(seq, 0.0)
    assert far.add(WINDOW + 3, 0.0) == [] and far.missing == [] and far.given_up == 1


def test_a_jump_past_the_window_is_a_restart_not_a_loss() -> None:
    nacks = NackSchedule()
    nacks.add(10, 0.0)
    assert nacks.add(10 + WINDOW + 5, 0.0) == [] and nacks.missing == []
    assert nacks.add(65535, 0.0) == []  # far behind: a late packet, ignored


def test_sequence_numbers_wrap() -> None:
    nacks = NackSchedule()
    nacks.add(65534, 0.0)
    assert nacks.add(1, 0.0) == [65535, 0]
    nacks.add(0, 0.001)
    assert nacks.missing == [65535]


def test_resend_guard_lets_a_packet_go_again_once_per_interval() -> None:
    guard = ResendGuard()
    assert guard.interval_s == GUARD_MIN_S
    assert guard.allow(7, 1.0)
    assert not guard.allow(7, 1.0 + GUARD_MIN_S / 2)  # asked again before it could arrive
    assert guard.allow(7, 1.0 + GUARD_MIN_S + 1e-6)
    assert guard.allow(8, 1.0)  # another packet: its own interval


def test_resend_guard_waits_longer_for_a_receiver_that_runs_behind() -> None:
    guard = ResendGuard()
    guard.first_request(7, 0.030)  # asked for 30 ms after it was sent: 30 ms behind
    assert guard.lag_s == 0.030
    assert guard.interval_s == pytest.approx(0.045)
    assert guard.allow(7, 1.0)
    assert not guard.allow(7, 1.020)  # a request the receiver made before reading the copy
    assert guard.allow(7, 1.046)
    guard.first_request(7, 5.0)  # already sent again: not a first request, no sample
    assert guard.lag_s == 0.030
    for seq in range(100, 200):
        guard.first_request(seq, 1.0)
    assert guard.interval_s == GUARD_MAX_S  # bounded


def test_a_packet_sent_late_counts_as_just_sent() -> None:
    guard = ResendGuard()
    guard.sent(9, 2.0)  # it filled a gap the receiver was asking about
    assert not guard.allow(9, 2.001)
    assert guard.allow(9, 2.0 + GUARD_MIN_S + 1e-6)


def test_resend_guard_forgets_old_packets_past_its_limit() -> None:
    guard = ResendGuard(limit=4)
    for seq in range(4):
        assert guard.allow(seq, 0.0)
    assert guard.allow(10, 1.0)  # over the limit: entries older than the interval dropped
    assert guard.allow(0, 1.0)  # forgotten, and long past its interval anyway
    assert not guard.allow(10, 1.001)
