"""``--target socketio``: the load tool's Socket.IO dialect and the Node baseline.

First the dialect against a small Socket.IO server written here on ``websockets`` (so
it is tested even without Node): the Engine.IO open and connect handshake, pings
answered, acks matched by id, error acks, events, a refused connect and a close. Then,
when ``node`` is on PATH, the real baseline (``loadtest/baselines/socketio``,
installed with ``npm ci`` if needed): its answers and chat event shape, and the load
tool end to end on one process (in-process state) and on two processes sharing a
redis-server (the test session's), asserting that every member joined and every accepted chat
message reached every member exactly once. All traffic is on 127.0.0.1; every process
is stopped in a ``finally`` block.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from loadtest.client import RequestClosed
from loadtest.httpapi import Api, MemberId
from loadtest.plan import ws_url
from loadtest.servers import Nodes, SpawnError, ensure_baseline
from loadtest.socketio import SocketIOConnection
from tests.integration.test_loadtest import alive
from tests.integration.test_loadtest import loadtest as run_tool
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow

SECRET = "socketio-secret-0123456789-abcdefghijk"
#: npm's words for "the registry could not be reached": only then is a test skipped.
OFFLINE = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ETIMEDOUT", "ENETUNREACH", "ECONNRESET")


# -- the dialect, against a Socket.IO server written here ---------------------------


async def fake_server(ws: ServerConnection) -> None:
    """Speaks just enough Socket.IO to exercise every branch of the client."""
    await ws.send('0{"sid":"s1","upgrades":[],"pingInterval":25000,"pingTimeout":20000}')
    assert await ws.recv() == "40"
    if ws.request is not None and "refuse" in ws.request.path:
        await ws.send('44{"message":"not today"}')
        await ws.wait_closed()
        return
    await ws.send('40{"sid":"x1"}')
    await ws.send("2")  # an Engine.IO ping: the client must answer "3"
    assert await ws.recv() == "3"
    request = await ws.recv()
    assert isinstance(request, str) and request.startswith("421[")
    name, data = orjson.loads(request[3:])
    assert (name, data) == ("join", {"room": "r", "token": "t"})
    await ws.send('42["chat",{"t":"chat","seq":1}]')  # an event before the answer
    await ws.send('431[{"seq":0,"room":{"members":1}}]')
    request = await ws.recv()
    assert isinstance(request, str)
    await ws.send('432[{"error":"not_joined","message":"join first"}]')
    await ws.send('42["member.joined",{"user":"u2"}]')
    await ws.recv()  # a third request, never answered
    await ws.close(4001, "bye")


async def test_the_dialect_handshakes_answers_pings_and_maps_acks() -> None:
    events: list[dict[str, Any]] = []
    closes: list[int] = []
    async with serve(fake_server, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        conn = await SocketIOConnection.open(
            ws_url(f"http://127.0.0.1:{port}", "socketio"),
            "json",
            5.0,
            lambda event, now: events.append(event),
            lambda c, code: closes.append(code),
        )
        assert conn.sid == "s1"
        answer, at = await conn.call({"t": "join", "room": "r", "token": "t"}, 5.0)
        assert answer == {"t": "ok", "id": 1, "seq": 0, "room": {"members": 1}} and at > 0
        answer, _ = await conn.call({"t": "chat.send", "room": "r", "text": "x", "cid": "c"}, 5.0)
        assert answer == {"t": "error", "id": 2, "code": "not_joined", "message": "join first"}
        with pytest.raises(RequestClosed):
            await conn.call({"t": "chat.send", "room": "r", "text": "y", "cid": "d"}, 5.0)
        await asyncio.sleep(0.05)
        assert events == [{"t": "chat", "seq": 1}, {"t": "member.joined", "user": "u2"}]
        assert closes == [4001] and not conn.is_open and conn.bad_frames == 0
        await conn.close()
        assert closes == [4001]


async def test_a_refused_connect_raises() -> None:
    async with serve(fake_server, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ConnectionRefusedError, match="not today"):
            await SocketIOConnection.open(
                f"ws://127.0.0.1:{port}/refuse/?EIO=4&transport=websocket",
                "json",
                5.0,
                lambda event, now: None,
            )


# -- the Node baseline --------------------------------------------------------------


@pytest.fixture(scope="module")
def baseline() -> None:
    """Node and the baseline's locked packages, or a skip saying why they are missing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not on PATH: the Socket.IO baseline cannot run")
    try:
        ensure_baseline(lambda line: None)
    except SpawnError as exc:
        if any(code in str(exc) for code in OFFLINE):
            pytest.skip(f"npm ci could not reach the registry: {str(exc).splitlines()[0]}")
        raise


