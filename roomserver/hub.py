"""This node's connections and the fan-out of room events to them.

Invariants:

* An event is encoded at most once per encoding per delivery, and its whole
  WebSocket frame is built once too: every connection of that encoding that
  has nothing else queued is handed the same frame bytes.
* Producers never wait: :meth:`Conn.push` appends to an outbox and marks the
  connection dirty. Once per loop iteration the :class:`Flusher` writes each
  dirty connection's outbox straight to its transport, several messages in
  one frame when several queued up. No task wakes per member per message.
* Where the machine has io_uring (:mod:`roomserver.sendring`), connections whose
  whole outbox is one shared frame and whose transport holds nothing are
  written in one system call per frame, not one each. Only asyncio's plain TCP
  transports qualify, and only while not closing, so the ring never writes to a
  descriptor whose connection has ended, and never ahead of buffered bytes.
* Every outbox is bounded. When a transport's kernel buffer backs up past
  ``HIGH_WATER`` bytes the connection is paused and messages wait in its
  outbox; an outbox that passes its limit marks the connection
  ``overflowed``, and it is dropped (it resumes with ``since``). A slow client
  can therefore never slow a room.
* While a connection is joining a room, that room's events are held back in
  ``joining`` and released after the snapshot, so nothing falls between the
  snapshot and the live stream, and no chat message is given twice.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import struct
from array import array
from asyncio import selector_events
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from roomserver.events import Envelope
from roomserver.ids import Identity
from roomserver.metrics import Metrics
from roomserver.sendring import STAGING_BYTES, RingBroken, SendRing
from signaling.codec import Codec

log = logging.getLogger(__name__)
#: asyncio's plain TCP transport: the one whose socket carries our frames unaltered.
_PLAIN_TCP_TRANSPORT: type | None = getattr(selector_events, "_SelectorSocketTransport", None)

_conn_ids = itertools.count(1)

OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
#: Bytes waiting in a transport beyond which a connection stops being written to.
HIGH_WATER = 256 * 1024
#: How often paused connections are looked at again.
RECHECK_S = 0.02
#: Connections sharing one frame in a tick from which the send ring takes them.
RING_MIN_BATCH = 8


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked WebSocket frame (server to client, RFC 6455 section 5.2)."""
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, size))
    elif size < 65_536:
        header = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return header + payload


class Transport(Protocol):
    """The part of an asyncio transport the hub writes through."""

    def write(self, data: bytes) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def is_closing(self) -> bool: ...


