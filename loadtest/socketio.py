"""The load client's Socket.IO dialect: the same :class:`~loadtest.client.Connection`,
speaking Engine.IO v4 / Socket.IO v5 over the WebSocket transport only, so the same
scenarios can measure the Node Socket.IO baseline (``--target socketio``,
``loadtest/baselines/socketio/server.js``) beside roomserver.

Why a subclass and not a Socket.IO client library: the comparison is only fair if the
load generator spends as little CPU per received frame on both targets, and the
python-socketio client runs a task and a queue per packet. Here the base class keeps
everything that makes it lean (the upgrade written and checked by hand, sans-I/O
``websockets`` for control frames, frames located in ``data_received``, no task per
frame); only the text inside a frame differs:

- after the WebSocket handshake the server sends the Engine.IO open packet
  ``0{"sid":...}``; the client answers ``40`` (connect to namespace ``/``) and the
  connection is open once the server's ``40{...}`` arrives (``44{...}`` refuses it);
- the server's Engine.IO pings ``2`` are answered ``3`` at once;
- a request ``{"t": name, "id": n, **data}`` is written ``42<n>["name",data]``, and the
  ack ``43<n>[answer]`` comes back as ``{"t": "ok", "id": n, **answer}``, or
  ``{"t": "error", "id": n, "code": ..., "message": ...}`` when the answer is
  ``{"error": code, "message": ...}``;
- an event ``42["name",data]`` goes to ``on_event`` as ``data`` (with ``t`` set to
  the event's name when ``data`` lacks it).

Invariants: the packet codec (:func:`decode_packet`, :func:`event_message`,
:func:`ack_message`, :func:`request_frame`) is pure and does no I/O; a frame that is not
a packet this client understands (binary packets, other namespaces' acks) is counted in
``bad_frames`` and dropped, never raised into the event loop; every guarantee of the
base class (one outcome per request, one ``on_close`` per unrequested close) holds.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, NamedTuple

import orjson
from websockets.exceptions import InvalidState
from websockets.uri import parse_uri

from loadtest.client import CloseHandler, Connection, EventHandler, RequestClosed
from loadtest.upgrade import Upgrade, upgrade_request
from signaling.codec import CODECS, JSON_SUBPROTOCOL

#: The scenarios the Node baseline can serve (it has no polls, likes or media).
SCENARIOS = ("join", "chat")

CONNECT = b"40"
PONG = b"3"
_DIGITS = b"0123456789"
_ENGINE = {
    ord("0"): "open",
    ord("1"): "close",
    ord("2"): "ping",
    ord("3"): "pong",
    ord("6"): "noop",
}
_SOCKET = {
    ord("0"): "connect",
    ord("1"): "disconnect",
    ord("2"): "event",
    ord("3"): "ack",
    ord("4"): "connect_error",
    ord("5"): "binary_event",
    ord("6"): "binary_ack",
}


class Packet(NamedTuple):
    """One decoded packet: its kind, its ack id (events and acks) and its JSON payload."""

    kind: str
    ack_id: int | None = None
    data: Any = None
    namespace: str = "/"


def decode_packet(raw: bytes) -> Packet:
    """One WebSocket text frame as a packet; ``ValueError`` when it is not one."""
    if not raw:
        raise ValueError("empty frame")
    first = raw[0]
    if first != 0x34:  # "4": an Engine.IO message, i.e. a Socket.IO packet
        kind = _ENGINE.get(first)
        if kind is None:
            raise ValueError(f"unknown Engine.IO packet type {raw[:1]!r}")
        data = orjson.loads(raw[1:]) if kind == "open" else raw[1:].decode()
        return Packet(kind, data=data)
    if len(raw) < 2 or raw[1] not in _SOCKET:
        raise ValueError(f"unknown Socket.IO packet type {raw[1:2]!r}")
    kind = _SOCKET[raw[1]]
    pos = 2
    namespace = "/"
    if raw[pos : pos + 1] == b"/":
        comma = raw.find(b",", pos)
        end = comma if comma >= 0 else len(raw)
        namespace = raw[pos:end].decode()
        pos = end + 1 if comma >= 0 else end
    start = pos
    while pos < len(raw) and raw[pos] in _DIGITS:
        pos += 1
    ack_id = int(raw[start:pos]) if pos > start else None
    data = orjson.loads(raw[pos:]) if pos < len(raw) else None
    return Packet(kind, ack_id, data, namespace)


def event_message(data: Any) -> dict[str, Any]:
    """An event packet's ``["name", payload]`` as the message the scenarios read."""
    if not isinstance(data, list) or not data or not isinstance(data[0], str):
        raise ValueError("an event is a list that starts with its name")
    payload = data[1] if len(data) > 1 else None
    if isinstance(payload, dict):
        if "t" not in payload:
            payload["t"] = data[0]
        return payload
    return {"t": data[0], "data": payload}


