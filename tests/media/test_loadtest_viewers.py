"""``python -m loadtest viewers`` end to end: a spawned node, 3 decoding viewers.

Runs only inside the private network namespace (``netns``), like every WebRTC test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.netns
def test_three_viewers_all_decode_video(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "loadtest", "viewers",
        "--spawn", "1", "--viewers", "3", "--duration", "3",
        "--out", str(tmp_path), "--no-plot", "--quiet",
    ]  # fmt: skip
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert run.returncode == 0, run.stdout + run.stderr
    (path,) = tmp_path.glob("viewers-*.json")
    doc = json.loads(path.read_text())
    assert doc["ok"], doc["warnings"]
    assert doc["errors"] == {}
    assert doc["servers"]["command"].count("--rtc-ip=127.0.0.1") == 1
    assert doc["latency_ms"]["first_frame"]["count"] == 3
    assert doc["latency_ms"]["subscribe_frame"]["count"] == 3
    viewers = doc["figures"]["viewers"]
    assert viewers["with_first_frame"] == 3
    per_viewer = viewers["per_viewer"]
    assert len(per_viewer) == 3
    for viewer in per_viewer:
        assert viewer["first_frame_ms"] is not None
        assert viewer["subscribe_frame_ms"] <= viewer["first_frame_ms"]
        assert viewer["fps"] > 5
    assert "viewers" in run.stdout and "first_frame" in run.stdout


@pytest.mark.netns
def test_launch_with_a_host_a_cohost_and_viewers_on_the_ramp(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "loadtest", "launch",
        "--spawn", "1", "--members", "30", "--initial", "10", "--duration", "6",
        "--ramp", "2", "--senders", "2", "--chat-rate", "10", "--like-rate", "10",
        "--viewers", "3", "--out", str(tmp_path), "--no-plot", "--quiet",
    ]  # fmt: skip
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    (path,) = tmp_path.glob("launch-*.json")
    doc = json.loads(path.read_text())
    assert doc["ok"], doc["warnings"]
    assert doc["errors"] == {}
    counters = doc["counters"]
    assert counters["joined"] == 30  # the mix's members; the viewers count apart
    assert counters["viewer_joined"] == counters["viewer_subscribed"] == 3
    assert doc["latency_ms"]["first_frame"]["count"] == 3
    viewers = doc["figures"]["viewers"]
    assert viewers["with_first_frame"] == 3
    for viewer in viewers["per_viewer"]:
        assert viewer["fps"] > 5 and viewer["cohost_frames"] > 30
    assert doc["figures"]["chat_deliveries"]["lost"] == 0
    # the viewers arrived on the ramp: the first-frame series has more than one second
    seconds = {row["t"] for row in doc["series"]["first_frame"]}
    assert len(seconds) >= 2, seconds
    assert "media not measured" not in run.stdout
