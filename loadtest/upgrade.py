"""The client side of the WebSocket opening handshake, as bytes: pure, no I/O.

Why not ``websockets``' :class:`~websockets.client.ClientProtocol` for it: the load
generator shares the 2-core machine with the servers it measures, and in a join burst
the library's request builder and generator-based response parser were about a sixth
of the client's CPU per join. An upgrade request is a fixed text with one random key,
and the answer needs three checks (RFC 6455 section 4.1), so both are done here. The
frames that follow stay with ``websockets`` (see :mod:`loadtest.client`).

Invariants:

- :func:`parse_response` reads only a complete head (up to the blank line); a head
  longer than :data:`MAX_HEAD` is refused, never buffered without bound.
- A non-101 answer raises ``websockets``' own :class:`~websockets.exceptions.InvalidStatus`
  (its ``response.status_code`` is what the load tool counts, e.g. ``http_429``); any
  other departure from RFC 6455 raises :class:`~websockets.exceptions.InvalidHandshake`.
"""

from __future__ import annotations

import base64
import os
from typing import NamedTuple

from websockets.datastructures import Headers
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.http11 import Response
from websockets.uri import WebSocketURI

from signaling.lean import accept_key

#: The longest response head accepted before the blank line.
MAX_HEAD = 16 * 1024
HEAD_END = b"\r\n\r\n"


class Upgrade(NamedTuple):
    """One upgrade request: its bytes and the accept value the server must answer."""

    request: bytes
    expected_accept: str
    subprotocol: str | None


def upgrade_request(uri: WebSocketURI, subprotocol: str | None) -> Upgrade:
    """A ``GET`` upgrade of ``uri`` with a fresh key, offering ``subprotocol`` if any."""
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    default_port = 443 if uri.secure else 80
    host = uri.host if uri.port == default_port else f"{uri.host}:{uri.port}"
    if ":" in uri.host and not uri.host.startswith("["):
        host = f"[{uri.host}]" if uri.port == default_port else f"[{uri.host}]:{uri.port}"
    lines = [
        f"GET {uri.resource_name} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if subprotocol:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    return Upgrade(request, accept_key(key), subprotocol)


def head_end(buffer: bytes | bytearray) -> int | None:
    """Where the response head ends (just past its blank line), or None for "not yet".

    Raises :class:`InvalidHandshake` when more than :data:`MAX_HEAD` bytes came
    without one.
    """
    end = buffer.find(HEAD_END, 0, MAX_HEAD + len(HEAD_END))
    if end >= 0:
        return end + len(HEAD_END)
    if len(buffer) > MAX_HEAD:
        raise InvalidHandshake(f"response head longer than {MAX_HEAD} bytes")
    return None


def parse_response(head: bytes, upgrade: Upgrade) -> str | None:
    """Check a complete response head against ``upgrade``; the subprotocol the server chose.

    Raises :class:`InvalidStatus` for any status but 101 and :class:`InvalidHandshake`
    for a 101 that does not complete the handshake.
    """
    try:
        text = head.decode("latin-1")
        status_line, *header_lines = text[: -len(HEAD_END)].split("\r\n")
        version, status, *reason = status_line.split(" ", 2)
        code = int(status)
    except ValueError:
        raise InvalidHandshake(f"malformed status line {head[:80]!r}") from None
    if version != "HTTP/1.1" or not 100 <= code <= 599:
        raise InvalidHandshake(f"malformed status line {head[:80]!r}")
    headers = Headers()
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise InvalidHandshake(f"malformed header line {line[:80]!r}")
        headers[name] = value.strip(" \t")
    if code != 101:
        raise InvalidStatus(Response(code, reason[0] if reason else "", headers))
    if headers.get("Upgrade", "").lower() != "websocket":
        raise InvalidHandshake("101 without Upgrade: websocket")
    if "upgrade" not in [word.strip().lower() for word in headers.get("Connection", "").split(",")]:
        raise InvalidHandshake("101 without Connection: Upgrade")
    if headers.get("Sec-WebSocket-Accept") != upgrade.expected_accept:
        raise InvalidHandshake("wrong Sec-WebSocket-Accept")
    if "Sec-WebSocket-Extensions" in headers:
        raise InvalidHandshake("an extension that was not offered")
    chosen = headers.get("Sec-WebSocket-Protocol")
    if chosen is not None and chosen != upgrade.subprotocol:
        raise InvalidHandshake(f"subprotocol {chosen!r} was not offered")
    return chosen