def ack_message(packet: Packet) -> dict[str, Any]:
    """An ack packet as the answer :meth:`Connection.call` returns (``ok`` or ``error``)."""
    args = packet.data if isinstance(packet.data, list) else []
    answer = args[0] if args else {}
    if isinstance(answer, dict):
        if "error" in answer:
            return {
                "t": "error",
                "id": packet.ack_id,
                "code": str(answer["error"]),
                "message": str(answer.get("message", "")),
            }
        return {**answer, "t": "ok", "id": packet.ack_id}
    return {"t": "ok", "id": packet.ack_id, "data": answer}


def request_frame(message: dict[str, Any]) -> bytes:
    """``{"t": name, "id": n, **data}`` as ``42<n>["name",data]`` (no id: no ack asked)."""
    data = {k: v for k, v in message.items() if k != "t" and k != "id"}
    ack_id = message.get("id")
    head = b"42" if ack_id is None else b"42%d" % int(ack_id)
    return head + orjson.dumps([message["t"], data])


class SocketIOConnection(Connection):
    """A :class:`~loadtest.client.Connection` speaking Socket.IO (see the module docstring)."""

    def __init__(
        self,
        upgrade: Upgrade,
        on_event: EventHandler,
        on_close: CloseHandler | None,
    ) -> None:
        super().__init__(upgrade, CODECS[JSON_SUBPROTOCOL], on_event, on_close)
        self._connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sid = ""

    @classmethod
    async def open(
        cls,
        url: str,
        encoding: str,
        timeout_s: float,
        on_event: EventHandler,
        on_close: CloseHandler | None = None,
    ) -> SocketIOConnection:
        """Connect, complete the WebSocket and the Socket.IO handshakes within ``timeout_s``.

        Raises ``TimeoutError``, ``OSError``, the WebSocket handshake's error, or
        ``ConnectionRefusedError`` when the server refuses the Socket.IO connect.
        """
        if encoding != "json":
            raise ValueError("Socket.IO speaks JSON only (--encoding json)")
        uri = parse_uri(url)
        conn = cls(upgrade_request(uri, None), on_event, on_close)  # Socket.IO: no subprotocol
        await conn._dial(uri, timeout_s)
        return conn

    async def _opened(self) -> None:
        """The WebSocket handshake, then the server's Socket.IO connect."""
        await self._handshake
        await self._connected

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self._connected.done():
            self._connected.set_exception(ConnectionResetError("closed before Socket.IO connect"))
            self._connected.exception()  # retrieved: the opener reports it, or nobody waits

    def _frame(self, data: bytes, now: int) -> None:
        try:
            packet = decode_packet(data)
            kind = packet.kind
            if kind == "event":
                self._on_event(event_message(packet.data), now)
            elif kind == "ack":
                future = self._pending.pop(packet.ack_id or 0, None)
                if future is not None and not future.done():
                    future.set_result((ack_message(packet), now))
            elif kind == "ping":
                self._reply(PONG)
            elif kind == "open":
                self.sid = str(packet.data.get("sid", "")) if isinstance(packet.data, dict) else ""
                self._reply(CONNECT)
            elif kind == "connect":
                if not self._connected.done():
                    self._connected.set_result(None)
            elif kind == "connect_error":
                if not self._connected.done():
                    reason = packet.data.get("message") if isinstance(packet.data, dict) else None
                    self._connected.set_exception(ConnectionRefusedError(str(reason)))
            elif kind not in ("pong", "noop", "close", "disconnect"):
                self.bad_frames += 1  # binary packets: nothing the measured paths send
        except (ValueError, AttributeError):
            self.bad_frames += 1

    def _reply(self, body: bytes) -> None:
        """A protocol answer from inside ``data_received``: a closing socket needs none."""
        with contextlib.suppress(RequestClosed):
            self._write(body)

    def _write(self, body: bytes) -> None:
        if self._proto is None:
            raise RequestClosed("the handshake is not done")
        try:
            self._proto.send_text(body)
        except InvalidState as exc:
            raise RequestClosed(str(exc)) from None
        self._flush()

    def send(self, message: dict[str, Any]) -> None:
        """Write one request now (``42<id>["t",data]``; see :func:`request_frame`)."""
        self._write(request_frame(message))


def connection_class(target: str) -> type[Connection]:
    """The connection that speaks ``target``'s protocol (see :data:`loadtest.plan.TARGETS`)."""
    return SocketIOConnection if target == "socketio" else Connection
