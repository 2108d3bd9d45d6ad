"""A lean protocol connection for the load generator: as little CPU per frame as possible.

Why not :mod:`signaling.client`, nor even the ``websockets`` asyncio connection: the
load generator shares the machine with the server, and every microsecond it spends
per received frame is a microsecond the server does not get. Measured on the chat
fan-out, the asyncio connection object (its frame assembler, its reader futures and
a task switch per frame) cost about 39 µs per delivery, more than the server spent
sending it. So this module writes the upgrade request and checks the answer itself
(:mod:`loadtest.upgrade`), then keeps ``websockets``' sans-I/O
:class:`~websockets.protocol.Protocol` for the frames it must get right: masking what
the client sends, ping/pong and the closing handshake. Bytes are shuttled with a plain
:class:`asyncio.Protocol`: bytes in from ``data_received``, events out, bytes to write
out (the shape of python-websockets' own design). A frame is handled inside the
``data_received`` callback, with no task switch and no queue.

Invariants:

- Each frame's arrival is stamped with ``time.time_ns()`` once, before it is parsed
  (comparable across the client processes, which share one machine); the frame is
  split with :func:`~signaling.codec.decode_frames`; answers resolve their request
  by ``id``; every other message goes to the ``on_event`` callback, in order.
- Every request gets exactly one outcome: its answer, ``TimeoutError``, or
  :class:`RequestClosed` when the connection ends first; none outlives the connection.
- A close that this side did not ask for is reported once to ``on_close`` with its
  code (``1006`` when the TCP connection dropped without a close frame).
- No proxy, no compression, no client keepalive pings; the server's pings are
  answered by the protocol object.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
import time
from collections.abc import Callable
from typing import Any

from websockets.exceptions import InvalidState
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State
from websockets.uri import WebSocketURI, parse_uri

from loadtest.frames import FOREIGN, OP_BINARY, OP_CONT, OP_TEXT, locate
from loadtest.upgrade import Upgrade, head_end, parse_response, upgrade_request
from roomserver.errors import BadRequest
from signaling.codec import CODECS, JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL, Codec, decode_frames

ENCODINGS = {"json": JSON_SUBPROTOCOL, "msgpack": MSGPACK_SUBPROTOCOL}

#: An event and the wall-clock time (ns) its frame arrived.
EventHandler = Callable[[dict[str, Any], int], None]
CloseHandler = Callable[["Connection", int], None]
Answer = tuple[dict[str, Any], int]

CLOSE_TIMEOUT_S = 2.0
ABNORMAL_CLOSE = 1006
_DATA = (Opcode.TEXT, Opcode.BINARY)


class RequestClosed(ConnectionError):
    """The connection ended before the request was answered."""


def _ignore_close(conn: Connection, code: int) -> None:
    return None


class Connection(asyncio.Protocol):
    """One client connection (see the module docstring)."""

    def __init__(
        self,
        upgrade: Upgrade,
        codec: Codec,
        on_event: EventHandler,
        on_close: CloseHandler | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self._upgrade = upgrade
        #: the frame protocol, from the end of the handshake on
        self._proto: Protocol | None = None
        self.subprotocol: str | None = None
        self.codec = codec
        self._on_event = on_event
        self._on_close = on_close or _ignore_close
        self._transport: asyncio.Transport | None = None
        self._handshake: asyncio.Future[None] = loop.create_future()
        self._lost: asyncio.Future[None] = loop.create_future()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Answer]] = {}
        self._fragments: list[bytes] = []
        self._fast = False
        self._buf = bytearray()
        self.closing = False
        self.close_code: int | None = None
        self.bad_frames = 0

    @classmethod
    async def open(
        cls,
        url: str,
        encoding: str,
        timeout_s: float,
        on_event: EventHandler,
        on_close: CloseHandler | None = None,
    ) -> Connection:
        """Connect and complete the WebSocket handshake within ``timeout_s``.

        Raises ``TimeoutError``, ``OSError``, or the handshake's error (an
        ``InvalidStatus`` carries the HTTP status, e.g. 429 for too many connections).
        """
        uri = parse_uri(url)
        offered = ENCODINGS[encoding]
        conn = cls(upgrade_request(uri, offered), CODECS[offered], on_event, on_close)
        await conn._dial(uri, timeout_s)
        conn.codec = CODECS.get(conn.subprotocol or JSON_SUBPROTOCOL, conn.codec)
        return conn

    async def _dial(self, uri: WebSocketURI, timeout_s: float) -> None:
        """Connect to ``uri`` and wait until :meth:`_opened`, within ``timeout_s``;
        on any failure the connection is aborted and the error raised."""
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context() if uri.secure else None
        try:
            async with asyncio.timeout(timeout_s):  # no extra task, unlike wait_for
                await loop.create_connection(lambda: self, uri.host, uri.port, ssl=context)
                await self._opened()
        except BaseException:
            self._abort()
            raise

    async def _opened(self) -> None:
        """Wait for what makes the connection usable: the WebSocket handshake."""
        await self._handshake

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self._upgrade.request)

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        if self._fast:
            self._receive_fast(data, now)
        elif self._proto is not None:
            self._receive_proto(data, now)
        else:
            self._receive_head(data, now)

    def _receive_head(self, data: bytes, now: int) -> None:
        """The handshake's answer; the frames after it go to the fast path."""
        self._buf += data
        try:
            end = head_end(self._buf)
            if end is None:
                return
            self.subprotocol = parse_response(bytes(self._buf[:end]), self._upgrade)
        except Exception as exc:
            self._buf = bytearray()
            if not self._handshake.done():
                self._handshake.set_exception(exc)
            self._abort()
            return
        rest = bytes(self._buf[end:])
        self._buf = bytearray()
        self._proto = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
        self._fast = True
        self._handshake.set_result(None)
        if rest:
            self._receive_fast(rest, now)

    def _receive_proto(self, data: bytes, now: int) -> None:
        """Control frames and odd frames, through ``websockets``."""
        proto = self._proto
        assert proto is not None
        proto.receive_data(data)
        for event in proto.events_received():
            if type(event) is Frame:
                opcode = event.opcode
                payload = event.data
                if type(payload) is not bytes:
                    payload = bytes(payload)
                if opcode in _DATA:
                    if event.fin:
                        self._frame(payload, now)
                    else:
                        self._fragments = [payload]
                elif opcode is Opcode.CONT and self._fragments:
                    self._fragments.append(payload)
                    if event.fin:
                        whole, self._fragments = b"".join(self._fragments), []
                        self._frame(whole, now)
        self._flush()

    def _receive_fast(self, data: bytes, now: int) -> None:
        """Data frames located here; control frames handed to ``websockets`` whole."""
        buf: bytes | bytearray = data
        if self._buf:
            self._buf += data
            buf = self._buf
        pos = 0
        while True:
            found = locate(buf, pos)
            if found is None:
                break
            opcode = found.opcode
            if opcode in (OP_TEXT, OP_BINARY):
                payload = bytes(buf[found.payload_start : found.end])
                if found.fin:
                    self._frame(payload, now)
                else:
                    self._fragments = [payload]
            elif opcode == OP_CONT:
                if self._fragments:
                    self._fragments.append(bytes(buf[found.payload_start : found.end]))
                    if found.fin:
                        whole, self._fragments = b"".join(self._fragments), []
                        self._frame(whole, now)
            else:
                # ping, pong, close, or a frame only websockets may judge: let it answer
                # (pong, close reply) or fail the connection; it stays in charge after
                # anything unusual.
                self._fast = opcode != FOREIGN
                rest = bytes(buf[pos:]) if not self._fast else bytes(buf[pos : found.end])
                self._receive_proto(rest, now)
                if not self._fast:
                    self._buf = bytearray()
                    return
            pos = found.end
        self._buf = bytearray(buf[pos:]) if pos < len(buf) else bytearray()

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost does the accounting

    def connection_lost(self, exc: Exception | None) -> None:
        proto = self._proto
        code = ABNORMAL_CLOSE
        if proto is not None:
            with contextlib.suppress(Exception):
                proto.receive_eof()
            if proto.close_rcvd is not None:
                code = proto.close_rcvd.code
        self.close_code = code
        if not self._handshake.done():
            self._handshake.set_exception(exc or ConnectionResetError("closed in handshake"))
            self._handshake.exception()  # retrieved: the opener reports it, or nobody waits
        for future in self._pending.values():
            if not future.done():
                future.set_exception(RequestClosed(f"closed with {code}"))
        self._pending.clear()
        if not self._lost.done():
            self._lost.set_result(None)
        if not self.closing:
            self._on_close(self, code)

    # -- frames --------------------------------------------------------------------

    def _frame(self, data: bytes, now: int) -> None:
        try:
            messages = decode_frames(self.codec, data)
        except BadRequest:
            self.bad_frames += 1
            return
        pending = self._pending
        for message in messages:
            t = message.get("t")
            if t == "ok" or t == "error":
                future = pending.pop(message.get("id"), None)
                if future is not None:
                    if not future.done():
                        future.set_result((message, now))
                    continue
            self._on_event(message, now)

    def _flush(self) -> None:
        transport = self._transport
        if transport is None or self._proto is None or transport.is_closing():
            return
        for chunk in self._proto.data_to_send():
            if chunk:
                transport.write(chunk)
            elif transport.can_write_eof():
                transport.write_eof()

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- requests --------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.close_code is None and not self.closing

    def send(self, message: dict[str, Any]) -> None:
        """Write one message now (a client frame carries exactly one)."""
        body = self.codec.encode(message)
        if self._proto is None:
            raise RequestClosed("the handshake is not done")
        try:
            if self.codec.binary:
                self._proto.send_binary(body)
            else:
                self._proto.send_text(body)
        except InvalidState as exc:
            raise RequestClosed(str(exc)) from None
        self._flush()

    async def call(self, message: dict[str, Any], timeout_s: float) -> Answer:
        """Send one request; its answer (``ok`` or ``error``) and the arrival time (ns).

        Raises ``TimeoutError`` or :class:`RequestClosed`; the caller counts them.
        """
        if self.close_code is not None:
            raise RequestClosed(f"closed with {self.close_code}")
        request_id = next(self._ids)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        message["id"] = request_id
        try:
            self.send(message)
            async with asyncio.timeout(timeout_s):
                return await future
        finally:
            self._pending.pop(request_id, None)

    async def close(self) -> None:
        """Close on purpose (not reported to ``on_close``); bounded by the close timeout."""
        self.closing = True
        if self.close_code is not None or self._transport is None:
            return
        if self._proto is None:
            self._abort()
            return
        with contextlib.suppress(InvalidState):
            self._proto.send_close(1000)
            self._flush()
        try:
            await asyncio.wait_for(asyncio.shield(self._lost), CLOSE_TIMEOUT_S)
        except TimeoutError:
            self._abort()
