"""The client-process side of the room-core scenarios: members joining, chatting,
liking and voting on a schedule, and exact accounting of what they received.

Invariants:

- One :class:`~loadtest.client.Connection` (one reader task) per member, in the
  target's dialect (:func:`loadtest.socketio.connection_class`); event
  handling on the hot path is one dict lookup per message and, for chat, one bitmap
  mark and one histogram record.
- Every action is started by one scheduler loop at its planned time (open loop) and
  runs as its own task, so a slow answer never delays the next action; every task is
  awaited (bounded by the request timeout) before the run reports ``sent``.
- Every request ends in exactly one counter: accepted, or an error under its code.
- Chat latency is measured from the sender's ``time.time_ns()`` just before the send,
  carried in the ``cid``, to the arrival of the frame holding the event.
- The drain waits (bounded) until every member still connected has seen the final
  chat seq, tally and likes total; then each member's receipts are settled against
  the accepted messages (:func:`loadtest.ledger.settle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from loadtest import schedule
from loadtest.client import Connection, RequestClosed
from loadtest.httpapi import Api, MemberId
from loadtest.ledger import Receipts, Tally, mask_from_hex, mask_of, mask_to_hex, settle
from loadtest.plan import Mix, WorkerSpec, ws_url
from loadtest.recorder import NS_PER_S, Recorder, error_key
from loadtest.socketio import connection_class

CONNECT_CONCURRENCY = 200
SETTLE_POLL_S = 0.1
DRAIN_POLL_S = 0.05
STOPPED_DRAIN_S = 2.0


async def _sleep_until(due_ns: int, stop: asyncio.Event) -> bool:
    """Sleep until the wall-clock time ``due_ns``; False if ``stop`` was set first."""
    wait_s = (due_ns - time.time_ns()) / NS_PER_S
    if wait_s > 0 and not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait_s)
    return not stop.is_set()


class Member:
    """One simulated member: identity, token, connection and what it received."""

    __slots__ = (
        "conn",
        "failed",
        "id",
        "joined",
        "likes",
        "receipts",
        "tally",
        "token",
        "vote_due",
    )

    def __init__(self, member: MemberId) -> None:
        self.id = member
        self.token = ""
        self.conn: Connection | None = None
        self.receipts = Receipts()
        self.joined = False
        self.failed = False
        self.vote_due = False
        self.tally = 0
        self.likes = 0


@dataclass(frozen=True, slots=True)
class _Action:
    at_s: float
    kind: str  # "join", "chat", "like", "vote"
    member: int  # member index (for "like": the like's slot number)
    n: int = 0  # chat: the sender's message number


class MixWorker:
    """Runs one client process's share of a :class:`~loadtest.plan.Mix`."""

    def __init__(self, spec: WorkerSpec, recorder: Recorder) -> None:
        if spec.mix is None:
            raise ValueError("a mix scenario needs a Mix")
        self.spec = spec
        self.mix: Mix = spec.mix
        self.rec = recorder
        self.config = spec.config
        self.chat_room = spec.rooms[0]
        self.poll: str | None = spec.shared.get("poll")
        self.members = {m.index: Member(m) for m in spec.members}
        self._tasks: set[asyncio.Task[None]] = set()
        self.deliveries = 0
        self.duplicates = 0
        self.accepted_seqs: list[int] = []
        self.votes_by_option = [0] * self.mix.poll_options
        self.likes_accepted = 0
        self.last_join_ns = 0
        self.first_join_start_ns = 0
        self.chat_tally = Tally()
        self.stale: Counter[str] = Counter()
        self.t0_ns = 0
        self._like_cursor = 0
        self._in_chat_room: list[Member] = []

    # -- setup ---------------------------------------------------------------------

    async def setup(self) -> None:
        """Mint every member's token, then join the initial members (not measured)."""
        async with Api(self.config.secret) as api:
            ordered = list(self.members.values())
            tokens = await api.tokens([m.id for m in ordered])
        for member, token in zip(ordered, tokens, strict=True):
            member.token = token
        initial = [m for m in ordered if m.id.index < self.mix.initial]
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def join(member: Member) -> None:
            async with limit:
                await self._join(member)

        await asyncio.gather(*(join(m) for m in initial))

    # -- run -----------------------------------------------------------------------

    def plan(self) -> list[_Action]:
        """This process's actions, from the global schedules (see :mod:`loadtest.schedule`)."""
        mix, mine = self.mix, self.members
        actions: list[_Action] = []
        arrivals = mix.arrivals.times(mix.members - mix.initial)
        for offset, index in enumerate(range(mix.initial, mix.members)):
            if index in mine:
                actions.append(_Action(arrivals[offset], "join", index))
        if mix.chats:
            per_sender = mix.chat_rate / mix.senders
            for sender in range(mix.senders):
                if sender not in mine:
                    continue
                times = schedule.paced(per_sender, mix.chat_s, phase_s=sender / mix.chat_rate)
                actions += [_Action(t, "chat", sender, n) for n, t in enumerate(times)]
        if mix.likes:
            for slot, t in enumerate(schedule.paced(mix.like_rate, mix.duration_s)):
                if slot % self.spec.procs == self.spec.index:
                    actions.append(_Action(t, "like", slot))
        if mix.votes:
            times = schedule.uniform(
                mix.members, mix.vote_from_s, mix.vote_until_s, self.config.seed
            )
            for index in mine:
                if mix.room_index(index) == 0:
                    actions.append(_Action(times[index], "vote", index))
        actions.sort(key=lambda a: a.at_s)
        return actions

    async def run(self, t0_ns: int, stop: asyncio.Event) -> dict[str, Any]:
        """Start every action at its time; wait for their outcomes; report what was accepted."""
        self.t0_ns = t0_ns
        for action in self.plan():
            if not await _sleep_until(t0_ns + int(action.at_s * NS_PER_S), stop):
                break
            self._start(action)
        await _sleep_until(t0_ns + int(self.mix.duration_s * NS_PER_S), stop)
        await self._settle_tasks(stop)
        return {
            "accepted_hex": mask_to_hex(mask_of(self.accepted_seqs)),
            "votes_by_option": self.votes_by_option,
            "likes_accepted": self.likes_accepted,
        }

    def _start(self, action: _Action) -> None:
        member = self.members[action.member] if action.kind != "like" else None
        coro: Coroutine[Any, Any, None]
        if action.kind == "join":
            assert member is not None
            coro = self._join(member)
        elif action.kind == "chat":
            assert member is not None
            coro = self._chat(member, action.n)
        elif action.kind == "vote":
            assert member is not None
            if not member.joined:
                if member.failed:
                    self.rec.counters["vote_skipped"] += 1
                else:
                    member.vote_due = True  # it votes as soon as its join completes
                return
            coro = self._vote(member)
        else:
            coro = self._like()
        self._spawn(coro)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle_tasks(self, stop: asyncio.Event) -> None:
        """Wait for started actions; each is bounded by the join/request timeout."""
        bound = max(self.config.join_timeout_s, self.config.request_timeout_s) + 5.0
        deadline = time.monotonic() + bound
        while self._tasks and time.monotonic() < deadline:
            if stop.is_set():
                for task in list(self._tasks):
                    task.cancel()
            await asyncio.wait(list(self._tasks), timeout=SETTLE_POLL_S)
        for task in list(self._tasks):
            task.cancel()
            self.rec.error("client_abandoned")

    # -- actions ---------------------------------------------------------------------

    async def _join(self, member: Member) -> None:
        rec, cfg = self.rec, self.config
        rec.counters["join_started"] += 1
        started = time.time_ns()
        if not self.first_join_start_ns or started < self.first_join_start_ns:
            self.first_join_start_ns = started
        conn: Connection | None = None
        try:
            conn = await connection_class(cfg.target).open(
                ws_url(member.id.url, cfg.target),
                cfg.encoding,
                cfg.join_timeout_s,
                functools.partial(self._on_event, member),
                self._on_close,
            )
            request = {"t": "join", "room": member.id.room, "token": member.token}
            answer, at = await conn.call(request, cfg.join_timeout_s)
        except Exception as exc:
            rec.error("join_" + error_key(exc))
            self._join_failed(member)
            if conn is not None:
                await conn.close()
            return
        if answer.get("t") != "ok":
            rec.error(str(answer.get("code", "unknown")))
            self._join_failed(member)
            await conn.close()
            return
        receipts = member.receipts
        receipts.base = int(answer.get("seq", 0))
        receipts.highest = max(receipts.highest, receipts.base)
        for poll in answer.get("polls", ()):
            if poll.get("id") == self.poll:
                member.tally = max(member.tally, int(poll.get("total", 0)))
        member.likes = max(member.likes, int(answer.get("room", {}).get("likes", 0)))
        member.conn = conn
        member.joined = True
        if member.id.room == self.chat_room:
            self._in_chat_room.append(member)
        rec.counters["joined"] += 1
        rec.latency("join", at, at - started)
        self.last_join_ns = max(self.last_join_ns, at)
        if member.vote_due:
            member.vote_due = False
            await self._vote(member)

    def _join_failed(self, member: Member) -> None:
        self.rec.counters["join_failed"] += 1
        member.failed = True
        if member.vote_due:
            member.vote_due = False
            self.rec.counters["vote_skipped"] += 1

    async def _request(self, member: Member, message: dict[str, Any], kind: str) -> Any:
        """One request of ``kind``; its ``ok`` answer, or None after counting the failure."""
        conn = member.conn
        if conn is None or not conn.is_open:
            self.rec.counters[f"{kind}_skipped"] += 1
            return None
        self.rec.counters[f"{kind}_sent"] += 1
        sent = time.time_ns()
        try:
            answer, at = await conn.call(message, self.config.request_timeout_s)
        except (TimeoutError, RequestClosed) as exc:
            self.rec.error(f"{kind}_{error_key(exc)}")
            return None
        if answer.get("t") != "ok":
            self.rec.error(str(answer.get("code", "unknown")))
            return None
        self.rec.counters[f"{kind}_accepted"] += 1
        self.rec.latency(kind if kind != "chat" else "chat_ack", at, at - sent)
        return answer

    async def _chat(self, member: Member, n: int) -> None:
        sent = time.time_ns()
        message = {
            "t": "chat.send",
            "room": self.chat_room,
            "text": f"load {member.id.index}.{n} sent {sent}",
            "cid": f"{sent}-{member.id.index}-{n}",
        }
        answer = await self._request(member, message, "chat")
        if answer is not None:
            self.accepted_seqs.append(int(answer["seq"]))

    async def _vote(self, member: Member) -> None:
        if self.poll is None:
            return
        option = member.id.index % self.mix.poll_options
        message = {"t": "poll.vote", "room": self.chat_room, "poll": self.poll, "option": option}
        if await self._request(member, message, "vote") is not None:
            self.votes_by_option[option] += 1

    async def _like(self) -> None:
        """One like from the next joined member of this process (round-robin)."""
        joined = self._in_chat_room
        for _ in range(len(joined)):
            member = joined[self._like_cursor % len(joined)]
            self._like_cursor += 1
            if member.conn is not None and member.conn.is_open:
                break
        else:
            self.rec.counters["like_skipped"] += 1
            return
        if await self._request(member, {"t": "like", "room": self.chat_room}, "like") is not None:
            self.likes_accepted += 1

    # -- events ----------------------------------------------------------------------

    def _on_event(self, member: Member, event: dict[str, Any], now: int) -> None:
        t = event.get("t")
        if t == "chat":
            if event.get("room") != self.chat_room:
                return
            if member.receipts.mark(int(event["seq"])):
                self.deliveries += 1
                cid = str(event.get("cid", ""))
                sent, _, rest = cid.partition("-")
                if rest and sent.isdigit():
                    self.rec.latency("chat", now, now - int(sent))
            else:
                self.duplicates += 1
        elif t == "poll.tally":
            if event.get("poll") == self.poll:
                member.tally = max(member.tally, int(event.get("total", 0)))
        elif t == "poll.closed":
            poll = event.get("poll") or {}
            if poll.get("id") == self.poll:
                member.tally = max(member.tally, int(poll.get("total", 0)))
        elif t == "likes":
            member.likes = max(member.likes, int(event.get("total", 0)))
        elif t == "kicked":
            self.rec.error(f"kicked_{event.get('reason')}")

    def _on_close(self, conn: Connection, code: int) -> None:
        self.rec.error(f"closed_{code}")
        self.rec.counters["closes"] += 1

    def sync(self) -> None:
        """Copy the hot-path counts into the recorder before a progress tick."""
        self.rec.counters["deliveries"] = self.deliveries
        self.rec.counters["duplicates"] = self.duplicates

    # -- drain and result --------------------------------------------------------------

    def _chat_members(self) -> list[Member]:
        return self._in_chat_room

    def _behind(self, payload: dict[str, Any]) -> list[str]:
        """Why the drain is not done yet: the kinds some live member has not caught up on."""
        final_seq = int(payload.get("final_seq", 0))
        votes = int(payload.get("votes_total", 0))
        likes = int(payload.get("likes_total", 0))
        behind: set[str] = set()
        for member in self._chat_members():
            if member.conn is None or not member.conn.is_open:
                continue
            if member.receipts.highest < final_seq:
                behind.add("chat")
            if self.poll is not None and self.mix.votes and member.tally < votes:
                behind.add("tally")
            if self.mix.likes and member.likes < likes:
                behind.add("likes")
        return sorted(behind)

    async def drain(self, payload: dict[str, Any], stop: asyncio.Event) -> None:
        """Wait until every live member caught up (bounded), then settle the receipts."""
        # An interrupted run still drains briefly, so its partial figures are consistent.
        bound = self.config.drain_timeout_s if not stop.is_set() else STOPPED_DRAIN_S
        deadline = time.monotonic() + min(bound, self.config.drain_timeout_s)
        behind = self._behind(payload)
        while behind and time.monotonic() < deadline:
            await asyncio.sleep(DRAIN_POLL_S)
            behind = self._behind(payload)
        for kind in behind:
            self.stale[f"drain_timeout_{kind}"] = 1
        accepted = mask_from_hex(str(payload.get("accepted_hex", "")))
        votes = int(payload.get("votes_total", 0))
        likes = int(payload.get("likes_total", 0))
        for member in self._chat_members():
            self.chat_tally.add(settle(member.receipts, accepted))
            if self.poll is not None and self.mix.votes and member.tally < votes:
                self.stale["members_short_of_final_tally"] += 1
            if self.mix.likes and member.likes < likes:
                self.stale["members_short_of_final_likes"] += 1
        self.sync()

    def result(self) -> dict[str, Any]:
        return {
            "chat": self.chat_tally.to_json(),
            "stale": dict(self.stale),
            "last_join_ns": self.last_join_ns,
            "first_join_start_ns": self.first_join_start_ns,
            "connected": sum(1 for m in self.members.values() if m.conn and m.conn.is_open),
        }

    async def close(self) -> None:
        """Close every connection on purpose (not counted as closes), bounded."""
        conns = [m.conn for m in self.members.values() if m.conn is not None]
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(conn: Connection) -> None:
            async with limit:
                await conn.close()

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(one(c) for c in conns)), 30.0)
