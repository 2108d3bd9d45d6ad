"""Open-loop schedules of the load tool: exact counts, in bounds, split without overlap."""

from __future__ import annotations

import pytest

from loadtest.plan import Mix, ws_url
from loadtest.schedule import Arrivals, even, paced, split, uniform


def test_paced_sends_exactly_rate_times_duration() -> None:
    assert len(paced(20, 2)) == 40
    assert len(paced(3, 1)) == 3
    assert paced(2, 1) == [0.0, 0.5]
    # senders with phases together send the total rate
    senders, total_rate = 10, 20.0
    times = sorted(
        t for s in range(senders) for t in paced(total_rate / senders, 2, s / total_rate)
    )
    assert len(times) == 40 and times == pytest.approx([i / 20 for i in range(40)])


def test_paced_is_empty_for_nothing_to_do() -> None:
    assert paced(0, 10) == [] and paced(5, 0) == []


def test_arrivals() -> None:
    assert Arrivals("once").times(3) == [0.0, 0.0, 0.0]
    assert Arrivals("rate", rate=4).times(3) == [0.0, 0.25, 0.5]
    assert Arrivals("waves", wave=2, wave_interval_s=1.5).times(5) == [0, 0, 1.5, 1.5, 3.0]
    assert Arrivals().times(0) == []
    with pytest.raises(ValueError):
        Arrivals("rate", rate=0).times(1)
    with pytest.raises(ValueError):
        Arrivals("waves", wave=0).times(1)


def test_uniform_is_sorted_bounded_and_reproducible() -> None:
    times = uniform(100, 1.0, 3.0, seed=5)
    assert times == sorted(times) and all(1.0 <= t < 3.0 for t in times)
    assert times == uniform(100, 1.0, 3.0, seed=5) != uniform(100, 1.0, 3.0, seed=6)


def test_even() -> None:
    assert even(4, 2.0, 1.0) == [1.0, 1.5, 2.0, 2.5]


def test_split_covers_every_member_once() -> None:
    parts = [split(range(10), 3, w) for w in range(3)]
    assert sorted(i for part in parts for i in part) == list(range(10))
    with pytest.raises(ValueError):
        split(range(3), 2, 2)


def test_mix_validates_itself() -> None:
    with pytest.raises(ValueError):
        Mix(members=10, initial=5, senders=6, chat_rate=1)  # senders join in setup
    with pytest.raises(ValueError):
        Mix(members=10, initial=10, senders=1)  # senders need a rate
    mix = Mix(members=10, initial=10, senders=2, chat_rate=5, rooms=2)
    assert [mix.role(i) for i in range(3)] == ["moderator", "moderator", "member"]
    assert mix.room_index(3) == 1
    assert mix.offered_events_per_s() == 25.0


def test_ws_url() -> None:
    assert ws_url("http://127.0.0.1:8080/") == "ws://127.0.0.1:8080/ws"
    assert ws_url("https://live.example.com") == "wss://live.example.com/ws"
