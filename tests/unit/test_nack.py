"""NACK scheduling: ask at the gap, again every repair round trip, within bounds."""

from __future__ import annotations

from media.nack import MAX_TRIES, RETRY_INITIAL_S, RETRY_MIN_S, WINDOW, NackSchedule


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
