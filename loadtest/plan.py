"""What a run does, as plain data: the options common to every scenario, the mix of
room-core actions, and what each client process is told to do.

Invariants:

- Everything here is immutable and picklable: a :class:`WorkerSpec` is the whole
  brief of a client process (started with the ``spawn`` method), so a worker needs
  no state from the coordinator besides it and the commands it receives.
- Members are numbered ``0..members-1``; the first ``senders`` of them are
  moderators (staff are not rate limited, so chat load is what was asked for, not
  what a member's limit allows) and run in the setup phase; the others are members.
  Member ``i`` talks to node ``urls[i % len(urls)]`` (round-robin) and is run by
  client process ``i % procs``.
- A :class:`Mix` is bounded: a finite number of members and actions, and every
  action's time lies within ``duration_s`` of t0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loadtest.httpapi import MemberId
from loadtest.schedule import Arrivals

SENDER_ROLE = "moderator"
MEMBER_ROLE = "member"
#: What the tool can measure: roomserver nodes, or the Node Socket.IO baseline
#: (``loadtest/baselines/socketio``, spoken to by :mod:`loadtest.socketio`).
TARGETS = ("roomserver", "socketio")
#: Each target's WebSocket endpoint, appended to a server's base URL.
WS_PATHS = {"roomserver": "/ws", "socketio": "/socket.io/?EIO=4&transport=websocket"}


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Options every scenario shares, validated once by the CLI."""

    urls: tuple[str, ...]
    secret: str
    encoding: str = "json"
    procs: int = 1
    out_dir: str = "loadtest-results"
    join_timeout_s: float = 30.0
    request_timeout_s: float = 30.0
    drain_timeout_s: float = 15.0
    setup_timeout_s: float = 180.0
    seed: int = 1
    run_id: str = "run"
    target: str = "roomserver"
    server_pids: tuple[int, ...] = ()
    watched_pids: tuple[int, ...] = ()
    plot: bool = True
    progress: bool = True


@dataclass(frozen=True, slots=True)
class Mix:
    """The room-core actions of a run (see the module docstring).

    ``initial`` members join during setup, before t0 (their joins are reported, but
    outside the measured interval); the rest arrive after t0 as ``arrivals`` says.
    Chat senders must be among the initial members.
    """

    members: int
    initial: int
    arrivals: Arrivals = field(default_factory=Arrivals)
    rooms: int = 1
    senders: int = 0
    chat_rate: float = 0.0
    chat_s: float = 0.0
    like_rate: float = 0.0
    votes: bool = False
    vote_from_s: float = 0.0
    vote_until_s: float = 0.0
    poll_options: int = 4
    duration_s: float = 0.0
    media_note: str = ""

    def __post_init__(self) -> None:
        if self.members < 1:
            raise ValueError("members must be >= 1")
        if not 0 <= self.initial <= self.members:
            raise ValueError("initial must be within 0..members")
        if self.senders > self.initial:
            raise ValueError("chat senders must join during setup (senders <= initial)")
        if self.rooms < 1 or self.rooms > self.members:
            raise ValueError("rooms must be within 1..members")
        if self.senders and not self.chat_rate > 0:
            raise ValueError("a chat rate > 0 is needed when there are senders")
        if not 2 <= self.poll_options <= 10:
            raise ValueError("a poll has 2-10 options")

    def role(self, index: int) -> str:
        return SENDER_ROLE if index < self.senders else MEMBER_ROLE

    def room_index(self, index: int) -> int:
        return index % self.rooms

    @property
    def chats(self) -> bool:
        return self.senders > 0

    @property
    def likes(self) -> bool:
        return self.like_rate > 0

    def offered_events_per_s(self) -> float:
        """Messages per second the client processes must read (for the default ``--procs``)."""
        per_room = self.members / self.rooms
        chat = self.chat_rate * per_room
        tallies = 5 * per_room if self.votes else 0.0
        likes = 2 * per_room if self.likes else 0.0
        return chat + tallies + likes


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything one client process needs (see the module docstring)."""

    index: int
    procs: int
    scenario: str
    config: RunConfig
    members: tuple[MemberId, ...]
    rooms: tuple[str, ...]
    shared: dict[str, Any] = field(default_factory=dict)
    mix: Mix | None = None


def ws_url(base: str, target: str = "roomserver") -> str:
    """The WebSocket URL of a server's base URL (``http://`` becomes ``ws://``)."""
    path = WS_PATHS[target]
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :].rstrip("/") + path
    return "ws://" + base.removeprefix("http://").rstrip("/") + path
