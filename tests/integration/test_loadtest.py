"""``python -m loadtest`` end to end, at a tiny size, against real node processes.

Each test runs the tool as a subprocess (as an operator would), reads the JSON
document it wrote, and checks that the figures are consistent with what was asked:
every member joined, every message reached every member exactly once, every vote is
in the final tally. These are the assertions that fail if the server (or the tool)
loses, duplicates or miscounts anything. Every process is stopped in a ``finally``
block and every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SECRET = "loadtest-secret-0123456789-abcdefghijk"
RUN_TIMEOUT_S = 90.0
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSERVER_")}
    out["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), out.get("PYTHONPATH")]))
    return out


def loadtest(out_dir: Path, *args: str) -> tuple[int, dict[str, Any], str, str]:
    """Run the tool to completion: exit code, its JSON document, stdout, stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest", *args, "--out", str(out_dir), "--quiet"],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    return proc.returncode, read_doc(out_dir), out, err


def read_doc(out_dir: Path) -> dict[str, Any]:
    docs = sorted(out_dir.glob("*.json"))
    assert len(docs) == 1, f"expected one JSON document, got {docs}"
    doc: dict[str, Any] = json.loads(docs[0].read_text())
    return doc


def assert_clean(doc: dict[str, Any], members: int) -> None:
    """What every room-core run must show: all joined, no errors, no close, checks pass."""
    assert doc["counters"]["joined"] == members, doc["counters"]
    assert doc["errors"] == {}, doc["errors"]
    assert doc["counters"].get("closes", 0) == 0
    assert doc["checks"] and all(c["ok"] for c in doc["checks"]), doc["checks"]
    assert doc["ok"] is True and doc["interrupted"] is False
    assert doc["latency_ms"]["join"]["count"] == members
    # Every client process was measured. Their CPU may read 0: /proc counts 10 ms ticks,
    # and a small run on a fast machine can stay under one.
    clients = doc["cpu"]["client_processes"]
    assert clients and all(v is not None and v >= 0 for v in clients.values()), doc["cpu"]
    assert doc["cpu"]["client_s"] >= 0
    # Measured (not None); /proc counts CPU in 10 ms ticks, so a 20-member join may
    # round to 0.0 (the chat scenario below checks that real work shows up).
    assert doc["cpu"]["server_s"] is not None and doc["cpu"]["server_s"] >= 0


def test_join(tmp_path: Path) -> None:
    code, doc, out, err = loadtest(
        tmp_path, "join", "--spawn", "1", "--members", "20", "--rooms", "2",
        "--waves", "10", "--wave-interval", "0.3", "--hold", "0.5", "--procs", "2",
    )  # fmt: skip
    assert code == 0, err
    assert_clean(doc, 20)
    join = doc["latency_ms"]["join"]
    assert 0 < join["p50_ms"] <= join["p95_ms"] <= join["p99_ms"] <= join["max_ms"]
    assert doc["rates"]["joins_per_s"] > 0
    # two waves 0.3 s apart: the joins span at least the gap between them
    assert doc["rates"]["join_span_s"] >= 0.3
    assert sum(row["count"] for row in doc["series"]["join"]) == 20
    assert "join" in out and "[PASS] every member joined" in out
    assert (tmp_path / Path(sorted(tmp_path.glob("*.json"))[0].stem + ".png")).exists()


def test_chat_counts_every_delivery_exactly(tmp_path: Path) -> None:
    members, rate, seconds = 20, 20, 2
    code, doc, _, err = loadtest(
        tmp_path, "chat", "--spawn", "1", "--members", str(members), "--senders", "4",
        "--rate", str(rate), "--duration", str(seconds), "--encoding", "msgpack",
        "--procs", "2",
    )  # fmt: skip
    assert code == 0, err
    assert_clean(doc, members)
    messages = rate * seconds
    assert doc["counters"]["chat_sent"] == doc["counters"]["chat_accepted"] == messages
    chat = doc["figures"]["chat_deliveries"]
    assert chat["expected"] == members * messages
    assert chat["delivered"] == members * messages == doc["counters"]["deliveries"]
    assert chat["lost"] == chat["duplicated"] == chat["out_of_order"] == 0
    assert chat["unacknowledged"] == 0
    assert doc["latency_ms"]["chat"]["count"] == members * messages
    assert doc["latency_ms"]["chat_ack"]["count"] == messages
    assert doc["rates"]["deliveries_per_server_cpu_s"] > 0
    assert doc["config"]["encoding"] == "msgpack"


