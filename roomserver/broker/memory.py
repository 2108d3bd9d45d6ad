"""The in-memory broker: one node, everything in this process.

Atomicity comes from the event loop: no method awaits between reading and
writing a room's state, so each call is one indivisible step. ``publish``
calls the node's sink synchronously, which keeps a room's events in the order
they were accepted.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from roomserver.broker.base import (
    ControlChange,
    EventSink,
    JoinView,
    NodeHandler,
    PollView,
    Tally,
)
from roomserver.chat import ChatLog
from roomserver.errors import NotFound, Unavailable
from roomserver.events import Envelope
from roomserver.ids import ChatDraft, ChatMessage, Identity
from roomserver.polls import PollBook
from roomserver.reads import ReadMarks
from roomserver.room import RoomInfo, RoomState
from roomserver.stats import RoomCounters, minute_of

ROOM_LOG_LIMIT = 10_000


@dataclass(slots=True)
class _SharedRoom:
    info: RoomInfo
    chat: ChatLog
    polls: PollBook = field(default_factory=PollBook)
    reads: ReadMarks = field(default_factory=ReadMarks)
    members: dict[str, Identity] = field(default_factory=dict)
    present: set[str] = field(default_factory=set)
    likes: int = 0
    counters: RoomCounters = field(default_factory=RoomCounters)
    control: dict[str, Any] | None = None
    draws: dict[str, dict[str, Any]] = field(default_factory=dict)
    draw_entries: dict[str, set[str]] = field(default_factory=dict)
    log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=ROOM_LOG_LIMIT))


class MemoryBroker:
    """Single-node broker; the embedded default."""

    def __init__(self, node_id: str = "local", history_size: int = 1000) -> None:
        self.node_id = node_id
        self._history_size = history_size
        self._rooms: dict[str, _SharedRoom] = {}
        self._subscribed: set[str] = set()
        self._sink: EventSink | None = None
        self._reports: dict[str, tuple[float, dict[str, Any]]] = {}
        self._handler: NodeHandler | None = None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._subscribed.clear()

    def attach(self, sink: EventSink) -> None:
        self._sink = sink

    # rooms

    async def create_room(self, info: RoomInfo) -> bool:
        if info.id in self._rooms:
            return False
        self._rooms[info.id] = _SharedRoom(info, ChatLog(info.id, self._history_size))
        return True

    async def get_room(self, room: str) -> RoomInfo | None:
        shared = self._rooms.get(room)
        return shared.info if shared else None

    async def delete_room(self, room: str) -> bool:
        return self._rooms.pop(room, None) is not None

    def _room(self, room: str) -> _SharedRoom:
        shared = self._rooms.get(room)
        if shared is None:
            raise NotFound(f"room {room!r} does not exist")
        return shared

    # fan-out

    async def subscribe(self, room: str) -> None:
        self._subscribed.add(room)

    async def unsubscribe(self, room: str) -> None:
        self._subscribed.discard(room)

    async def publish(self, room: str, envelope: Envelope) -> None:
        self._deliver(room, envelope)

    def _deliver(self, room: str, envelope: Envelope) -> None:
        if self._sink is not None and room in self._subscribed:
            self._sink(room, envelope)

    # chat

    async def append_chat(self, room: str, draft: ChatDraft, ts: int) -> tuple[ChatMessage, bool]:
        shared = self._room(room)
        message, new = shared.chat.append(draft, ts)
        if new:
            counters = shared.counters
            counters.chat_total += 1
            minute = minute_of(ts)
            counters.chat_per_minute[minute] = counters.chat_per_minute.get(minute, 0) + 1
            self._deliver(room, Envelope(message.to_event()))
        return message, new

    async def latest_seq(self, room: str) -> int:
        return self._room(room).chat.latest_seq

    async def chat_latest(self, room: str, limit: int) -> list[ChatMessage]:
        return self._room(room).chat.latest(limit)

    async def join_view(
        self, room: str, user: str, limit: int, local_members: int, now_ms: int
    ) -> JoinView:
        return JoinView(
            seq=await self.latest_seq(room),
            history=await self.chat_latest(room, limit),
            members=await self.presence(room, local_members),
            likes=await self.likes(room),
            polls=await self.polls(room, user, now_ms),
        )

    async def chat_since(self, room: str, since: int, limit: int) -> tuple[list[ChatMessage], bool]:
        return self._room(room).chat.since(since, limit)

    async def chat_before(self, room: str, seq: int, limit: int) -> tuple[list[ChatMessage], bool]:
        return self._room(room).chat.before(seq, limit)

    async def chat_after(self, room: str, seq: int, limit: int) -> tuple[list[ChatMessage], bool]:
        return self._room(room).chat.after(seq, limit)

    async def delete_chat(self, room: str, seq: int) -> bool:
        return self._room(room).chat.delete(seq)

    async def mark_read(self, room: str, user: str, seq: int) -> None:
        self._room(room).reads.mark(user, seq)

    async def readers(self, room: str, seq: int) -> int:
        return self._room(room).reads.readers(seq)

    # polls

    async def create_poll(
        self,
        room: str,
        poll_id: str,
        question: str,
        options: Sequence[str],
        now_ms: int,
        duration_s: int | None,
    ) -> PollView:
        poll = self._room(room).polls.create(poll_id, question, options, now_ms, duration_s)
        return poll.to_wire()

    async def vote(self, room: str, poll_id: str, user: str, option: int) -> Tally:
        # Wall-clock time, as the Redis vote script uses: a vote after closes_at is refused.
        now_ms = int(time.time() * 1000)
        poll = self._room(room).polls.vote(poll_id, user, option, now_ms)
        return list(poll.votes), poll.total

    async def close_poll(self, room: str, poll_id: str, now_ms: int) -> tuple[PollView, bool]:
        book = self._room(room).polls
        closed = book.close(poll_id, now_ms)
        return book.get(poll_id).to_wire(), closed is not None

    async def poll_tally(self, room: str, poll_id: str) -> Tally:
        poll = self._room(room).polls.get(poll_id)
        return list(poll.votes), poll.total

    async def polls(self, room: str, user: str | None, now_ms: int) -> list[PollView]:
        book = self._room(room).polls
        return [
            p.to_wire(book.my_vote(p.id, user) if user is not None else None)
            for p in book.visible(now_ms)
        ]

    # control state: kept here so a node may drop a room nobody is in

    async def refresh_control(self, state: RoomState) -> None:
        shared = self._rooms.get(state.id)
        if shared is not None and shared.control is not None:
            state.load_control(shared.control)

    async def update_control(self, state: RoomState, change: ControlChange) -> list[Envelope]:
        shared = self._room(state.id)
        if shared.control is not None:
            state.load_control(shared.control)
        envelopes = change(state)
        shared.control = state.control_to_wire()
        for envelope in envelopes:
            self._deliver(state.id, envelope)
        return envelopes

    # members: one node holds them all, so what it knows locally is everything

    async def member_joined(self, room: str, who: Identity, ts: int) -> None:
        shared = self._room(room)
        shared.members[who.user] = who
        shared.present.add(who.user)
        shared.counters.presence.sample(ts, len(shared.present))

    async def member_left(self, room: str, user: str, ts: int) -> None:
        shared = self._rooms.get(room)
        if shared is not None:
            shared.present.discard(user)
            shared.counters.presence.sample(ts, len(shared.present))

    async def find_member(self, room: str, user: str) -> Identity | None:
        return self._room(room).members.get(user)

    async def is_present(self, room: str, user: str) -> bool:
        return False

    async def claim(self, room: str, what: str, interval_s: float) -> float:
        return 0.0

    # media node and calls: there is only this node

    async def heartbeat(self) -> None:
        return None

    async def claim_media_node(self, room: str) -> str:
        return self.node_id

    async def media_node(self, room: str) -> str | None:
        return self.node_id

    def serve_calls(self, handler: NodeHandler) -> None:
        self._handler = handler

    async def call_node(
        self, node: str, room: str, request: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        if node != self.node_id or self._handler is None:
            raise Unavailable(f"node {node!r} is not reachable")
        return await self._handler(request)

    # lucky draws

    async def create_draw(self, room: str, record: dict[str, Any]) -> None:
        shared = self._room(room)
        shared.draws[record["id"]] = {**record, "open": True}
        shared.draw_entries[record["id"]] = set()

    async def draw_enter(self, room: str, draw_id: str, users: Sequence[str]) -> int:
        shared = self._room(room)
        draw = shared.draws.get(draw_id)
        if draw is None:
            raise NotFound(f"draw {draw_id!r} does not exist")
        entries = shared.draw_entries[draw_id]
        if draw["open"]:
            entries.update(users)
        return len(entries)

    async def close_draw(self, room: str, draw_id: str) -> tuple[dict[str, Any], list[str], bool]:
        shared = self._room(room)
        draw = shared.draws.get(draw_id)
        if draw is None:
            raise NotFound(f"draw {draw_id!r} does not exist")
        closed_now = draw["open"]
        draw["open"] = False
        record = {k: v for k, v in draw.items() if k != "open"}
        return record, sorted(shared.draw_entries[draw_id]), closed_now

    async def present_users(self, room: str) -> list[str]:
        return sorted(self._room(room).present)

    async def poll_voters(self, room: str, poll_id: str) -> list[str]:
        return self._room(room).polls.voters(poll_id)

    # analytics

    async def sample_presence(self, room: str, ts: int, members: int) -> None:
        self._room(room).counters.presence.sample(ts, members)

    async def record(self, room: str, entry: dict[str, Any]) -> None:
        self._room(room).log.append(entry)

    async def counters(self, room: str) -> RoomCounters:
        shared = self._room(room)
        counters = shared.counters
        counters.likes = shared.likes
        counters.unique_members = len(shared.members)
        return counters

    async def room_log(self, room: str) -> list[dict[str, Any]]:
        return list(self._room(room).log)

    async def all_polls(self, room: str) -> list[PollView]:
        return [poll.to_wire() for poll in self._room(room).polls.all()]

    async def keep_report(self, room: str, report: dict[str, Any], ttl_s: int) -> None:
        now = time.monotonic()
        self._reports = {k: v for k, v in self._reports.items() if v[0] > now}
        self._reports[room] = (now + ttl_s, report)

    async def kept_report(self, room: str) -> dict[str, Any] | None:
        kept = self._reports.get(room)
        if kept is None or kept[0] <= time.monotonic():
            return None
        return kept[1]

    # counters

    async def add_likes(self, room: str, n: int) -> int:
        shared = self._room(room)
        shared.likes += n
        return shared.likes

    async def likes(self, room: str) -> int:
        return self._room(room).likes

    async def presence(self, room: str, local_members: int) -> int:
        return local_members
