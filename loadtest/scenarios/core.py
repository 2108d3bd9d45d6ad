"""The shared machinery of the room-core scenarios (join, chat, votes, launch, soak).

A :class:`MixScenario` turns its options into a :class:`~loadtest.plan.Mix`; the rest
is common: rooms and member ids are made through the HTTP API, a poll (when members
vote) is opened by a short-lived host connection, every client process runs a
:class:`~loadtest.mix.MixWorker`, and ``finish`` checks the invariants every room-core
run must keep:

- every member that was meant to join did (``join_failed == 0``),
- chat: zero lost, zero duplicated, zero out-of-order deliveries,
- votes: the final tally (the answer of ``poll.close``) equals the accepted votes,
  option by option, and every member saw the final total,
- likes: the room's likes total (HTTP API) equals the accepted likes.
"""

from __future__ import annotations

import argparse
import secrets
from collections.abc import Sequence
from typing import Any

from loadtest.client import Connection
from loadtest.httpapi import Api, MemberId
from loadtest.ledger import mask_from_hex, mask_to_hex
from loadtest.mix import MixWorker
from loadtest.plan import Mix, RunConfig, WorkerSpec, ws_url
from loadtest.recorder import Recorder
from loadtest.scenarios.base import Check, Merged, Plan, Prepared, WorkerRole

CONTROL_TIMEOUT_S = 30.0
POLL_QUESTION = "Load test: which option?"


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


class Control:
    """A short-lived host connection for what only staff can do (open and close a poll).

    It is opened only before and after the measured interval, so it adds nothing to
    the figures beyond one ``member.joined`` event for the host.
    """

    def __init__(self, conn: Connection, room: str) -> None:
        self.conn = conn
        self.room = room

    @classmethod
    async def open(cls, api: Api, config: RunConfig, room: str) -> Control:
        host = MemberId(-1, f"lt-{config.run_id}-host", "Load host", "host", room, config.urls[0])
        token = await api.token(host)
        conn = await Connection.open(
            ws_url(host.url), config.encoding, CONTROL_TIMEOUT_S, lambda event, now: None
        )
        control = cls(conn, room)
        await control.ask({"t": "join", "room": room, "token": token})
        return control

    async def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        answer, _ = await self.conn.call(message, CONTROL_TIMEOUT_S)
        if answer.get("t") != "ok":
            raise RuntimeError(f"{message['t']}: {answer.get('code')} {answer.get('message')}")
        return answer

    async def close(self) -> None:
        await self.conn.close()


