"""The broker contract: the one interface between a node and shared room state.

A node decides with pure rules and local state; everything that must be the
same on every node goes through the broker:

* **Fan-out.** ``publish`` delivers an envelope to the sink of every node
  subscribed to the room, in one order per room. A node subscribes a room
  once, when its first local member joins, and unsubscribes when the last
  one leaves.
* **Chat sequencing and history.** ``append_chat`` allocates the next ``seq``,
  stores the message in the capped history, remembers ``(user, cid)`` for
  idempotency, and publishes the ``chat`` event, as one atomic step: a message
  that got a ``seq`` is in history and will be published, and messages are
  published in ``seq`` order. A repeated ``(user, cid)`` returns the first
  message and publishes nothing.
* **Votes.** ``vote`` records at most one vote per user per poll, atomically.
  ``close_poll`` returns ``closed_now`` True to exactly one caller.
* **Room control state.** ``update_control`` applies a pure transition of
  :class:`~roomserver.room.RoomState` (co-hosts, mutes, bans, pinned product,
  publishers) to the shared state and publishes the envelopes it returns, as
  one atomic step; concurrent changes from several nodes are serialised.
* **Members.** Each node reports the users it holds (``member_joined`` /
  ``member_left``); ``presence`` is the number of users present on all live
  nodes, and ``find_member`` / ``is_present`` answer for users on any node.
  Each join and leave also folds the new total into the room's presence
  analytics, so a peak is never missed between coalesced presence events.
* **Coalescing.** ``claim`` grants the right to send a coalesced event of a
  room at most once per interval across all nodes.
* **Media node.** A room's WebRTC lives on one node: ``claim_media_node``
  returns the live node holding it, or makes this node the holder. Nodes
  prove they are alive with ``heartbeat``.
* **Calls between nodes.** ``call_node`` sends a request to one node, which
  answers it with the handler it registered with ``serve_calls``; used to
  forward ``rtc.*`` to a room's media node.
* **Likes** are a counter every node adds to.
* **Analytics.** ``append_chat`` also counts the message (in total and per
  minute); ``sample_presence`` folds the member count into a time-weighted
  area; ``record`` appends co-host, stream, poll and moderation events to a
  bounded room log. When a room ends, its report is kept with ``keep_report``
  for the retention time.

Implementations: :mod:`roomserver.broker.memory` (one node, the default).
Every implementation passes the same contract tests in ``tests/contract``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from roomserver.events import Envelope
from roomserver.ids import ChatDraft, ChatMessage, Identity
from roomserver.room import RoomInfo, RoomState
from roomserver.stats import RoomCounters

EventSink = Callable[[str, Envelope], None]
"""Called once per event per node: ``sink(room_id, envelope)``. Must not block."""

PollView = dict[str, Any]
Tally = tuple[list[int], int]
NodeHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""Answers a call from another node; raises ``ClientError`` to answer with an error."""
ControlChange = Callable[[RoomState], list[Envelope]]
"""A pure transition of a room's control state returning the envelopes to publish."""


@dataclass(frozen=True, slots=True)
class JoinView:
    """What a join snapshot reads from shared state, fetched together (the join hot path)."""

    seq: int
    history: list[ChatMessage]
    members: int
    likes: int
    polls: list[PollView]


