"""What a scenario is: its options, its plan, its coordinator steps and its worker role.

The coordinator (:mod:`loadtest.runner`) drives every scenario through the same
phases: ``plan`` (pure, from the options), ``prepare`` (rooms, polls, member ids, via
the HTTP API), then in every client process ``setup`` → ``run`` → ``drain`` →
``result``, and finally ``finish`` (checks that need the server's answer, such as the
final tally). A scenario that needs other machinery (the media ``viewers`` scenario)
provides its own :class:`WorkerRole`; the room-core scenarios
share :class:`~loadtest.mix.MixWorker` through :class:`MixScenario`.

Invariants: a scenario's ``plan`` does no I/O; its worker role bounds every wait; and a
:class:`Check` is how a scenario states a figure that must hold (zero lost messages,
tally equals votes): checks are printed, stored, and make the exit status non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from loadtest.httpapi import Api, MemberId
from loadtest.plan import Mix, RunConfig, WorkerSpec
from loadtest.recorder import Recorder


@dataclass(frozen=True, slots=True)
class Check:
    """A figure that must hold, and whether it did."""

    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Plan:
    """A scenario's pure plan: how many members, what they do, what the output says."""

    members: int
    duration_s: float
    events_per_s: float
    mix: Mix | None = None
    params: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Prepared:
    """What ``prepare`` made on the server: the rooms, the members and shared ids."""

    rooms: tuple[str, ...]
    members: tuple[MemberId, ...]
    shared: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Merged:
    """Every worker's result, summed (see :mod:`loadtest.runner`)."""

    counters: dict[str, int]
    errors: dict[str, int]
    sent: list[dict[str, Any]]
    results: list[dict[str, Any]]


class WorkerRole(Protocol):
    """What a scenario runs inside one client process; every method is bounded in time."""

    async def setup(self) -> None: ...
    async def run(self, t0_ns: int, stop: asyncio.Event) -> dict[str, Any]: ...
    async def drain(self, payload: dict[str, Any], stop: asyncio.Event) -> None: ...
    def sync(self) -> None: ...
    def result(self) -> dict[str, Any]: ...
    async def close(self) -> None: ...


class Scenario(Protocol):
    """One ``python -m loadtest <name>`` command."""

    name: str
    help: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...
    def plan(self, args: argparse.Namespace) -> Plan: ...
    async def prepare(self, plan: Plan, config: RunConfig, api: Api) -> Prepared: ...
    def worker(self, spec: WorkerSpec, recorder: Recorder) -> WorkerRole: ...
    def drain_payload(self, sent: Sequence[dict[str, Any]]) -> dict[str, Any]: ...
    async def finish(
        self, plan: Plan, prepared: Prepared, config: RunConfig, api: Api, merged: Merged
    ) -> tuple[list[Check], dict[str, Any]]: ...