class Flusher:
    """Writes every dirty connection once per loop iteration.

    Connections whose whole outbox is one shared frame (a room event, nothing
    else queued) and whose transport holds nothing go to the send ring, when
    this machine has one: one system call for all of them.
    """

    def __init__(self, ring: SendRing | None = None) -> None:
        self._dirty: list[Conn] = []
        self._scheduled = False
        self._paused: set[Conn] = set()
        self._rechecking = False
        self._ring = ring
        self._ring_tried = ring is not None
        self._groups: dict[int, tuple[bytes, list[Conn]]] = {}

    def close(self) -> None:
        """Its loop is closed: let go of the ring."""
        if self._ring is not None:
            self._ring.close()
            self._ring = None

    def ring(self) -> SendRing | None:
        """The loop's send ring, opened on first use; None where there is none."""
        if not self._ring_tried:
            self._ring_tried = True
            self._ring = SendRing.open()
        return self._ring

    def mark(self, conn: Conn) -> None:
        self._dirty.append(conn)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def shared(self, frame: bytes) -> list[Conn]:
        """The connections this tick that get ``frame`` and nothing else (see Hub.deliver)."""
        group = self._groups.get(id(frame))
        if group is None:
            group = self._groups[id(frame)] = (frame, [])
            if not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)
        return group[1]

    def _flush(self) -> None:
        self._scheduled = False
        if self._groups:
            groups, self._groups = self._groups, {}
            for frame, conns in groups.values():
                self._flush_group(frame, conns)
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            if conn.flush():
                self._pause(conn)

    def _flush_group(self, frame: bytes, conns: list[Conn]) -> None:
        """Send ``frame`` through the ring to every connection that still has only it queued."""
        ring = self._ring
        sendable: list[Conn] = []
        fds = array("i")
        if ring is not None and len(conns) >= RING_MIN_BATCH and len(frame) <= STAGING_BYTES:
            rest: list[Conn] = []
            for conn in conns:
                transport = conn._transport
                if (
                    conn._single is frame
                    and not conn._closed
                    and transport is not None
                    and not transport.is_closing()
                    and not transport.get_write_buffer_size()
                ):
                    sendable.append(conn)
                    fds.append(conn._fd)
                else:
                    rest.append(conn)  # more was queued, or it closed: the usual way
            conns = rest
        if sendable:
            assert ring is not None
            try:
                results = ring.send(fds, frame)
            except RingBroken:
                log.exception("send ring failed: its connections are closed, and it is off")
                self._ring = None
                for conn in sendable:
                    conn.abort()
            else:
                self._sent(sendable, frame, results)
        for conn in conns:
            if conn.flush():
                self._pause(conn)

    def _sent(self, conns: list[Conn], frame: bytes, results: list[int] | None) -> None:
        """Settle each connection after a ring send: the rest of a short send is buffered."""
        for index, conn in enumerate(conns):
            conn._dirty = False
            conn._outbox = []
            conn._single = None
            if results is not None:
                taken = results[index]
                if taken != len(frame):
                    transport = conn._transport
                    assert transport is not None
                    # A short send, a full socket (EAGAIN) or an error: asyncio's
                    # transport buffers the rest or meets the error and closes.
                    transport.write(frame[taken:] if taken > 0 else frame)
                    if transport.get_write_buffer_size() > HIGH_WATER:
                        conn._paused = True
                        self._pause(conn)
            if conn._emptied is not None:
                conn._emptied.set()

    def _pause(self, conn: Conn) -> None:
        self._paused.add(conn)
        if not self._rechecking:
            self._rechecking = True
            asyncio.get_running_loop().call_later(RECHECK_S, self._recheck)

    def _recheck(self) -> None:
        self._rechecking = False
        for conn in list(self._paused):
            if conn.closed or conn.overflowed:
                self._paused.discard(conn)
            elif conn.drained():
                self._paused.discard(conn)
                if conn.flush():
                    self._paused.add(conn)
        if self._paused:
            self._rechecking = True
            asyncio.get_running_loop().call_later(RECHECK_S, self._recheck)


_flushers: dict[asyncio.AbstractEventLoop, Flusher] = {}


def flusher() -> Flusher:
    """The flusher of the running loop."""
    loop = asyncio.get_running_loop()
    found = _flushers.get(loop)
    if found is None:
        for old in [other for other in _flushers if other.is_closed()]:
            _flushers.pop(old).close()
        found = _flushers[loop] = Flusher()
    return found


def raw_fd(transport: Any) -> int:
    """The socket descriptor the send ring may write to, or -1 (TLS, pipes, fakes)."""
    plain = _PLAIN_TCP_TRANSPORT is not None and type(transport) is _PLAIN_TCP_TRANSPORT
    if not plain:
        return -1
    sock = transport.get_extra_info("socket")
    return -1 if sock is None else int(sock.fileno())


