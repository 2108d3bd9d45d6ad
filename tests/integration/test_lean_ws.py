"""The lean /ws path (signaling/lean.py) on a real socket: which connections it serves,
which it hands to aiohttp, and the frame rules it enforces itself."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import AsyncIterator

import orjson
import pytest

from signaling import lean
from signaling.lean import LeanLink
from signaling.server import LINKS_KEY
from tests.harness import Server, running_server
from tests.unit.test_lean_ws import masked


@pytest.fixture
async def node() -> AsyncIterator[Server]:
    async with running_server() as srv:
        await srv.create_room("r")
        yield srv


async def raw_upgrade(
    server: Server, extra: str = ""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: room.v1.json\r\n{extra}\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    assert lean.accept_key(key).encode() in head
    return reader, writer, head


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await asyncio.wait_for(reader.readexactly(2), 5)
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await reader.readexactly(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    return first & 0x0F, await reader.readexactly(size)


def links(server: Server) -> list[object]:
    return list(server.app[LINKS_KEY])


async def test_a_plain_client_is_served_by_the_lean_path(node: Server) -> None:
    client, snapshot = await node.member("r")
    assert snapshot["room"]["members"] == 1
    (link,) = links(node)
    assert isinstance(link, LeanLink)
    reply = await client.request("chat.send", room="r", text="hello", cid="c1")
    assert reply["seq"] == 1
    await client.close()
    for _ in range(100):  # bounded: the close is handled within a few ticks
        if not links(node) and "r" not in node.node.rooms:
            break
        await asyncio.sleep(0.02)
    assert links(node) == [] and "r" not in node.node.rooms  # left, and the room unloaded


async def test_an_unusual_upgrade_is_answered_by_aiohttp_and_works(node: Server) -> None:
    reader, writer, _ = await raw_upgrade(node, extra="X-Twice: 1\r\nX-Twice: 2\r\n")
    (link,) = links(node)
    assert not isinstance(link, LeanLink)  # handed over with the bytes read
    writer.write(masked(1, orjson.dumps({"t": "ping", "id": 7})))
    opcode, payload = await read_frame(reader)
    assert opcode == 1 and orjson.loads(payload)["id"] == 7
    writer.close()
    await writer.wait_closed()


async def test_pings_are_answered_and_protocol_errors_close_with_1002(node: Server) -> None:
    reader, writer, head = await raw_upgrade(node)
    assert b"Sec-WebSocket-Protocol: room.v1.json" in head
    writer.write(masked(9, b"are you there"))
    assert await read_frame(reader) == (10, b"are you there")
    writer.write(masked(1, orjson.dumps({"t": "ping", "id": 1})))
    opcode, payload = await read_frame(reader)
    assert opcode == 1 and orjson.loads(payload)["t"] == "ok"
    writer.write(bytes((0x81, 0x02)) + b"{}")  # unmasked
    opcode, payload = await read_frame(reader)
    assert opcode == 8 and struct.unpack("!H", payload[:2])[0] == 1002
    assert await asyncio.wait_for(reader.read(), 5) == b""  # and the server hangs up
    writer.close()
    await writer.wait_closed()


async def test_a_client_close_is_answered_and_ends_the_connection(node: Server) -> None:
    reader, writer, _ = await raw_upgrade(node)
    writer.write(masked(8, struct.pack("!H", 1000) + b"bye"))
    opcode, payload = await read_frame(reader)
    assert opcode == 8 and struct.unpack("!H", payload[:2])[0] == 1000
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    await writer.wait_closed()


@pytest.fixture
def fast_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ping after 0.3 s of silence, swept every 0.05 s."""
    monkeypatch.setattr(lean, "HEARTBEAT_S", 0.3)
    monkeypatch.setattr(lean, "SWEEP_S", 0.05)


async def test_a_silent_client_is_pinged_then_dropped(node: Server, fast_heartbeat: None) -> None:
    reader, writer, _ = await raw_upgrade(node)
    assert await read_frame(reader) == (9, b"")  # pinged after 0.3 s of silence
    assert await asyncio.wait_for(reader.read(), 5) == b""  # no pong: dropped
    writer.close()
    await writer.wait_closed()


async def test_a_client_that_answers_pings_stays(node: Server, fast_heartbeat: None) -> None:
    reader, writer, _ = await raw_upgrade(node)
    for _ in range(3):
        assert await read_frame(reader) == (9, b"")
        writer.write(masked(10, b""))
    writer.write(masked(1, orjson.dumps({"t": "ping", "id": 2})))
    opcode, payload = await read_frame(reader)
    assert opcode == 1 and orjson.loads(payload)["id"] == 2
    writer.close()
    await writer.wait_closed()
