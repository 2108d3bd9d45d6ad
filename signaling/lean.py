"""A lean path for ``GET /ws``: the handshake and frames without aiohttp's request machinery.

Joins are the hot path, and for a connection that only ever carries a WebSocket,
aiohttp's HTTP request objects, handler task, middleware and WebSocket reader cost more
CPU per join than the join itself. :class:`FrontProtocol` sits in front of aiohttp on
the listening socket: it reads a connection's first request, and when that request is a
plain WebSocket upgrade of ``/ws`` it answers the handshake itself and speaks the
frames (RFC 6455) directly. Anything else (pages, the API, a malformed or unusual
upgrade, an access-logging node) is handed to aiohttp's own protocol with the bytes
read so far, so aiohttp answers it exactly as before, including ``/ws`` requests it
must refuse.

Invariants (the same as :mod:`signaling.server`, which handles the handed-over ones):

- One request at a time per connection, in order; more than ``MAX_PENDING`` frames
  waiting pauses reading.
- Oversized messages close with 1009, protocol errors (unmasked or reserved frames,
  bad control frames, bad continuations) with 1002; bad content is the session's
  business and the connection stays open.
- A ping is sent after ``HEARTBEAT_S`` without a frame from the client, and the
  connection is dropped when no frame follows within ``HEARTBEAT_S / 2`` (one sweep of
  all connections every ``SWEEP_S``, not a timer per connection).
- Writes are the hub's (:mod:`roomserver.hub`); this module writes only the handshake,
  pongs, pings and close frames, each a whole frame.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import hashlib
import logging
import struct
import time
from typing import Any

from aiohttp import web

from roomserver import logs
from roomserver.hub import Conn, ws_frame
from roomserver.netaddr import client_address, networks
from roomserver.node import Node
from signaling.codec import CODECS, codec_for
from signaling.server import LINKS_KEY, NODE_KEY, handle_frame
from signaling.session import MAX_FRAME_BYTES, Session

log = logging.getLogger(__name__)
ACCESS_LOG = logging.getLogger(logs.ACCESS_LOGGER)

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD_BYTES = 8192
MAX_PENDING = 32
HEARTBEAT_S = 30.0
SWEEP_S = 5.0
CLOSE_TIMEOUT_S = 2.0
CLOSE_PROTOCOL = 1002
CLOSE_TOO_BIG = 1009
CLOSE_NORMAL = 1000
_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0, 1, 2, 8, 9, 10
_DATA_OPS = (_OP_TEXT, _OP_BINARY)


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` answer to a client's key."""
    digest = hashlib.sha1(key.encode("ascii") + WS_GUID).digest()  # RFC 6455 asks for SHA-1
    return base64.b64encode(digest).decode("ascii")


def parse_upgrade(head: bytes) -> tuple[str, dict[str, str]] | None:
    """(target, lower-cased headers) of a plain ``GET`` upgrade to WebSocket, or None.

    None means "not one this path answers": aiohttp then gets the request, and answers
    it (or refuses it) as it always has.
    """
    lines = head.decode("latin-1").split("\r\n")  # latin-1 decodes every byte
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[0] != "GET" or parts[2] != "HTTP/1.1":
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None
        key = name.lower()
        if key in headers:  # repeated headers: aiohttp's rules apply
            return None
        headers[key] = value.strip()
    if "content-length" in headers or "transfer-encoding" in headers or "expect" in headers:
        return None
    if headers.get("upgrade", "").lower() != "websocket":
        return None
    if "upgrade" not in [t.strip().lower() for t in headers.get("connection", "").split(",")]:
        return None
    if headers.get("sec-websocket-version") != "13":
        return None
    try:
        if len(base64.b64decode(headers.get("sec-websocket-key", ""), validate=True)) != 16:
            return None
    except (binascii.Error, ValueError):
        return None
    return parts[1], headers


def choose_subprotocol(offered: str | None) -> str | None:
    """The first subprotocol the client offered that we speak (aiohttp's rule)."""
    if not offered:
        return None
    for name in (p.strip() for p in offered.split(",")):
        if name in CODECS:
            return name
    return None


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return ws_frame(_OP_CLOSE, struct.pack("!H", code) + reason[:123])


