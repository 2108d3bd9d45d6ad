"""Transport rules of the contract: encodings, frames, bad input, close codes."""

from __future__ import annotations

import asyncio
import socket

import msgpack
import orjson
import pytest
import websockets

from signaling.client import JSON, MSGPACK, RoomClient
from signaling.server import close_all
from tests.harness import Server, make_settings, running_server


@pytest.mark.parametrize("subprotocol", [JSON, MSGPACK])
async def test_both_encodings_carry_requests_and_events(server: Server, subprotocol: str) -> None:
    await server.create_room("enc")
    host, _ = await server.member("enc", "h", "host", subprotocol)
    viewer, snap = await server.member("enc", "v", subprotocol=subprotocol)
    assert snap["me"] == {"user": "v", "name": "V", "role": "member"}
    ok = await viewer.request("chat.send", room="enc", text="héllo ✓", cid="a")
    assert ok["seq"] == 1 and isinstance(ok["ts"], int)
    event = await host.event("chat")
    assert event["text"] == "héllo ✓"
    pong = await viewer.request("ping")
    assert isinstance(pong["ts"], int)


async def test_no_subprotocol_defaults_to_json(server: Server) -> None:
    async with websockets.connect(server.ws_url) as ws:
        await ws.send('{"t":"ping","id":7}')
        reply = orjson.loads(await ws.recv())
        assert reply["t"] == "ok" and reply["id"] == 7


async def test_msgpack_answers_are_binary(server: Server) -> None:
    async with websockets.connect(
        server.ws_url, subprotocols=[websockets.Subprotocol(MSGPACK)]
    ) as ws:
        assert ws.subprotocol == MSGPACK
        await ws.send(msgpack.packb({"t": "ping", "id": "x"}))
        frame = await ws.recv()
        assert isinstance(frame, bytes)
        assert msgpack.unpackb(frame)["id"] == "x"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_request"),
        ("[1,2,3]", "bad_request"),
        ('{"id":1}', "bad_request"),
        ('{"t":"nope","id":1}', "unknown_type"),
        ('{"t":"chat.send","id":2,"room":"r"}', "bad_request"),
        ('{"t":"ping","id":true}', "bad_request"),
        ('{"t":"like","id":3,"room":"x","n":NaN}', "bad_request"),
    ],
)
async def test_bad_frames_are_answered_and_connection_stays(
    server: Server, frame: str, code: str
) -> None:
    client = await server.connect()
    await client.send_raw(frame)
    reply = await client.event("error")
    assert reply["code"] == code
    assert "message" in reply
    assert (await client.request("ping"))["t"] == "ok"


async def test_error_echoes_a_valid_id(server: Server) -> None:
    client = await server.connect()
    reply = await client.call("nope")
    assert reply["t"] == "error" and reply["code"] == "unknown_type"
    unjoined = await client.call("chat.send", room="r", text="x", cid="1")
    assert unjoined["code"] == "not_joined"


async def test_oversized_frame_closes_with_1009(server: Server) -> None:
    client = await server.connect()
    await client.send_raw('{"t":"ping","id":1,"pad":"' + "x" * (64 * 1024) + '"}')
    code, _ = await client.closed()
    assert code == 1009


async def test_frame_just_under_limit_is_accepted(server: Server) -> None:
    client = await server.connect()
    head = '{"t":"ping","id":1,"pad":"'
    await client.send_raw(head + "x" * (64 * 1024 - len(head) - 2) + '"}')
    assert (await client.event("ok", where=lambda e: e["id"] == 1))["t"] == "ok"


async def test_twenty_bad_frames_in_a_row_close_with_1008(server: Server) -> None:
    client = await server.connect()
    for _ in range(19):
        await client.send_raw("garbage")
    assert (await client.request("ping"))["t"] == "ok"  # a good frame resets the count
    for _ in range(20):
        await client.send_raw("garbage")
    code, _ = await client.closed()
    assert code == 1008
    assert len(client.of_type("error")) == 39


async def test_ping_needs_no_room(server: Server) -> None:
    client = await server.connect()
    assert "ts" in await client.request("ping")