class Broker(Protocol):
    node_id: str

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    def attach(self, sink: EventSink) -> None: ...

    # rooms
    async def create_room(self, info: RoomInfo) -> bool: ...
    async def get_room(self, room: str) -> RoomInfo | None: ...
    async def delete_room(self, room: str) -> bool: ...

    # fan-out
    async def subscribe(self, room: str) -> None: ...
    async def unsubscribe(self, room: str) -> None: ...
    async def publish(self, room: str, envelope: Envelope) -> None: ...

    # chat
    async def append_chat(
        self, room: str, draft: ChatDraft, ts: int
    ) -> tuple[ChatMessage, bool]: ...

    async def latest_seq(self, room: str) -> int: ...
    async def chat_latest(self, room: str, limit: int) -> list[ChatMessage]: ...
    async def join_view(
        self, room: str, user: str, limit: int, local_members: int, now_ms: int
    ) -> JoinView:
        """Latest seq, the last ``limit`` messages, presence, likes and ``user``'s polls.

        The same as ``latest_seq``, ``chat_latest``, ``presence``, ``likes`` and
        ``polls`` one after the other, in as few round trips as the broker allows.
        """
        ...

    async def chat_since(
        self, room: str, since: int, limit: int
    ) -> tuple[list[ChatMessage], bool]: ...
    async def chat_before(
        self, room: str, seq: int, limit: int
    ) -> tuple[list[ChatMessage], bool]: ...
    async def chat_after(
        self, room: str, seq: int, limit: int
    ) -> tuple[list[ChatMessage], bool]: ...
    async def delete_chat(self, room: str, seq: int) -> bool: ...
    async def mark_read(self, room: str, user: str, seq: int) -> None: ...
    async def readers(self, room: str, seq: int) -> int: ...

    # polls
    async def create_poll(
        self,
        room: str,
        poll_id: str,
        question: str,
        options: Sequence[str],
        now_ms: int,
        duration_s: int | None,
    ) -> PollView: ...
    async def vote(self, room: str, poll_id: str, user: str, option: int) -> Tally: ...
    async def close_poll(self, room: str, poll_id: str, now_ms: int) -> tuple[PollView, bool]: ...
    async def poll_tally(self, room: str, poll_id: str) -> Tally: ...
    async def polls(self, room: str, user: str | None, now_ms: int) -> list[PollView]: ...

    # control state
    async def refresh_control(self, state: RoomState) -> None: ...
    async def update_control(self, state: RoomState, change: ControlChange) -> list[Envelope]: ...

    # members
    async def member_joined(self, room: str, who: Identity, ts: int) -> None: ...
    async def member_left(self, room: str, user: str, ts: int) -> None: ...
    async def find_member(self, room: str, user: str) -> Identity | None: ...
    async def is_present(self, room: str, user: str) -> bool: ...
    async def presence(self, room: str, local_members: int) -> int: ...

    # counters and coalescing
    async def add_likes(self, room: str, n: int) -> int: ...
    async def likes(self, room: str) -> int: ...
    async def claim(self, room: str, what: str, interval_s: float) -> float: ...

    # media node and calls between nodes
    async def heartbeat(self) -> None: ...
    async def claim_media_node(self, room: str) -> str: ...
    async def media_node(self, room: str) -> str | None: ...
    def serve_calls(self, handler: NodeHandler) -> None: ...
    async def call_node(
        self, node: str, room: str, request: dict[str, Any], timeout: float
    ) -> dict[str, Any]: ...

    # lucky draws: entries are a set per draw, closing flips it once
    async def create_draw(self, room: str, record: dict[str, Any]) -> None: ...
    async def draw_enter(self, room: str, draw_id: str, users: Sequence[str]) -> int: ...
    async def close_draw(
        self, room: str, draw_id: str
    ) -> tuple[dict[str, Any], list[str], bool]: ...
    async def present_users(self, room: str) -> list[str]: ...
    async def poll_voters(self, room: str, poll_id: str) -> list[str]: ...

    # analytics
    async def sample_presence(self, room: str, ts: int, members: int) -> None: ...
    async def record(self, room: str, entry: dict[str, Any]) -> None: ...
    async def counters(self, room: str) -> RoomCounters: ...
    async def room_log(self, room: str) -> list[dict[str, Any]]: ...
    async def all_polls(self, room: str) -> list[PollView]: ...
    async def keep_report(self, room: str, report: dict[str, Any], ttl_s: int) -> None: ...
    async def kept_report(self, room: str) -> dict[str, Any] | None: ...
