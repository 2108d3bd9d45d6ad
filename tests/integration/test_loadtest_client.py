"""The load tool's lean connection against a real ``websockets`` server on 127.0.0.1.

It checks what the fast receive path must not break: multi-message and fragmented
frames, answers matched by id, the server's pings answered, and a server close
reported once with its code.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import InvalidStatus

from loadtest.client import Connection, RequestClosed


async def handler(ws: ServerConnection) -> None:
    request = orjson.loads(await ws.recv())
    await ws.send(orjson.dumps({"t": "ok", "id": request["id"], "x": 1}).decode())
    await ws.send('{"t":"a","n":1}\n{"t":"a","n":2}')  # two messages in one frame
    await ws.send(['{"t":"a",', '"n":3}'])  # one message, fragmented
    pong = await ws.ping(b"are you there")
    await asyncio.wait_for(pong, 5)  # the client answered the ping
    await ws.send('{"t":"a","n":4}')
    await ws.recv()  # the next request: not answered
    await ws.close(4000, "bye")


async def test_frames_answers_pings_and_close() -> None:
    events: list[dict[str, Any]] = []
    closes: list[int] = []
    async with serve(handler, "127.0.0.1", 0, subprotocols=["room.v1.json"]) as server:
        port = server.sockets[0].getsockname()[1]
        conn = await Connection.open(
            f"ws://127.0.0.1:{port}/ws",
            "json",
            5.0,
            lambda event, now: events.append(event),
            lambda c, code: closes.append(code),
        )
        answer, arrived = await conn.call({"t": "ping"}, 5.0)
        assert answer == {"t": "ok", "id": 1, "x": 1} and arrived > 0
        for _ in range(100):
            if len(events) == 4:
                break
            await asyncio.sleep(0.02)
        assert [e["n"] for e in events] == [1, 2, 3, 4]
        with pytest.raises(RequestClosed):
            await conn.call({"t": "ping"}, 5.0)  # the server closes without answering
        await asyncio.sleep(0.05)
        assert closes == [4000] and conn.close_code == 4000 and not conn.is_open
        await conn.close()  # closing a closed connection is a no-op
        assert closes == [4000]


async def test_a_refused_handshake_raises_with_the_status() -> None:
    async def refuse(connection: ServerConnection, request: Any) -> Any:
        return connection.respond(429, "too many\n")

    async with serve(handler, "127.0.0.1", 0, process_request=refuse) as server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(InvalidStatus) as refused:
            await Connection.open(f"ws://127.0.0.1:{port}/ws", "json", 5.0, lambda e, n: None)
        assert refused.value.response.status_code == 429