async def test_slow_client_is_dropped_and_room_goes_on() -> None:
    settings = make_settings(send_queue_limit=50)
    async with running_server(settings) as srv:
        await srv.create_room("slow")
        host, _ = await srv.member("slow", "h", "host")
        fast, _ = await srv.member("slow", "fast")
        # A raw client with a tiny receive buffer that joins and then never reads again.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        sock.connect(("127.0.0.1", int(srv.url.rsplit(":", 1)[1])))
        lazy = await websockets.connect(srv.ws_url, sock=sock, compression=None)
        token = srv.token("slow", "lazy")
        await lazy.send(
            orjson.dumps({"t": "join", "id": 1, "room": "slow", "token": token}).decode()
        )
        await lazy.recv()
        assert isinstance(lazy.transport, asyncio.Transport)
        lazy.transport.pause_reading()
        try:
            big = "x" * 1990
            total = 4000  # ~8 MB: more than the kernel and aiohttp buffers hold
            for i in range(total):
                await host.request("chat.send", room="slow", text=f"{i} {big}", cid=str(i))
            last = await fast.event("chat", where=lambda e: e["seq"] == total, timeout=30)
            assert last["seq"] == total
            for _ in range(100):
                if srv.node.metrics.slow_disconnects.values.get("", 0) >= 1:
                    break
                await asyncio.sleep(0.05)
            assert srv.node.metrics.slow_disconnects.values.get("", 0) == 1
            for _ in range(100):
                if "lazy" not in srv.node.rooms["slow"].present:
                    break
                await asyncio.sleep(0.05)
            assert "lazy" not in srv.node.rooms["slow"].present
            assert "fast" in srv.node.rooms["slow"].present
        finally:
            lazy.transport.abort()


async def test_server_may_pack_several_messages_in_one_frame(server: Server) -> None:
    await server.create_room("pack")
    host, _ = await server.member("pack", "h", "host")
    viewer, _ = await server.member("pack", "v")
    await asyncio.gather(
        *(host.request("chat.send", room="pack", text=str(i), cid=str(i)) for i in range(200))
    )
    events = [
        await viewer.event("chat", where=lambda e, i=i: e["seq"] == i + 1) for i in range(200)
    ]
    assert [e["text"] for e in events] == [str(i) for i in range(200)]
    assert viewer.frames < 200 + 5  # events shared frames at least sometimes


async def test_client_reconnects_after_close(server: Server) -> None:
    client: RoomClient = await server.connect()
    await client.close()
    again = await server.connect()
    assert (await again.request("ping"))["t"] == "ok"


async def test_shutdown_tells_clients_to_reconnect_then_closes_1001() -> None:
    async with running_server() as srv:
        await srv.create_room("bye")
        client, _ = await srv.member("bye", "v")
        node = srv.node
        await close_all(srv.app)
        event = await client.event("reconnect")
        assert event["reason"] == "shutdown" and event["retry_after_ms"] > 0
        code, _ = await client.closed()
        assert code == 1001
        assert node.draining is True
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(srv.ws_url)
        assert refused.value.response.status_code == 503


async def test_connections_per_address_are_limited() -> None:
    async with running_server(make_settings(max_connections_per_ip=3)) as srv:
        clients = [await srv.connect() for _ in range(3)]
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(srv.ws_url)
        assert refused.value.response.status_code == 429
        await clients[0].close()
        for _ in range(50):
            if srv.node._ip_conns.get("127.0.0.1", 0) < 3:
                break
            await asyncio.sleep(0.02)
        again = await srv.connect()
        assert (await again.request("ping"))["t"] == "ok"


async def test_joins_per_address_are_rate_limited() -> None:
    async with running_server(make_settings(joins_per_ip_rate=5)) as srv:
        await srv.create_room("j")
        client = await srv.connect()
        codes = []
        for i in range(8):
            reply = await client.call("join", room="j", token=srv.token("j", f"u{i}"))
            codes.append(reply.get("code", "ok"))
        assert codes[:5] == ["ok"] * 5
        assert "rate_limited" in codes[5:]
        limited = await client.call("join", room="j", token=srv.token("j", "x"))
        if limited["t"] == "error":
            assert limited["retry_after_ms"] > 0


async def test_slow_handshakes_are_cut_off_and_others_are_served() -> None:
    async with running_server(handshake_timeout=1.0) as srv:
        port = int(srv.url.rsplit(":", 1)[1])
        stalled = []
        for _ in range(50):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
            await writer.drain()
            stalled.append((reader, writer))
        # Meanwhile a normal client gets in and is served at once.
        client = await srv.connect()
        assert (await client.request("ping"))["t"] == "ok"
        # The stalled ones never finished their request and are closed by the server.
        closed = 0
        for reader, writer in stalled:
            try:
                data = await asyncio.wait_for(reader.read(), 4)
            except TimeoutError:
                data = b"still open"
            closed += data == b""
            writer.close()
        assert closed == len(stalled)
        assert (await client.request("ping"))["t"] == "ok"  # a live socket is not cut off
