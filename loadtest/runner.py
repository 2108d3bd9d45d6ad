"""The coordinator: drives one scenario through its phases across the client processes.

Phases: prepare (rooms, poll) → setup in every worker (tokens, initial joins) → go at
t0 (CPU and memory readings start) → run → drain (payload from every worker's
``sent`` report) → result → CPU and memory readings end → finish (server-side
checks) → report.

Invariants:

- Every wait is bounded by the plan's duration plus the configured timeouts; a phase
  that overruns is ended with ``stop`` and the run reports what it has, marked
  ``interrupted``.
- Ctrl-C (SIGINT) is caught once: the workers are told to ``stop``, the phases still
  run to the report, so the figures so far are printed. A second Ctrl-C aborts, and
  even then every client process is stopped.
- CPU is read from ``/proc`` for the client processes and for the servers whose PIDs
  are known, at t0 and after the drain, so both cover the same measured interval.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from loadtest import procfs
from loadtest.aggregate import Aggregate
from loadtest.httpapi import Api
from loadtest.plan import RunConfig, WorkerSpec
from loadtest.procs import Pool
from loadtest.progress import status_line
from loadtest.scenarios.base import Check, Merged, Plan, Prepared, Scenario
from loadtest.schedule import split

GO_DELAY_S = 0.3
RSS_INTERVAL_S = 5.0
PROGRESS_INTERVAL_S = 1.0
SLACK_S = 30.0
#: A client process busier than this share of one core may be what limits the figures.
SATURATED_SHARE = 0.85


class RunAborted(RuntimeError):
    """A worker failed; the message carries its traceback."""


@dataclass
class Outcome:
    """Everything a run produced, before it is formatted."""

    scenario: str
    plan: Plan
    config: RunConfig
    prepared: Prepared | None = None
    interrupted: bool = False
    failure: str = ""
    setup_s: float = 0.0
    measured_s: float = 0.0
    t0_ns: int = 0
    aggregate: Aggregate = field(default_factory=Aggregate)
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, str] = field(default_factory=dict)


class Runner:
    """One run of one scenario (see the module docstring)."""

    def __init__(
        self,
        scenario: Scenario,
        plan: Plan,
        config: RunConfig,
        out: Callable[[str], None] | None = None,
    ) -> None:
        self.scenario = scenario
        self.plan = plan
        self.config = config
        self.outcome = Outcome(scenario.name, plan, config)
        self._interrupts = 0
        self._say = out or (lambda line: print(line, file=sys.stderr, flush=True))

    # -- signals ---------------------------------------------------------------------

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self._interrupts += 1
        if self._interrupts > 1:
            raise KeyboardInterrupt
        self._say("interrupted: stopping the clients; figures so far follow")

    @property
    def interrupted(self) -> bool:
        return self._interrupts > 0

    # -- the run ---------------------------------------------------------------------

    def run(self) -> Outcome:
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        pool: Pool | None = None
        try:
            started = time.monotonic()
            try:
                self.outcome.prepared = asyncio.run(self._prepare())
            except Exception as exc:  # e.g. a wrong secret (401): nothing to measure
                raise RunAborted(f"preparing the run failed: {type(exc).__name__}: {exc}") from exc
            pool = Pool(self._specs(self.outcome.prepared))
            pool.start()
            self._measure(pool, started)
        except RunAborted as exc:
            self.outcome.failure = str(exc)
        finally:
            if pool is not None:
                pool.stop()
            signal.signal(signal.SIGINT, previous)
        self.outcome.interrupted = self.interrupted or bool(self.outcome.failure)
        if self.outcome.prepared is not None and not self.outcome.failure:
            self._finish()
        return self.outcome

    async def _prepare(self) -> Prepared:
        async with Api(self.config.secret) as api:
            return await asyncio.wait_for(
                self.scenario.prepare(self.plan, self.config, api), self.config.setup_timeout_s
            )

    def _specs(self, prepared: Prepared) -> list[WorkerSpec]:
        procs = self.config.procs
        by_index = {m.index: m for m in prepared.members}
        return [
            WorkerSpec(
                index=w,
                procs=procs,
                scenario=self.scenario.name,
                config=self.config,
                members=tuple(by_index[i] for i in split(range(len(by_index)), procs, w)),
                rooms=prepared.rooms,
                shared=prepared.shared,
                mix=self.plan.mix,
            )
            for w in range(procs)
        ]

    def _wait_all(
        self, pool: Pool, kind: str, timeout_s: float, during: Callable[[], None] | None = None
    ) -> dict[int, Any]:
        """Collect ``kind`` from every worker, handling ticks; bounded by ``timeout_s``."""
        got: dict[int, Any] = {}
        deadline = time.monotonic() + timeout_s
        stop_sent = False
        while len(got) < self.config.procs:
            if (self.interrupted or time.monotonic() > deadline) and not stop_sent:
                if not self.interrupted:
                    self._say(f"{kind}: not every client process finished in time; stopping")
                    self.outcome.phases[kind] = "timed out"
                pool.broadcast("stop")
                stop_sent = True
                deadline = time.monotonic() + SLACK_S
            elif stop_sent and time.monotonic() > deadline:
                raise RunAborted(f"client processes did not answer {kind} after stop")
            if during is not None:
                during()
            message = pool.get(0.1)
            if message is None:
                if len(pool.alive()) < self.config.procs and not self.interrupted:
                    self._drain_failures(pool)
                continue
            what, worker, body = message
            if what == "failed":
                raise RunAborted(f"client process {worker} failed:\n{body}")
            if what == "tick":
                self.outcome.aggregate.progress(worker, body)
            elif what == "result":
                self.outcome.aggregate.result(worker, body)
            if what == kind:
                got[worker] = body
        return got

    def _drain_failures(self, pool: Pool) -> None:
        message = pool.get(1.0)
        if message is not None and message[0] == "failed":
            raise RunAborted(f"client process {message[1]} failed:\n{message[2]}")
        if len(pool.alive()) < self.config.procs:
            raise RunAborted("a client process exited unexpectedly")

    def _measure(self, pool: Pool, started: float) -> None:
        cfg, plan = self.config, self.plan
        overflows_start = procfs.listen_overflows()  # setup joins count too
        ready = self._wait_all(pool, "ready", cfg.setup_timeout_s)
        for worker, body in ready.items():
            self.outcome.aggregate.progress(worker, body)
        self.outcome.setup_s = round(time.monotonic() - started, 3)
        pids = pool.pids
        servers = list(cfg.server_pids)
        watched = list(cfg.watched_pids)
        cpu_start = procfs.cpu_of(pids + servers + watched)
        own_start = os.times()
        machine_start = procfs.machine_cpu()
        t0 = time.time_ns() + int(GO_DELAY_S * 1e9)
        self.outcome.t0_ns = t0
        memory = _MemoryWatch(servers, t0)
        memory.sample()
        pool.broadcast("go", None if self.interrupted else t0)
        last_progress = time.monotonic()

        def during() -> None:
            nonlocal last_progress
            memory.maybe_sample()
            if cfg.progress and time.monotonic() - last_progress >= PROGRESS_INTERVAL_S:
                last_progress = time.monotonic()
                self._say(status_line(self.scenario.name, self.outcome.aggregate, t0))

        run_bound = plan.duration_s + max(cfg.join_timeout_s, cfg.request_timeout_s) + SLACK_S
        sent = self._wait_all(pool, "sent", run_bound, during)
        payload = self.scenario.drain_payload([sent[w] for w in sorted(sent)])
        self._sent = [sent[w] for w in sorted(sent)]
        pool.broadcast("drain", payload)
        self._wait_all(pool, "result", cfg.drain_timeout_s + SLACK_S, during)
        end = time.time_ns()
        cpu_end = procfs.cpu_of(pids + servers + watched)
        own_end = os.times()
        machine_end = procfs.machine_cpu()
        memory.sample()
        overflows_end = procfs.listen_overflows()
        pool.broadcast("finish")
        interval = max(1e-9, (end - t0) / 1e9)
        self.outcome.measured_s = round(interval, 3)
        used = procfs.delta(cpu_start, cpu_end)
        own = (own_end.user - own_start.user) + (own_end.system - own_start.system)
        self.outcome.cpu = cpu_figures(used, pids, servers, own, interval)
        if watched:
            known = {str(p): used.get(p) for p in watched}
            values = [v for v in known.values() if v is not None]
            self.outcome.cpu["watched_s"] = round(sum(values), 3) if values else None
            self.outcome.cpu["watched_processes"] = known
        if machine_start is not None and machine_end is not None:
            busy = machine_end.busy - machine_start.busy
            total = machine_end.total - machine_start.total
            cpus = os.cpu_count() or 1
            if total > 0:
                cpu = self.outcome.cpu
                cpu["machine_busy_cores"] = round(busy / total * cpus, 2)
                cpu["machine_cores"] = cpus
                ours = (cpu["client_s"] + (cpu["server_s"] or 0.0)) / interval
                # what else ran meanwhile (other work on a shared machine)
                cpu["other_busy_cores"] = round(max(0.0, busy / total * cpus - ours), 2)
        self.outcome.memory = memory.figures(plan.params.get("warm_s"))
        if overflows_start is not None and overflows_end is not None:
            self.outcome.cpu["listen_overflows"] = overflows_end - overflows_start

    def _finish(self) -> None:
        prepared = self.outcome.prepared
        assert prepared is not None
        agg = self.outcome.aggregate
        merged = Merged(
            counters=agg.counter_sum(),
            errors=agg.error_sum(),
            sent=getattr(self, "_sent", []),
            results=[agg.results[w] for w in sorted(agg.results)],
        )

        async def finish() -> tuple[list[Check], dict[str, Any]]:
            async with Api(self.config.secret) as api:
                return await asyncio.wait_for(
                    self.scenario.finish(self.plan, prepared, self.config, api, merged),
                    self.config.setup_timeout_s,
                )

        try:
            self.outcome.checks, self.outcome.figures = asyncio.run(finish())
        except Exception as exc:  # the report still shows what was measured
            self.outcome.checks = [Check("final checks ran", False, f"{type(exc).__name__}: {exc}")]


def cpu_figures(
    used: dict[int, float | None], clients: list[int], servers: list[int], own: float, wall: float
) -> dict[str, Any]:
    """Client and server CPU (user+sys seconds) over the measured interval, and shares."""
    client = {pid: used.get(pid) for pid in clients}
    server = {pid: used.get(pid) for pid in servers}
    known_client = [v for v in client.values() if v is not None]
    known_server = [v for v in server.values() if v is not None]
    out: dict[str, Any] = {
        "interval_s": round(wall, 3),
        "client_s": round(sum(known_client) + own, 3),
        "client_processes": {str(k): v for k, v in client.items()},
        "coordinator_s": round(own, 3),
        "client_busiest_share": round(max(known_client, default=0.0) / wall, 3),
        "server_s": round(sum(known_server), 3) if servers and known_server else None,
        "server_processes": {str(k): v for k, v in server.items()},
    }
    return out


class _MemoryWatch:
    """RSS of the server processes at t0, every few seconds, and at the end."""

    def __init__(self, pids: list[int], t0_ns: int) -> None:
        self.pids = pids
        self.t0_ns = t0_ns
        self.samples: list[dict[str, Any]] = []
        self._last = 0.0

    def sample(self) -> None:
        self._last = time.monotonic()
        if not self.pids:
            return
        at = round((time.time_ns() - self.t0_ns) / 1e9, 1)
        self.samples.append({"t": at, **{str(p): procfs.rss_kib(p) for p in self.pids}})

    def maybe_sample(self) -> None:
        if time.monotonic() - self._last >= RSS_INTERVAL_S:
            self.sample()

    def figures(self, warm_s: float | None) -> dict[str, Any]:
        if not self.samples:
            return {}
        per_pid: dict[str, Any] = {}
        for pid in map(str, self.pids):
            values: list[tuple[float, int]] = [
                (float(s["t"]), int(s[pid])) for s in self.samples if s.get(pid) is not None
            ]
            if not values:
                continue
            warm = next((v for t, v in values if warm_s is not None and t >= warm_s), None)
            per_pid[pid] = {
                "start_kib": values[0][1],
                "end_kib": values[-1][1],
                "max_kib": max(v for _, v in values),
                "warm_kib": warm,
                "growth_after_warm_kib": (values[-1][1] - warm) if warm is not None else None,
            }
        return {"server_rss": per_pid, "samples": self.samples, "warm_s": warm_s}