class MixScenario:
    """Base of the room-core scenarios; subclasses give ``name``, options and the mix."""

    name = ""
    help = ""
    #: Whether every member must vote (the votes scenario) or only some may (launch).
    all_must_vote = False

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        raise NotImplementedError

    def mix(self, args: argparse.Namespace) -> Mix:
        raise NotImplementedError

    def notes(self, mix: Mix) -> tuple[str, ...]:
        notes = []
        if mix.chats:
            notes.append(
                f"chat senders are {mix.senders} moderators: staff are not rate limited, "
                "so the offered chat rate is what the server receives"
            )
        if mix.media_note:
            notes.append(mix.media_note)
        return tuple(notes)

    def plan(self, args: argparse.Namespace) -> Plan:
        mix = self.mix(args)
        return Plan(
            members=mix.members,
            duration_s=mix.duration_s,
            events_per_s=mix.offered_events_per_s(),
            mix=mix,
            notes=self.notes(mix),
        )

    async def prepare(self, plan: Plan, config: RunConfig, api: Api) -> Prepared:
        mix = plan.mix
        assert mix is not None
        rooms = tuple(f"lt-{config.run_id}-{self.name}-{k}" for k in range(mix.rooms))
        for room in rooms:
            await api.create_room(config.urls[0], room, f"Load test {self.name} {room}")
        members = tuple(
            MemberId(
                index=i,
                user=f"lt-{config.run_id}-{i}",
                name=f"Load {i}",
                role=mix.role(i),
                room=rooms[mix.room_index(i)],
                url=config.urls[i % len(config.urls)],
            )
            for i in range(mix.members)
        )
        shared: dict[str, Any] = {}
        if mix.votes:
            control = await Control.open(api, config, rooms[0])
            try:
                options = [f"option {k}" for k in range(mix.poll_options)]
                answer = await control.ask(
                    {
                        "t": "poll.create",
                        "room": rooms[0],
                        "question": POLL_QUESTION,
                        "options": options,
                    }
                )
                shared["poll"] = answer["poll"]["id"]
            finally:
                await control.close()
        return Prepared(rooms=rooms, members=members, shared=shared)

    def worker(self, spec: WorkerSpec, recorder: Recorder) -> WorkerRole:
        return MixWorker(spec, recorder)

    def drain_payload(self, sent: Sequence[dict[str, Any]]) -> dict[str, Any]:
        accepted = 0
        votes = 0
        likes = 0
        for report in sent:
            accepted |= mask_from_hex(str(report.get("accepted_hex", "")))
            votes += sum(report.get("votes_by_option", ()))
            likes += int(report.get("likes_accepted", 0))
        return {
            "accepted_hex": mask_to_hex(accepted),
            "final_seq": max(0, accepted.bit_length() - 1),
            "votes_total": votes,
            "likes_total": likes,
        }

    async def finish(
        self, plan: Plan, prepared: Prepared, config: RunConfig, api: Api, merged: Merged
    ) -> tuple[list[Check], dict[str, Any]]:
        mix = plan.mix
        assert mix is not None
        counters = merged.counters
        checks = [
            Check(
                "every member joined",
                counters.get("joined", 0) == mix.members and not counters.get("join_failed"),
                f"{counters.get('joined', 0)} of {mix.members} joined, "
                f"{counters.get('join_failed', 0)} failed",
            )
        ]
        figures: dict[str, Any] = {}
        chat = merged_chat(merged)
        if mix.chats:
            figures["chat_deliveries"] = chat
            checks.append(
                Check(
                    "no chat delivery lost",
                    chat["lost"] == 0 and chat["expected"] > 0,
                    f"{chat['lost']} lost of {chat['expected']} expected "
                    f"({chat['connections']} members x the accepted messages after each "
                    "one's join snapshot)",
                )
            )
            checks.append(
                Check(
                    "no chat delivery duplicated or out of order",
                    chat["duplicated"] == 0 and chat["out_of_order"] == 0,
                    f"{chat['duplicated']} duplicated, {chat['out_of_order']} out of order",
                )
            )
            checks.append(
                Check(
                    "every chat message sent was accepted",
                    counters.get("chat_accepted", 0) == counters.get("chat_sent", 0) > 0,
                    f"{counters.get('chat_accepted', 0)} of {counters.get('chat_sent', 0)}",
                )
            )
        if mix.votes and "poll" in prepared.shared:
            checks += await self._check_tally(prepared, config, api, merged, mix, figures)
        if mix.likes:
            accepted = sum(int(r.get("likes_accepted", 0)) for r in merged.sent)
            status = await api.room_status(config.urls[0], prepared.rooms[0])
            figures["likes"] = {"accepted": accepted, "room_total": status.get("likes")}
            checks.append(
                Check(
                    "likes total equals accepted likes",
                    status.get("likes") == accepted,
                    f"room total {status.get('likes')}, accepted {accepted}",
                )
            )
            short = sum(
                int(r.get("stale", {}).get("members_short_of_final_likes", 0))
                for r in merged.results
            )
            checks.append(
                Check(
                    "every member saw the final likes total", short == 0, f"{short} members short"
                )
            )
        return checks, figures

    async def _check_tally(
        self,
        prepared: Prepared,
        config: RunConfig,
        api: Api,
        merged: Merged,
        mix: Mix,
        figures: dict[str, Any],
    ) -> list[Check]:
        expected = [0] * mix.poll_options
        for report in merged.sent:
            for k, n in enumerate(report.get("votes_by_option", ())):
                expected[k] += int(n)
        control = await Control.open(api, config, prepared.rooms[0])
        try:
            answer = await control.ask(
                {"t": "poll.close", "room": prepared.rooms[0], "poll": prepared.shared["poll"]}
            )
        finally:
            await control.close()
        final = answer["poll"]
        tally = [int(o["votes"]) for o in final["options"]]
        accepted = sum(expected)
        figures["votes"] = {
            "accepted": accepted,
            "expected_tally": expected,
            "final_tally": tally,
            "final_total": final["total"],
        }
        checks = [
            Check(
                "final tally equals accepted votes",
                tally == expected and final["total"] == accepted,
                f"poll.close {tally} (total {final['total']}), accepted {expected}",
            )
        ]
        if self.all_must_vote:
            checks.append(
                Check(
                    "every member's vote was accepted",
                    accepted == mix.members,
                    f"{accepted} of {mix.members}",
                )
            )
        short = sum(
            int(r.get("stale", {}).get("members_short_of_final_tally", 0)) for r in merged.results
        )
        checks.append(
            Check("every member saw the final tally", short == 0, f"{short} members short")
        )
        return checks


def merged_chat(merged: Merged) -> dict[str, int]:
    total: dict[str, int] = {}
    for result in merged.results:
        for key, value in result.get("chat", {}).items():
            total[key] = total.get(key, 0) + int(value)
    for key in (
        "expected",
        "delivered",
        "lost",
        "duplicated",
        "unacknowledged",
        "out_of_order",
        "below_base",
        "connections",
    ):
        total.setdefault(key, 0)
    return total


def run_tag() -> str:
    """A short random id so that rooms and users of two runs never collide."""
    return secrets.token_hex(3)