class FrameError(Exception):
    """A client frame breaks RFC 6455 (or our size limit): close with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class FrameReader:
    """Client frames in, whole messages and control frames out (sans I/O)."""

    def __init__(self, max_message: int = MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_message
        self._parts: list[bytes] = []
        self._part_op = 0
        self._part_size = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """(opcode, payload) of each complete message or control frame in order."""
        buf = self._buffer
        buf += data
        out: list[tuple[int, bytes]] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            fin, opcode = first & 0x80, first & 0x0F
            if first & 0x70:
                raise FrameError(CLOSE_PROTOCOL, "reserved bits set")
            if not second & 0x80:
                raise FrameError(CLOSE_PROTOCOL, "client frames must be masked")
            length = second & 0x7F
            head = 2
            if length == 126:
                if end - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif length == 127:
                if end - pos < 10:
                    break
                (length,) = struct.unpack_from("!Q", buf, pos + 2)
                head = 10
            if opcode >= 8:
                if not fin or length > 125:
                    raise FrameError(CLOSE_PROTOCOL, "bad control frame")
                if opcode not in (_OP_CLOSE, _OP_PING, _OP_PONG):
                    raise FrameError(CLOSE_PROTOCOL, "unknown opcode")
            elif opcode not in (_OP_CONT, _OP_TEXT, _OP_BINARY):
                raise FrameError(CLOSE_PROTOCOL, "unknown opcode")
            if length + self._part_size > self._max:
                raise FrameError(CLOSE_TOO_BIG, "message too big")
            total = head + 4 + length
            if end - pos < total:
                break
            mask = bytes(buf[pos + head : pos + head + 4])
            payload = _unmask(bytes(buf[pos + head + 4 : pos + total]), mask)
            pos += total
            if opcode >= 8:
                out.append((opcode, payload))
            elif opcode == _OP_CONT:
                if not self._parts:
                    raise FrameError(CLOSE_PROTOCOL, "continuation without a start")
                self._parts.append(payload)
                self._part_size += length
                if fin:
                    out.append((self._part_op, b"".join(self._parts)))
                    self._parts, self._part_size = [], 0
            else:
                if self._parts:
                    raise FrameError(CLOSE_PROTOCOL, "new message inside a fragmented one")
                if fin:
                    out.append((opcode, payload))
                else:
                    self._parts, self._part_op, self._part_size = [payload], opcode, length
        if pos:
            del buf[:pos]
        return out


def _unmask(payload: bytes, mask: bytes) -> bytes:
    if not payload:
        return payload
    repeated = (mask * (len(payload) // 4 + 1))[: len(payload)]
    value = int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")
    return value.to_bytes(len(payload), "little")


class FrontServer:
    """The protocol factory the listening socket uses: aiohttp's ``web.Server`` behind it."""

    def __init__(self, inner: web.Server, app: web.Application, handshake_timeout: float) -> None:
        self.inner = inner
        self.handshake_timeout = handshake_timeout
        self.node: Node = app[NODE_KEY]
        self.links: set[Any] = app[LINKS_KEY]
        self._trusted = networks(self.node.settings.trusted_proxy)
        self._sweeper: asyncio.Task[None] | None = None
        self.lean: set[LeanLink] = set()
        self.closing: set[asyncio.Task[None]] = set()

    def __call__(self) -> asyncio.Protocol:
        return FrontProtocol(self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def handle_off(self) -> bool:
        """Whether new connections go to aiohttp: a draining node refuses them there."""
        return self.node.draining

    def log_access(self, link: LeanLink) -> None:
        """The access line aiohttp would write when the WebSocket ends."""
        if self.node.settings.access_log and ACCESS_LOG.isEnabledFor(logging.INFO):
            logs.log_access(
                ACCESS_LOG,
                "GET",
                link.target,
                101,
                0,
                time.monotonic() - link.opened_at,
                link.conn.peer,
                link.request_id,
            )

    def started(self, link: LeanLink) -> None:
        self.lean.add(link)
        self.links.add(link)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    def ended(self, link: LeanLink) -> None:
        self.lean.discard(link)
        self.links.discard(link)

    def client_address(self, peer: str, forwarded: str | None) -> str:
        return client_address(peer, [forwarded] if forwarded is not None else [], self._trusted)

    async def _sweep(self) -> None:
        while self.lean:
            await asyncio.sleep(SWEEP_S)
            now = time.monotonic()
            for link in list(self.lean):
                link.heartbeat(now)

    async def shutdown(self, timeout: float | None = None) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self.inner.shutdown(timeout)


class FrontProtocol(asyncio.Protocol):
    """A new connection: read its first request head, then answer it or hand it over."""

    def __init__(self, front: FrontServer) -> None:
        self.front = front
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        self.link: LeanLink | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.front.handle_off():
            self._hand_over()
            return
        self.timer = asyncio.get_running_loop().call_later(
            self.front.handshake_timeout, transport.close
        )

    def data_received(self, data: bytes) -> None:
        if self.link is not None:
            self.link.data_received(data)
            return
        self.head += data
        prefix = bytes(self.head[:8])
        if not (b"GET /ws ".startswith(prefix) or prefix in (b"GET /ws ", b"GET /ws?")):
            self._hand_over()
            return
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_HEAD_BYTES:
                self._hand_over()
            return
        if end + 4 != len(self.head):  # bytes after the head: aiohttp's to sort out
            self._hand_over()
            return
        parsed = parse_upgrade(bytes(self.head[:end]))
        if parsed is None or parsed[0].split("?", 1)[0] != "/ws" or self.front.handle_off():
            self._hand_over()
            return
        self._accept(parsed[0], parsed[1])

    def _hand_over(self) -> None:
        transport = self.transport
        assert transport is not None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        handler = self.front.inner()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self.head:
            handler.data_received(bytes(self.head))
        self.head = bytearray()

    def _accept(self, target: str, headers: dict[str, str]) -> None:
        transport = self.transport
        assert transport is not None
        front = self.front
        peername = transport.get_extra_info("peername")
        peer = front.client_address(peername[0] if peername else "", headers.get("x-forwarded-for"))
        conn = Conn(codec_for(None), peer=peer, limit=front.node.settings.send_queue_limit)
        if not front.node.open_connection(conn):
            # as aiohttp would answer the handler's HTTPTooManyRequests
            self._hand_over()
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        subprotocol = choose_subprotocol(headers.get("sec-websocket-protocol"))
        lines = [
            "HTTP/1.1 101 Switching Protocols",
            "Upgrade: websocket",
            "Connection: upgrade",
            "Sec-WebSocket-Accept: " + accept_key(headers["sec-websocket-key"]),
        ]
        if subprotocol is not None:
            lines.append("Sec-WebSocket-Protocol: " + subprotocol)
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        conn.start(transport, codec_for(subprotocol), front.node.settings.send_ring)
        self.head = bytearray()
        self.link = LeanLink(front, transport, conn)
        self.link.target = target
        self.link.request_id = headers.get("x-request-id")
        front.started(self.link)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.link is not None:
            self.link.connection_lost()


class LeanLink:
    """One lean WebSocket connection: its frames, its requests, how it ends.

    Has what :func:`signaling.server.close_all` uses of a link: ``busy``, ``conn``
    and ``close``.
    """

    def __init__(self, front: FrontServer, transport: asyncio.Transport, conn: Conn) -> None:
        self.front = front
        self.node = front.node
        self.transport = transport
        self.conn = conn
        self.session = Session(conn.codec)
        self.reader = FrameReader()
        self.pending: collections.deque[bytes] = collections.deque()
        self.busy = False
        self.task: asyncio.Task[None] | None = None
        self.paused = False
        self.closing = False
        self.finished = asyncio.Event()
        self.opened_at = self.last_rx = time.monotonic()
        self.ping_sent: float | None = None
        self.target = "/ws"
        self.request_id: str | None = None
        conn.on_overflow = self.drop_slow

    # -- frames in --------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        self.ping_sent = None
        try:
            frames = self.reader.feed(data)
        except FrameError as exc:
            if not self.closing:
                self._fail(exc.code, str(exc).encode())
            return
        if self.closing:  # our close frame is out: only the answer to it matters
            if any(opcode == _OP_CLOSE for opcode, _ in frames):
                self.transport.close()
            return
        for opcode, payload in frames:
            if opcode in _DATA_OPS:
                self.pending.append(payload)
            elif opcode == _OP_PING:
                self.transport.write(ws_frame(_OP_PONG, payload))
            elif opcode == _OP_CLOSE:
                self._closed_by_client(payload)
                return
        if self.pending and (self.task is None or self.task.done()):
            self.task = asyncio.get_running_loop().create_task(self._run())
        if len(self.pending) > MAX_PENDING and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    async def _run(self) -> None:
        while self.pending and not self.closing:
            data = self.pending.popleft()
            if self.paused and len(self.pending) <= MAX_PENDING // 2:
                self.paused = False
                self.transport.resume_reading()
            if not await handle_frame(self.node, self.conn, self.session, self, data):
                return

    # -- ending -----------------------------------------------------------------------

    def heartbeat(self, now: float) -> None:
        if self.closing:
            return
        if self.ping_sent is not None:
            if now - self.ping_sent > HEARTBEAT_S / 2:
                log.info("no pong: dropping conn=%d peer=%s", self.conn.id, self.conn.peer)
                self.transport.abort()
        elif now - self.last_rx > HEARTBEAT_S:
            self.ping_sent = now
            self.transport.write(ws_frame(_OP_PING, b""))

    def _closed_by_client(self, payload: bytes) -> None:
        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else CLOSE_NORMAL
        self.closing = True
        self.conn.close()
        self.transport.write(close_frame(code if 1000 <= code < 5000 else CLOSE_NORMAL))
        self.transport.close()

    def _fail(self, code: int, reason: bytes) -> None:
        self.closing = True
        self.conn.close()
        self.transport.write(close_frame(code, reason))
        self.transport.close()

    def drop_slow(self) -> None:
        """The outbox overflowed: drop the TCP connection at once (see server._Link)."""
        self.node.metrics.slow_disconnects.inc()
        log.info("slow client dropped conn=%d peer=%s", self.conn.id, self.conn.peer)
        self.conn.close()
        self.transport.abort()

    async def flush_then_close(self, code: int, reason: bytes) -> None:
        """Send what is queued (the last error answer), then close."""
        await self.close(code, reason)

    async def close(self, code: int, reason: bytes) -> None:
        """Write what is queued, then a close frame; drop the connection if it lingers."""
        await self.conn.wait_empty(CLOSE_TIMEOUT_S)
        self.conn.close()
        if not self.closing:
            self.closing = True
            self.transport.write(close_frame(code, reason))
        try:
            await asyncio.wait_for(self.finished.wait(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            self.transport.abort()

    def connection_lost(self) -> None:
        self.closing = True
        self.pending.clear()
        self.front.ended(self)
        self.front.log_access(self)
        self.finished.set()
        self.conn.close()
        task = self.task
        closing = asyncio.get_running_loop().create_task(self._closed(task))
        self.front.closing.add(closing)  # held until done: the loop keeps weak references
        closing.add_done_callback(self.front.closing.discard)

    async def _closed(self, task: asyncio.Task[None] | None) -> None:
        if task is not None and not task.done():
            try:
                await task
            except Exception:  # the request's own errors were answered or logged
                log.exception("request failed on a closing connection")
        await self.node.connection_closed(self.conn)


def front_runner(app: web.Application, **kwargs: Any) -> web.AppRunner:
    """An ``AppRunner`` whose sites put :class:`FrontServer` in front of aiohttp."""
    return _FrontRunner(app, **kwargs)


class _FrontRunner(web.AppRunner):
    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        # a connection that has not sent its request head by then is closed, as aiohttp
        # closes one idle that long (its keep-alive timeout, which the caller sets)
        self.handshake_timeout = float(kwargs.get("keepalive_timeout", 75.0))
        super().__init__(app, **kwargs)

    async def _make_server(self) -> Any:
        inner = await super()._make_server()
        return FrontServer(inner, self.app, self.handshake_timeout)