class Conn:
    """One client connection as the node sees it: identity per room and an outbox."""

    __slots__ = (
        "_closed",
        "_dirty",
        "_emptied",
        "_fd",
        "_flusher",
        "_limit",
        "_opcode",
        "_outbox",
        "_paused",
        "_single",
        "_transport",
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
        self._single: bytes | None = None
        self._dirty = False
        self._paused = False
        self._transport: Transport | None = None
        self._fd = -1
        self._opcode = OPCODE_BINARY if codec.binary else OPCODE_TEXT
        self._flusher: Flusher | None = None
        self._emptied: asyncio.Event | None = None

    def start(self, transport: Any, codec: Codec, send_ring: bool = False) -> None:
        """Begin writing to ``transport`` (after the WebSocket handshake).

        ``send_ring``: room events may go out through the loop's send ring.
        """
        self.codec = codec
        self._opcode = OPCODE_BINARY if codec.binary else OPCODE_TEXT
        self._transport = transport
        self._flusher = flusher()
        if send_ring and self._flusher.ring() is not None:
            self._fd = raw_fd(transport)
        if self._outbox and not self._dirty:
            self._dirty = True
            self._flusher.mark(self)

    def set_limit(self, limit: int) -> None:
        self._limit = limit

    def push(self, data: bytes, frame: bytes | None = None) -> None:
        """Queue one encoded message; never blocks. ``frame`` is its prebuilt frame."""
        if self._closed or self.overflowed:
            return
        if len(self._outbox) >= self._limit:
            self.overflowed = True
            self._outbox.clear()
            self._single = None
            if self.on_overflow is not None:
                self.on_overflow()
            return
        self._outbox.append(data)
        self._single = frame if len(self._outbox) == 1 else None
        if not self._dirty and not self._paused and self._flusher is not None:
            self._dirty = True
            self._flusher.mark(self)

    def answer(self, message: dict[str, Any]) -> None:
        self.push(self.codec.encode(message))

    def flush(self) -> bool:
        """Write what is queued; True when the transport is backed up (pause)."""
        self._dirty = False
        transport = self._transport
        if transport is None or self._closed or not self._outbox:
            self._signal_empty()
            return False
        if transport.is_closing():
            return False
        if self._single is not None:
            data = self._single
        elif len(self._outbox) == 1:
            data = ws_frame(self._opcode, self._outbox[0])
        else:
            data = ws_frame(self._opcode, self.codec.join(self._outbox))
        self._outbox = []
        self._single = None
        transport.write(data)
        self._signal_empty()
        self._paused = transport.get_write_buffer_size() > HIGH_WATER
        return self._paused

    def drained(self) -> bool:
        """Whether a paused connection may be written to again."""
        transport = self._transport
        if transport is None or transport.get_write_buffer_size() > HIGH_WATER // 2:
            return False
        self._paused = False
        return True

    def _signal_empty(self) -> None:
        if self._emptied is not None and not self._outbox:
            self._emptied.set()

    async def wait_empty(self, timeout: float) -> None:
        """Wait until everything queued has been handed to the transport."""
        if not self._outbox or self._transport is None:
            return
        self._emptied = asyncio.Event()
        try:
            await asyncio.wait_for(self._emptied.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            self._emptied = None

    @property
    def queued(self) -> int:
        return len(self._outbox)

    def abort(self) -> None:
        """Drop the connection at once: what it was sent is not known (it resumes with since)."""
        self.close()
        if self._transport is not None:
            abort = getattr(self._transport, "abort", None)
            if abort is not None:
                abort()

    def close(self) -> None:
        """Stop writing: nothing may follow the WebSocket close frame."""
        self._closed = True
        self._outbox.clear()
        self._single = None

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
        """Write ``envelope`` to every local connection it reaches; returns how many.

        A connection with nothing queued that the send ring may write to is queued
        the frame inline and listed in the flusher's group for that frame, instead
        of through :meth:`Conn.push`: the same state, without a call per member.
        """
        members = self._rooms.get(room)
        if not members:
            return 0
        encoded = envelope.encoded
        broadcast = envelope.broadcast
        last_codec: Codec | None = None
        cached: tuple[bytes, bytes] | None = None
        group: list[Conn] | None = None
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
            codec = conn.codec
            if codec is not last_codec or cached is None:
                last_codec = codec
                cached = encoded.get(codec.name) or _encode(envelope, codec)
                group = None
            sent += 1
            if (
                conn._fd >= 0  # started with the ring on
                and not conn._outbox
                and not conn._paused
                and not conn._closed
                and not conn.overflowed
            ):
                if group is None:
                    assert conn._flusher is not None
                    group = conn._flusher.shared(cached[1])
                conn._outbox.append(cached[0])
                conn._single = cached[1]
                conn._dirty = True  # queued; the group, not the dirty list, flushes it
                group.append(conn)
            else:
                conn.push(*cached)
        self._metrics.events_sent.inc(amount=sent)
        return sent

    def release_joining(self, room: str, conn: Conn, after_seq: int) -> None:
        """Send the events held back during ``conn``'s join, minus chat already in the snapshot."""
        held = conn.joining.pop(room, None)
        for envelope in held or ():
            event = envelope.event
            if event["t"] == "chat" and event["seq"] <= after_seq:
                continue
            cached = envelope.encoded.get(conn.codec.name)
            conn.push(*(cached or _encode(envelope, conn.codec)))


def _encode(envelope: Envelope, codec: Codec) -> tuple[bytes, bytes]:
    """Encode ``envelope`` for ``codec`` once: every later recipient reuses the bytes."""
    payload = codec.encode(envelope.event)
    opcode = OPCODE_BINARY if codec.binary else OPCODE_TEXT
    cached = envelope.encoded[codec.name] = (payload, ws_frame(opcode, payload))
    return cached