def test_votes_against_a_running_node(tmp_path: Path) -> None:
    """The ``--url`` path: a node the tool did not start, measured by its PID."""
    members = 30
    log = open(tmp_path / "node.log", "wb")  # noqa: SIM115 - closed in finally
    node = subprocess.Popen(
        [sys.executable, "-m", "roomserver.cli", "serve", "--host", "127.0.0.1", "--port", "0",
         "--secret", SECRET, "--log-level", "warning"],
        cwd=ROOT, env=env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        url = wait_listening(tmp_path / "node.log", node)
        refused, failed, _, _ = loadtest(
            tmp_path / "refused", "votes", "--url", url, "--secret", "w" * 40,
            "--members", "2", "--window", "1",
        )  # fmt: skip
        out_dir = tmp_path / "out"
        code, doc, _, err = loadtest(
            out_dir, "votes", "--url", url, "--secret", SECRET, "--members", str(members),
            "--window", "1", "--options", "3", "--server-pid", str(node.pid),
        )  # fmt: skip
    finally:
        node.terminate()
        try:
            node.wait(10)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait(5)
        log.close()
    assert refused == 1 and failed["ok"] is False
    assert "401" in failed["failure"] and failed["counters"] == {}
    assert code == 0, err
    assert_clean(doc, members)
    votes = doc["figures"]["votes"]
    assert votes["accepted"] == members == doc["counters"]["vote_accepted"]
    assert votes["final_tally"] == votes["expected_tally"] == [10, 10, 10]
    assert votes["final_total"] == members
    assert doc["latency_ms"]["vote"]["count"] == members
    assert doc["drain"] == {}


def test_launch_mix_without_media(tmp_path: Path) -> None:
    members = 40
    code, doc, out, err = loadtest(
        tmp_path, "launch", "--spawn", "1", "--members", str(members), "--initial", "10",
        "--duration", "3", "--ramp", "1.5", "--senders", "2", "--chat-rate", "10",
        "--like-rate", "10",
    )  # fmt: skip
    assert code == 0, err
    assert_clean(doc, members)
    assert "media not measured" in out and "media not measured" in err
    counters = doc["counters"]
    assert counters["chat_accepted"] == 30 and counters["like_accepted"] == 30
    assert counters["vote_accepted"] == members
    chat = doc["figures"]["chat_deliveries"]
    # late joiners are owed only what came after their snapshot
    assert 10 * 30 < chat["expected"] < members * 30
    assert chat["delivered"] == chat["expected"] and chat["lost"] == chat["duplicated"] == 0
    assert doc["figures"]["likes"] == {"accepted": 30, "room_total": 30}
    assert doc["figures"]["votes"]["final_total"] == members
    for kind in ("join", "chat", "chat_ack", "vote", "like"):
        assert doc["series"][kind], kind


def test_soak_reports_server_memory(tmp_path: Path) -> None:
    code, doc, out, err = loadtest(
        tmp_path, "soak", "--spawn", "1", "--members", "20", "--duration", "2",
        "--like-rate", "5",
    )  # fmt: skip
    assert code == 0, err
    assert_clean(doc, 20)
    (rss,) = doc["memory"]["server_rss"].values()
    assert rss["start_kib"] > 10_000 and rss["end_kib"] > 10_000
    assert rss["warm_kib"] is not None and rss["growth_after_warm_kib"] is not None
    assert len(doc["memory"]["samples"]) >= 2
    assert "RSS" in out
    assert doc["figures"]["chat_deliveries"]["lost"] == 0


def test_ctrl_c_prints_the_figures_so_far_and_stops_everything(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest", "chat", "--spawn", "1", "--members", "20",
         "--rate", "10", "--duration", "60", "--out", str(tmp_path)],
        cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait for the first progress line
            line = proc.stderr.readline()
            if line.startswith("[chat") or not line:
                break
        assert line.startswith("[chat"), line
        os.killpg(proc.pid, signal.SIGINT)  # like Ctrl-C: the whole process group
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    doc = read_doc(tmp_path)
    assert doc["interrupted"] is True and doc["ok"] is False
    assert doc["phases"]["measured_s"] < 30
    accepted = doc["counters"]["chat_accepted"]
    assert accepted > 0
    assert doc["figures"]["chat_deliveries"]["delivered"] == 20 * accepted
    assert "INTERRUPTED" in out and "figures so far" in err
    node_pids = doc["servers"]["pids"]
    assert node_pids and not any(alive(pid) for pid in node_pids)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


def wait_listening(log: Path, proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = LISTENING.search(log.read_text(errors="replace"))
        if found:
            return found.group(1)
        assert proc.poll() is None, log.read_text()
        time.sleep(0.05)
    raise TimeoutError("the node did not start")
