"""The pure parts of the ``viewers`` scenario: arrivals, percentiles, figures, checks."""

from __future__ import annotations

import argparse

import pytest

from loadtest.cli import default_procs, parser
from loadtest.scenarios import SCENARIOS
from loadtest.scenarios.viewers import (
    arrival_offsets,
    is_loopback_url,
    percentile,
    steady_fps,
    summarize,
    viewers_checks,
)


def test_loopback_urls() -> None:
    assert is_loopback_url("http://127.0.0.1:8080")
    assert is_loopback_url("http://127.0.0.5")
    assert is_loopback_url("https://localhost:443")
    assert is_loopback_url("http://[::1]:80")
    assert not is_loopback_url("http://10.0.0.1:8080")
    assert not is_loopback_url("https://live.example.com")


def test_arrivals_all_at_once_or_at_a_rate() -> None:
    assert arrival_offsets(3, None) == [0.0, 0.0, 0.0]
    assert arrival_offsets(3, 2.0) == [0.0, 0.5, 1.0]
    assert arrival_offsets(0, 5.0) == []


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) == 0.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0


def test_steady_fps_leaves_out_the_first_half() -> None:
    # a burst of 10 frames at t=0, then 10 frames/s from t=1 to t=5
    times = [0.0] * 10 + [1 + k / 10 for k in range(40)]
    assert steady_fps(times, 5.0) == pytest.approx(10.0, abs=0.5)
    assert steady_fps([1.0], 5.0) == 0.0
    assert steady_fps([], 5.0) == 0.0


def test_summary_and_checks() -> None:
    records = [
        {"first_frame_ms": 100.0, "frames": 90, "fps": 30.0, "steady_fps": 30.0},
        {"first_frame_ms": 120.0, "frames": 60, "fps": 20.0, "steady_fps": 29.0},
        {"first_frame_ms": None, "fps": 0.0},
    ]
    figures = summarize(records, 3)
    assert figures["with_first_frame"] == 2
    assert figures["frames_total"] == 150
    assert figures["fps_per_viewer"]["min"] == 0.0
    assert figures["fps_per_viewer"]["mean_of_viewers_with_frames"] == 25.0
    checks = {c.name: c.ok for c in viewers_checks(figures, {"no_first_frame": 1}, 5.0)}
    assert checks == {
        "every viewer decoded a first frame": False,
        "every viewer decoded more than 5 frames/s": False,
        "no errors": False,
    }
    good = summarize(records[:2], 2)
    assert all(c.ok for c in viewers_checks(good, {}, 5.0))
    missing = summarize(records[:1], 2)  # a client process did not report one viewer
    assert not all(c.ok for c in viewers_checks(missing, {}, 5.0))


def _plan(*argv: str) -> argparse.Namespace:
    return parser().parse_args(["viewers", "--spawn", "1", *argv])


def test_plan_defaults_and_procs() -> None:
    scenario = SCENARIOS["viewers"]
    plan = scenario.plan(_plan())
    assert plan.members == 20 and plan.duration_s == 10.0
    assert plan.params["publish"] and plan.params["rate"] is None
    assert default_procs(plan, cpus=8) == 2
    assert default_procs(plan, cpus=1) == 1
    assert default_procs(scenario.plan(_plan("--viewers", "50")), cpus=8) == 5
    assert "--rtc-ip=127.0.0.1" in scenario.spawn_args  # type: ignore[attr-defined]


def test_plan_refuses_what_cannot_run() -> None:
    scenario = SCENARIOS["viewers"]
    with pytest.raises(ValueError, match="--publisher"):
        scenario.plan(_plan("--no-publish"))
    with pytest.raises(ValueError, match="--publisher"):
        scenario.plan(_plan("--publisher", "alice"))
    plan = scenario.plan(_plan("--publisher", "alice", "--room", "show"))
    assert not plan.params["publish"]
    with pytest.raises(ValueError, match="--rate"):
        scenario.plan(_plan("--viewers", "20", "--rate", "1", "--duration", "5"))
