"""This node's connections and the fan-out of room events to them.

Invariants:

* An event is encoded at most once per encoding per delivery; every
  connection of that encoding gets the same bytes object.
* Producers never wait: :meth:`Conn.push` appends to a bounded outbox. A
  connection whose outbox passes its limit is marked ``overflowed`` and its
  writer closes it; it resumes with ``since`` on reconnect. A slow client can
  therefore never slow a room.
* While a connection is joining a room, that room's events are held back in
  ``joining`` and released after the snapshot, so nothing falls between the
  snapshot and the live stream, and no chat message is given twice.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from typing import Any

from roomserver.events import Envelope
from roomserver.ids import Identity
from roomserver.metrics import Metrics
from signaling.codec import Codec

_conn_ids = itertools.count(1)


class Conn:
    """One client connection as the node sees it: identity per room and an outbox."""

    __slots__ = (
        "_closed",
        "_limit",
        "_outbox",
        "_wake",
        "codec",
        "id",
        "joining",
        "on_overflow",
        "overflowed",
        "peer",
        "rooms",
    )

    def __init__(self, codec: Codec, peer: str = "", limit: int = 2048) -> None:
        self.id = next(_conn_ids)
        self.codec = codec
        self.peer = peer
        self.rooms: dict[str, Identity] = {}
        self.joining: dict[str, list[Envelope]] = {}
        self.overflowed = False
        self.on_overflow: Callable[[], None] | None = None
        self._closed = False
        self._limit = limit
        self._outbox: list[bytes] = []
        self._wake = asyncio.Event()

    def push(self, data: bytes) -> None:
        """Queue one encoded message; never blocks."""
        if self._closed or self.overflowed:
            return
        if len(self._outbox) >= self._limit:
            self.overflowed = True
            self._outbox.clear()
            self._wake.set()
            if self.on_overflow is not None:
                self.on_overflow()
            return
        self._outbox.append(data)
        if len(self._outbox) == 1:
            self._wake.set()

    def set_limit(self, limit: int) -> None:
        self._limit = limit

    def answer(self, message: dict[str, Any]) -> None:
        self.push(self.codec.encode(message))

    @property
    def queued(self) -> int:
        return len(self._outbox)

    async def next_batch(self) -> list[bytes]:
        """Wait for queued messages and take all of them; empty when closed or overflowed."""
        while not self._outbox and not self._closed and not self.overflowed:
            self._wake.clear()
            await self._wake.wait()
        if self.overflowed or self._closed:
            return []
        batch, self._outbox = self._outbox, []
        return batch

    def close(self) -> None:
        self._closed = True
        self._outbox.clear()
        self._wake.set()

    @property
    def closed(self) -> bool:
        return self._closed


class Hub:
    """Local connections by room."""

    def __init__(self, metrics: Metrics) -> None:
        self._rooms: dict[str, dict[int, Conn]] = {}
        self._metrics = metrics

    def attach(self, room: str, conn: Conn) -> bool:
        """Add ``conn`` to ``room``; True when it is the room's first local connection."""
        members = self._rooms.get(room)
        if members is None:
            self._rooms[room] = {conn.id: conn}
            return True
        members[conn.id] = conn
        return False

    def detach(self, room: str, conn: Conn) -> bool:
        """Remove ``conn`` from ``room``; True when no local connection is left in it."""
        members = self._rooms.get(room)
        if members is None:
            return False
        members.pop(conn.id, None)
        if members:
            return False
        del self._rooms[room]
        return True

    def conns(self, room: str) -> list[Conn]:
        return list(self._rooms.get(room, {}).values())

    def conns_of(self, room: str, users: frozenset[str]) -> Iterator[Conn]:
        for conn in self._rooms.get(room, {}).values():
            who = conn.rooms.get(room)
            if who is not None and who.user in users:
                yield conn

    @property
    def room_count(self) -> int:
        return len(self._rooms)

    def deliver(self, room: str, envelope: Envelope) -> int:
        """Write ``envelope`` to every local connection it reaches; returns how many."""
        members = self._rooms.get(room)
        if not members:
            return 0
        encoded: dict[str, bytes] = {}
        broadcast = envelope.broadcast
        sent = 0
        for conn in members.values():
            if not broadcast:
                who = conn.rooms.get(room)
                if who is None or not envelope.reaches(who):
                    continue
            held = conn.joining.get(room)
            if held is not None:
                held.append(envelope)
                continue
            data = encoded.get(conn.codec.name)
            if data is None:
                data = encoded[conn.codec.name] = conn.codec.encode(envelope.event)
            conn.push(data)
            sent += 1
        self._metrics.events_sent.inc(amount=sent)
        return sent

    def release_joining(self, room: str, conn: Conn, after_seq: int) -> None:
        """Send the events held back during ``conn``'s join, minus chat already in the snapshot."""
        held = conn.joining.pop(room, None)
        for envelope in held or ():
            event = envelope.event
            if event["t"] == "chat" and event["seq"] <= after_seq:
                continue
            conn.push(conn.codec.encode(event))