async def test_the_baseline_answers_like_the_measured_paths(baseline: None, tmp_path: Path) -> None:
    nodes = Nodes()
    try:
        nodes.start(1, SECRET, tmp_path, "t1", target="socketio")
        (url,) = nodes.urls
        events: list[dict[str, Any]] = []
        async with Api(SECRET) as api:
            await api.create_room(url, "room-1", "Room one")
            member = MemberId(0, "u0", "User 0", "member", "room-1", url)
            token = await api.token(member)
            conn = await SocketIOConnection.open(
                ws_url(url, "socketio"), "json", 10.0, lambda e, now: events.append(e)
            )
            try:
                early = {"t": "chat.send", "room": "room-1", "text": "hi", "cid": "c0"}
                answer, _ = await conn.call(early, 5.0)
                assert answer["t"] == "error" and answer["code"] == "not_joined"
                bad = {"t": "join", "room": "room-1", "token": "not-a-token"}
                answer, _ = await conn.call(bad, 5.0)
                assert answer["t"] == "error" and answer["code"] == "unauthorized"
                answer, _ = await conn.call({"t": "join", "room": "room-1", "token": token}, 5.0)
                assert answer["t"] == "ok" and answer["seq"] == 0 and answer["history"] == []
                assert answer["room"]["members"] == 1 and answer["polls"] == []
                chat = {"t": "chat.send", "room": "room-1", "text": " hello ", "cid": "c1"}
                answer, _ = await conn.call(chat, 5.0)
                assert answer["t"] == "ok" and answer["seq"] == 1
                for _ in range(100):
                    if events:
                        break
                    await asyncio.sleep(0.02)
                (event,) = events
                assert event == {
                    "t": "chat",
                    "room": "room-1",
                    "seq": 1,
                    "ts": answer["ts"],
                    "user": "u0",
                    "name": "User 0",
                    "role": "member",
                    "text": "hello",
                    "cid": "c1",
                }
                status = await api.room_status(url, "room-1")
                assert status["members"] == 1 and status["likes"] == 0
            finally:
                await conn.close()
    finally:
        nodes.stop()
    assert not any(alive(pid) for pid in nodes.pids)


def assert_exactly_once(doc: dict[str, Any], members: int, nodes: int) -> None:
    assert doc["target"] == "socketio" and doc["servers"]["target"] == "socketio"
    assert len(doc["servers"]["pids"]) == nodes
    assert doc["counters"]["joined"] == members and not doc["counters"].get("join_failed")
    assert doc["errors"] == {} and doc["counters"].get("closes", 0) == 0
    assert doc["cpu"]["server_s"] is not None
    assert doc["checks"] and all(c["ok"] for c in doc["checks"]), doc["checks"]
    assert doc["ok"] is True
    assert not any(alive(pid) for pid in doc["servers"]["pids"])


def run_both(tmp_path: Path, members: int, *target: str) -> None:
    """A join and a short chat through the load tool; every figure must be exact."""
    code, doc, out, err = run_tool(
        tmp_path / "join", "join", "--target", "socketio", *target,
        "--members", str(members), "--waves", "50", "--wave-interval", "0.015",
    )  # fmt: skip
    assert code == 0, out + err
    assert_exactly_once(doc, members, int(target[1]))
    assert doc["latency_ms"]["join"]["count"] == members
    assert doc["rates"]["joins_per_server_cpu_s"] > 0
    assert "target socketio" in out

    code, doc, out, err = run_tool(
        tmp_path / "chat", "chat", "--target", "socketio", *target,
        "--members", str(members), "--rate", "10", "--duration", "2", "-P", "2",
    )  # fmt: skip
    assert code == 0, out + err
    assert_exactly_once(doc, members, int(target[1]))
    chat = doc["figures"]["chat_deliveries"]
    accepted = doc["counters"]["chat_accepted"]
    assert accepted == doc["counters"]["chat_sent"] >= 15
    assert chat["expected"] == members * accepted
    assert chat["delivered"] == chat["expected"] and chat["lost"] == 0
    assert chat["duplicated"] == 0 and chat["unacknowledged"] == 0
    assert doc["counters"]["deliveries"] == members * accepted
    assert doc["rates"]["deliveries_per_server_cpu_s"] > 0


def test_one_process_in_memory(baseline: None, tmp_path: Path) -> None:
    run_both(tmp_path, 200, "--spawn", "1")


def test_two_processes_on_one_redis(
    baseline: None, redis_server: RedisServer, tmp_path: Path
) -> None:
    # the session's redis-server: the tool keys each run by its own prefix
    run_both(tmp_path, 200, "--spawn", "2", "--redis", redis_server.url)
