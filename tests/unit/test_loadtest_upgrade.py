"""The load client's hand-written WebSocket upgrade: the request it writes and the
answers it accepts or refuses (RFC 6455 section 4.1)."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.http11 import Request
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from loadtest.upgrade import MAX_HEAD, head_end, parse_response, upgrade_request
from signaling.lean import accept_key, parse_upgrade


def answer(upgrade_accept: str, *extra: str, status: str = "101 Switching Protocols") -> bytes:
    lines = [
        f"HTTP/1.1 {status}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {upgrade_accept}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_the_request_is_one_a_websocket_server_accepts() -> None:
    upgrade = upgrade_request(parse_uri("ws://127.0.0.1:8080/ws?x=1"), "room.v1.json")
    server = ServerProtocol(subprotocols=["room.v1.json"])  # type: ignore[list-item]
    server.receive_data(upgrade.request)
    [request] = server.events_received()
    assert isinstance(request, Request)
    response = server.accept(request)
    assert response.status_code == 101
    assert request.path == "/ws?x=1"
    assert request.headers["Host"] == "127.0.0.1:8080"
    assert response.headers["Sec-WebSocket-Accept"] == upgrade.expected_accept
    assert response.headers["Sec-WebSocket-Protocol"] == "room.v1.json"
    # and the node's own lean path takes it too
    parsed = parse_upgrade(upgrade.request[:-4])  # the head without its blank line
    assert parsed is not None and parsed[0] == "/ws?x=1"
    assert accept_key(parsed[1]["sec-websocket-key"]) == upgrade.expected_accept


def test_each_request_has_its_own_key() -> None:
    uri = parse_uri("ws://127.0.0.1:8080/ws")
    assert upgrade_request(uri, None).expected_accept != upgrade_request(uri, None).expected_accept
    assert b"Sec-WebSocket-Protocol" not in upgrade_request(uri, None).request
    assert (
        b"Host: example.com\r\n" in upgrade_request(parse_uri("ws://example.com/ws"), None).request
    )


def test_a_good_answer_gives_the_chosen_subprotocol() -> None:
    upgrade = upgrade_request(parse_uri("ws://127.0.0.1:1/ws"), "room.v1.msgpack")
    head = answer(upgrade.expected_accept, "Sec-WebSocket-Protocol: room.v1.msgpack")
    assert parse_response(head, upgrade) == "room.v1.msgpack"
    assert parse_response(answer(upgrade.expected_accept), upgrade) is None
    lowered = head.replace(b"Upgrade: websocket", b"upgrade: WebSocket").replace(
        b"Connection: Upgrade", b"connection: keep-alive, upgrade"
    )
    assert parse_response(lowered, upgrade) == "room.v1.msgpack"


def test_a_refusal_carries_its_status() -> None:
    upgrade = upgrade_request(parse_uri("ws://127.0.0.1:1/ws"), None)
    with pytest.raises(InvalidStatus) as refused:
        parse_response(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n", upgrade)
    assert refused.value.response.status_code == 429


@pytest.mark.parametrize(
    "mangle",
    [
        lambda head, good: head.replace(good.encode(), b"AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        lambda head, good: head.replace(b"Upgrade: websocket\r\n", b""),
        lambda head, good: head.replace(b"Connection: Upgrade", b"Connection: close"),
        lambda head, good: head.replace(b"HTTP/1.1 101", b"HTTP/1.0 101"),
        lambda head, good: head.replace(b"HTTP/1.1 101", b"HTTP/1.1 abc"),
        lambda head, good: head[:-4] + b"\r\nno colon here\r\n\r\n",
        lambda head, good: head[:-4] + b"\r\nSec-WebSocket-Protocol: other\r\n\r\n",
        lambda head, good: head[:-4] + b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
    ],
)
def test_a_bad_101_is_refused(mangle) -> None:  # type: ignore[no-untyped-def]
    upgrade = upgrade_request(parse_uri("ws://127.0.0.1:1/ws"), "room.v1.json")
    head = answer(upgrade.expected_accept)
    with pytest.raises(InvalidHandshake):
        parse_response(mangle(head, upgrade.expected_accept), upgrade)


def test_the_head_is_found_whole_and_bounded() -> None:
    assert head_end(b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n") is None
    assert head_end(b"HTTP/1.1 101 OK\r\n\r\n\x81\x02hi") == 19
    assert head_end(b"x" * MAX_HEAD) is None
    with pytest.raises(InvalidHandshake):
        head_end(b"x" * (MAX_HEAD + 1))


class FakeTransport(asyncio.Transport):
    """Collects what the connection writes."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True


async def test_frames_right_behind_the_head_and_a_split_head_are_read() -> None:
    from loadtest.client import Connection
    from signaling.codec import CODECS, JSON_SUBPROTOCOL

    events: list[dict[str, object]] = []
    upgrade = upgrade_request(parse_uri("ws://127.0.0.1:1/ws"), JSON_SUBPROTOCOL)
    conn = Connection(upgrade, CODECS[JSON_SUBPROTOCOL], lambda e, now: events.append(e), None)
    transport = FakeTransport()
    conn.connection_made(transport)
    assert transport.written == [upgrade.request]
    head = answer(upgrade.expected_accept, f"Sec-WebSocket-Protocol: {JSON_SUBPROTOCOL}")
    frame = bytes([0x81, 9]) + b'{"t":"a"}'
    conn.data_received(head[:10])
    assert not conn._handshake.done()
    conn.data_received(head[10:] + frame + frame[:4])
    await asyncio.sleep(0)
    assert conn._handshake.done() and conn._handshake.exception() is None
    assert conn.subprotocol == JSON_SUBPROTOCOL
    conn.data_received(frame[4:])
    assert events == [{"t": "a"}, {"t": "a"}]
    conn.send({"t": "ping"})
    masked = transport.written[-1]
    assert masked[0] == 0x81 and masked[1] & 0x80  # a client frame is masked


async def test_a_bad_answer_fails_the_handshake_and_aborts() -> None:
    from loadtest.client import Connection
    from signaling.codec import CODECS, JSON_SUBPROTOCOL

    upgrade = upgrade_request(parse_uri("ws://127.0.0.1:1/ws"), JSON_SUBPROTOCOL)
    conn = Connection(upgrade, CODECS[JSON_SUBPROTOCOL], lambda e, now: None, None)
    transport = FakeTransport()
    conn.connection_made(transport)
    conn.data_received(answer("wrong"))
    assert transport.aborted
    assert isinstance(conn._handshake.exception(), InvalidHandshake)
