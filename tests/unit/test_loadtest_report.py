"""The load tool's aggregation, status line and report, on synthetic worker results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loadtest import report
from loadtest.aggregate import Aggregate
from loadtest.cli import default_procs, main
from loadtest.plan import Mix, RunConfig
from loadtest.progress import status_line
from loadtest.recorder import Recorder, error_key
from loadtest.runner import Outcome, cpu_figures
from loadtest.scenarios import SCENARIOS
from loadtest.scenarios.base import Check, Plan
from loadtest.servers import node_command

T0 = 1_000_000_000_000


def worker_result(deliveries: int, latency_us: int, errors: dict[str, int]) -> dict[str, Any]:
    rec = Recorder()
    rec.t0_ns = T0
    for i in range(deliveries):
        rec.latency("chat", T0 + i * 1_000_000, latency_us * 1000)
    rec.counters.update({"deliveries": deliveries, "joined": 10})
    rec.errors.update(errors)
    return {
        **rec.snapshot(),
        "windows": rec.take_windows(),
        "totals": rec.totals_json(),
        "role": {"chat": {"expected": deliveries, "delivered": deliveries}, "stale": {}},
    }


def test_recorder_windows_are_taken_once() -> None:
    rec = Recorder()
    rec.latency("join", 5, 1000)  # before t0: totals only
    rec.t0_ns = T0
    rec.latency("chat", T0 + 1_500_000_000, 2_000_000)
    windows = rec.take_windows()
    assert list(windows) == ["1"] and windows["1"]["chat"]["count"] == 1
    assert rec.take_windows() == {}
    assert rec.totals["join"].count == 1 and rec.totals["chat"].count == 1


def test_error_keys() -> None:
    assert error_key(TimeoutError()) == "timeout"
    assert error_key(ConnectionRefusedError(111, "refused")) == "connect_refused"

    class Status(Exception):
        class response:  # mimics websockets' InvalidStatus
            status_code = 429

    assert error_key(Status()) == "http_429"
    assert error_key(ValueError()) == "client_ValueError"


def test_aggregate_sums_workers_and_merges_windows() -> None:
    agg = Aggregate()
    agg.result(0, worker_result(100, 2000, {"closed_1006": 1}))
    agg.result(1, worker_result(50, 4000, {"closed_1006": 2, "rate_limited": 1}))
    assert agg.counter_sum()["deliveries"] == 150
    assert agg.error_sum() == {"closed_1006": 3, "rate_limited": 1}
    assert agg.totals["chat"].count == 150
    assert sum(row["count"] for row in agg.series()["chat"]) == 150
    # a repeated tick replaces, never adds
    agg.progress(0, {"counters": {"deliveries": 100}, "errors": {"closed_1006": 1}})
    assert agg.counter_sum()["deliveries"] == 150
    line = status_line("chat", agg, T0, T0 + 2_000_000_000)
    assert "deliveries 150" in line and "errors 4" in line and "closed_1006 3" in line


def outcome(checks: list[Check], busiest: float = 0.1) -> Outcome:
    mix = Mix(members=20, initial=20, senders=2, chat_rate=10, chat_s=2, duration_s=2)
    plan = Plan(members=20, duration_s=2, events_per_s=200, mix=mix, notes=("a note",))
    out = Outcome("chat", plan, RunConfig(urls=("http://127.0.0.1:1",), secret="s" * 32))
    out.aggregate.result(0, worker_result(40, 3000, {}))
    out.measured_s = 2.0
    out.checks = checks
    out.figures = {"chat_deliveries": {
        "expected": 40, "delivered": 40, "lost": 0, "duplicated": 0, "out_of_order": 0,
        "unacknowledged": 0, "below_base": 0, "connections": 20}}  # fmt: skip
    out.cpu = cpu_figures({1: busiest * 2.0, 2: 0.5}, [1], [2], 0.01, 2.0)
    return out


def test_report_document_table_and_files(tmp_path: Path) -> None:
    doc = report.build(outcome([Check("no loss", True, "0 lost")]), ["python -m loadtest", "chat"])
    assert doc["ok"] is True and doc["warnings"] == []
    assert doc["rates"]["deliveries_per_s"] == 20.0
    assert doc["rates"]["deliveries_per_server_cpu_s"] == 80.0
    assert "secret" not in doc["config"]
    text = report.table(doc)
    assert "[PASS] no loss" in text and "chat" in text and "a note" in text
    paths = report.write(doc, tmp_path, "run", plot=True)
    assert [p.suffix for p in paths] == [".json", ".png"]
    again = json.loads(paths[0].read_text())
    assert again["histograms"]["chat"]["count"] == 40
    assert paths[1].stat().st_size > 1000


def test_a_watched_process_cpu_gives_work_per_its_cpu_second() -> None:
    run = outcome([Check("no loss", True, "0 lost")])
    run.aggregate.result(0, {**worker_result(40, 3000, {}), "counters": {
        "deliveries": 40, "joined": 10, "chat_accepted": 4}})  # fmt: skip
    run.cpu.update({"watched_s": 0.02, "watched_processes": {"3": 0.02}})
    doc = report.build(run, ["x"])
    assert doc["rates"]["deliveries_per_watched_cpu_s"] == 2000.0
    assert doc["rates"]["chat_messages_per_watched_cpu_s"] == 200.0
    assert "watched CPU" in report.table(doc)


def test_report_warns_and_fails_honestly() -> None:
    doc = report.build(outcome([Check("no loss", False, "3 lost")], busiest=0.95), ["x"])
    assert doc["ok"] is False
    assert doc["warnings"][0].startswith("check failed: no loss")
    assert any("load generator" in w for w in doc["warnings"])
    assert "[FAIL] no loss" in report.table(doc)


def test_default_procs_is_bounded_by_the_cores() -> None:
    small = Plan(members=100, duration_s=1, events_per_s=100)
    big = Plan(members=5000, duration_s=1, events_per_s=100000)
    assert default_procs(small, cpus=8) == 1
    assert default_procs(big, cpus=2) == 2
    assert default_procs(big, cpus=8) == 4
    mix = Mix(members=1000, initial=100)
    plain = Plan(members=1000, duration_s=1, events_per_s=100, mix=mix)
    live = Plan(members=1000, duration_s=1, events_per_s=100, mix=mix, params={"viewers": 10})
    assert (default_procs(plain, cpus=2), default_procs(live, cpus=2)) == (1, 2)


def test_every_scenario_is_registered_with_its_name() -> None:
    assert list(SCENARIOS) == ["join", "chat", "votes", "viewers", "launch", "soak"]
    assert all(name == s.name for name, s in SCENARIOS.items())


@pytest.mark.parametrize(
    "argv",
    [
        ["chat", "--members", "10"],  # no target
        ["chat", "--url", "http://127.0.0.1:1"],  # no secret
        ["chat", "--url", "http://127.0.0.1:1", "--spawn", "1"],  # both
        ["join", "--url", "http://127.0.0.1:1", "--redis", "redis://x"],  # redis without spawn
    ],
)
def test_bad_options_exit_2_before_starting_anything(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ROOMSERVER_SECRET", raising=False)
    assert main(argv) == 2
    assert "loadtest:" in capsys.readouterr().err


def test_node_command_survives_a_secret_that_looks_like_an_option() -> None:
    cmd = node_command("-starts-with-a-dash", "redis://127.0.0.1:6379/0", "lt-x", ["--x=1"])
    assert "--secret=-starts-with-a-dash" in cmd
    assert "--redis=redis://127.0.0.1:6379/0" in cmd and cmd[-1] == "--x=1"
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--max-connections-per-ip") + 1] == "100000"
    assert cmd[cmd.index("--joins-per-ip-rate") + 1] == "100000"
