"""A log scan: a node at debug level, fed tokens and the secret every way a client can,
never writes either; both log formats are one parseable line per event.

The node is a real ``roomserver serve`` process, stopped in a ``finally``.
"""

from __future__ import annotations

import asyncio
import json
import re
from urllib.parse import urlsplit

import aiohttp
import pytest

from roomserver.auth import mint_token
from signaling.client import RequestFailed, RoomClient
from tests.harness import SECRET
from tests.served import Served, serve

pytestmark = pytest.mark.slow

TEXT_LINE = re.compile(r"^ts=\S+Z level=(debug|info|warning|error|critical) logger=\S+ msg=")


def token(room: str, user: str, role: str = "member") -> str:
    return mint_token(SECRET, room=room, user=user, name=user.capitalize(), role=role)


async def http(
    node: Served, method: str, path: str, secret: str = SECRET, body: object = None
) -> tuple[int, str]:
    timeout = aiohttp.ClientTimeout(total=10)
    headers = {"Authorization": f"Bearer {secret}", "X-Request-Id": "req-42"}
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.request(method, node.url + path, json=body, headers=headers) as resp,
    ):
        return resp.status, await resp.text()


async def raw_http(node: Served, data: bytes) -> bytes:
    """Send bytes that are not valid HTTP; the server's parser complains (at debug)."""
    parts = urlsplit(node.url)
    assert parts.hostname is not None and parts.port is not None
    reader, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port), 5)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), 5)
    finally:
        writer.close()


async def exercise(node: Served) -> list[str]:
    """Joins, chats and API calls that carry tokens and the secret; returns every token."""
    tokens = [token("scan", "h", "host"), token("scan", "v"), token("other", "x")]
    status, _ = await http(node, "POST", "/api/rooms", body={"id": "scan", "title": "Scan"})
    assert status == 201
    status, body = await http(
        node,
        "POST",
        "/api/tokens",
        body={"room": "scan", "user": "m", "name": "M", "role": "member"},
    )
    assert status == 200
    tokens.append(json.loads(body)["token"])
    # Tokens and the secret in query strings (clients should never, but some will).
    assert (await http(node, "GET", f"/healthz?token={tokens[0]}&x=1"))[0] == 200
    assert (await http(node, "GET", f"/host.html?secret={SECRET}"))[0] in (200, 404)
    assert (await http(node, "GET", f"/api/rooms/scan?t={tokens[1]}"))[0] == 200
    # A wrong secret, and a path that is the secret.
    assert (await http(node, "GET", "/api/rooms/scan", secret="wrong-" + SECRET))[0] == 401
    assert (await http(node, "GET", f"/{SECRET}"))[0] == 404
    # Garbage the HTTP parser rejects, with a token in the request line and a header.
    await raw_http(node, f"GET /?token={tokens[0]} HTTP/1.1\r\nX: {SECRET}\r\nbad\r\n\r\n".encode())
    await raw_http(node, f"{tokens[1]} {SECRET}\r\n\r\n".encode())

    # A token in the WebSocket URL (served by the lean /ws path, which logs it too).
    queried = await RoomClient.connect(node.ws_url + f"?token={tokens[2]}")
    await queried.request("ping")
    await queried.close()
    host = await RoomClient.connect(node.ws_url)
    viewer = await RoomClient.connect(node.ws_url)
    try:
        await host.request("join", room="scan", token=tokens[0])
        await viewer.request("join", room="scan", token=tokens[1])
        await viewer.request("chat.send", room="scan", text=f"my token is {tokens[1]}", cid="c1")
        await host.event("chat", timeout=10)
        with pytest.raises(RequestFailed):
            await viewer.request("join", room="scan", token=tokens[2])  # another room's token
        with pytest.raises(RequestFailed):
            await viewer.request("join", room="scan", token=tokens[0][:-4] + "AAAA")  # forged
        await viewer.send_raw(f'{{"t":"join","id":1,"room":"scan","token":"{tokens[0]}"'.encode())
        await viewer.send_raw(json.dumps({"t": "nope", "token": tokens[1], "s": SECRET}))
        await host.request("ping")
    finally:
        await host.close()
        await viewer.close()
    status, _ = await http(node, "DELETE", "/api/rooms/scan")
    assert status == 204
    return tokens


def assert_clean(node: Served, tokens: list[str]) -> None:
    everything = node.output
    assert SECRET not in everything
    for value in tokens:
        assert value not in everything
        for segment in value.split("."):  # not even a part of one
            assert segment not in everything


async def test_json_logs_never_hold_a_token_or_the_secret() -> None:
    async with serve("--secret", SECRET, "--log-level", "debug", "--log-format", "json") as node:
        tokens = await exercise(node)
        assert await node.stop() == 0
    assert_clean(node, tokens)
    assert node.stderr, "a debug-level node wrote no log line"
    events = [json.loads(line) for line in node.stderr]  # every line is one JSON object
    for event in events:
        assert {"ts", "level", "logger", "msg"} <= set(event), event
    # The only errors are aiohttp's about the garbage requests; the access log never fails.
    errors = [e for e in events if e["level"] == "error"]
    assert all(e["msg"].startswith("Error handling request") for e in errors), errors
    access = [event for event in events if event["logger"] == "roomserver.access"]
    assert sum(event["status"] == "400" for event in access) == 2, access
    assert any(event["msg"] == "GET /healthz?token=[redacted]&x=1" for event in access), access
    websockets = [e for e in access if e["msg"].startswith("GET /ws")]
    assert {e["msg"] for e in websockets} == {"GET /ws", "GET /ws?token=[redacted]"}, access
    assert all(e["status"] == "101" and e["peer"] == "127.0.0.1" for e in websockets)
    created = next(e for e in access if e["msg"] == "POST /api/rooms")
    assert created["status"] == "201" and created["peer"] == "127.0.0.1"
    assert created["request_id"] == "req-42"


async def test_text_logs_are_key_value_lines() -> None:
    async with serve("--secret", SECRET, "--log-level", "debug") as node:
        tokens = await exercise(node)
        assert await node.stop() == 0
    assert_clean(node, tokens)
    assert node.stderr
    for line in node.stderr:
        assert TEXT_LINE.match(line), line
    assert any(
        "logger=roomserver.access" in line and 'msg="GET /healthz?token=[redacted]&x=1"' in line
        for line in node.stderr
    )
