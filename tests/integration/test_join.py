"""join, leave, the snapshot, resume with ``since``, presence and member events."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from signaling.client import JSON, MSGPACK, RequestFailed
from tests.harness import Server, make_settings, running_server


@pytest.mark.parametrize("subprotocol", [JSON, MSGPACK])
async def test_snapshot_has_every_field(server: Server, subprotocol: str) -> None:
    await server.create_room("snap", title="Robot kit review", welcome="Ask anything")
    host, _ = await server.member("snap", "h", "host")
    await host.request("product.pin", room="snap", product={"id": "p9", "title": "Robot kit"})
    await host.request("poll.create", room="snap", question="Buy?", options=["yes", "no"])
    for i in range(3):
        await host.request("chat.send", room="snap", text=f"m{i}", cid=f"c{i}")
    await host.request("like", room="snap", n=7)
    _, snap = await server.member("snap", "v", subprotocol=subprotocol)
    assert snap["t"] == "ok"
    assert snap["me"] == {"user": "v", "name": "V", "role": "member"}
    room = snap["room"]
    assert room["id"] == "snap" and room["title"] == "Robot kit review"
    assert room["host"] == "h" and room["live"] is False
    assert room["cohosts"] == [] and room["publishers"] == []
    assert room["pinned"] == {"id": "p9", "title": "Robot kit"}
    assert room["members"] == 2 and room["likes"] == 7
    assert room["welcome"] == "Ask anything"
    assert [p["question"] for p in snap["polls"]] == ["Buy?"]
    assert snap["polls"][0]["options"] == [{"text": "yes", "votes": 0}, {"text": "no", "votes": 0}]
    assert [m["text"] for m in snap["history"]] == ["m0", "m1", "m2"]
    assert snap["seq"] == 3 and snap["gap"] is False
    first = snap["history"][0]
    assert set(first) == {"t", "room", "seq", "ts", "user", "name", "role", "text", "cid"}


async def test_history_on_join_is_the_last_fifty(server: Server) -> None:
    await server.create_room("fifty")
    host, _ = await server.member("fifty", "h", "host")
    for i in range(60):
        await host.request("chat.send", room="fifty", text=str(i), cid=str(i))
    _, snap = await server.member("fifty", "v")
    assert [m["seq"] for m in snap["history"]] == list(range(11, 61))
    assert snap["seq"] == 60


async def test_since_returns_what_was_missed(server: Server) -> None:
    await server.create_room("resume")
    host, _ = await server.member("resume", "h", "host")
    for i in range(10):
        await host.request("chat.send", room="resume", text=str(i), cid=str(i))
    _, snap = await server.member("resume", "v", since=4)
    assert [m["seq"] for m in snap["history"]] == [5, 6, 7, 8, 9, 10]
    assert snap["gap"] is False
    _, current = await server.member("resume", "w", since=10)
    assert current["history"] == [] and current["gap"] is False


async def test_since_reports_gap_when_history_dropped_messages() -> None:
    async with running_server(make_settings(history_size=20)) as srv:
        await srv.create_room("g")
        host, _ = await srv.member("g", "h", "host")
        for i in range(30):
            await host.request("chat.send", room="g", text=str(i), cid=str(i))
        _, snap = await srv.member("g", "v", since=2)
        assert snap["gap"] is True
        assert [m["seq"] for m in snap["history"]] == list(range(11, 31))


async def test_since_caps_at_500_with_gap(server: Server) -> None:
    await server.create_room("cap")
    host, _ = await server.member("cap", "h", "host")
    for i in range(520):
        await host.request("chat.send", room="cap", text=str(i), cid=str(i))
    _, snap = await server.member("cap", "v", since=0)
    assert snap["gap"] is True
    assert len(snap["history"]) == 500
    assert snap["history"][0]["seq"] == 1 and snap["history"][-1]["seq"] == 500
    assert snap["seq"] == 520


async def test_resume_after_reconnect_has_no_gap_and_no_duplicate(server: Server) -> None:
    await server.create_room("rc")
    host, _ = await server.member("rc", "h", "host")
    viewer, snap = await server.member("rc", "v")
    seen = [m["seq"] for m in snap["history"]]
    await host.request("chat.send", room="rc", text="a", cid="a")
    seen.append((await viewer.event("chat"))["seq"])
    await viewer.close()
    for i in range(5):
        await host.request("chat.send", room="rc", text=str(i), cid=f"x{i}")
    again, snap2 = await server.member("rc", "v", since=seen[-1])
    seen += [m["seq"] for m in snap2["history"]]
    await host.request("chat.send", room="rc", text="live", cid="live")
    seen.append((await again.event("chat"))["seq"])
    assert seen == list(range(1, 8))


async def test_events_during_join_are_neither_lost_nor_doubled(server: Server) -> None:
    await server.create_room("race")
    host, _ = await server.member("race", "h", "host")

    async def chatter() -> None:
        for i in range(200):
            await host.request("chat.send", room="race", text=str(i), cid=str(i))

    task = asyncio.create_task(chatter())
    await asyncio.sleep(0.01)
    viewer, snap = await server.member("race", "v", since=0)
    await task
    seqs = [m["seq"] for m in snap["history"]]
    while not seqs or seqs[-1] < 200:
        seqs.append((await viewer.event("chat"))["seq"])
    assert seqs == list(range(1, 201))


async def test_join_errors(server: Server) -> None:
    await server.create_room("e")
    client = await server.connect()
    with pytest.raises(RequestFailed) as nf:
        await client.request("join", room="missing", token=server.token("missing"))
    assert nf.value.code == "not_found"
    with pytest.raises(RequestFailed) as other:
        await client.request("join", room="e", token=server.token("elsewhere"))
    assert other.value.code == "unauthorized"
    with pytest.raises(RequestFailed) as garbage:
        await client.request("join", room="e", token="not-a-token")
    assert garbage.value.code == "unauthorized"
    expired = server.token("e", "x", ttl_s=-10)
    with pytest.raises(RequestFailed) as old:
        await client.request("join", room="e", token=expired)
    assert old.value.code == "unauthorized"
    assert (await client.request("ping"))["t"] == "ok"


async def test_requests_need_a_joined_room(server: Server) -> None:
    await server.create_room("nj")
    await server.create_room("other")
    client, _ = await server.member("nj", "v")
    for t, fields in [
        ("chat.send", {"text": "x", "cid": "1"}),
        ("chat.history", {}),
        ("like", {}),
        ("leave", {}),
        ("rtc.subscribe", {"publisher": "h", "sdp": "v=0"}),
        ("rtc.publish", {"sdp": "v=0"}),
    ]:
        reply = await client.call(t, room="other", **fields)
        assert reply["code"] == "not_joined", t


async def test_one_connection_many_rooms_and_leave(server: Server) -> None:
    await server.create_room("a")
    await server.create_room("b")
    client = await server.connect()
    await client.request("join", room="a", token=server.token("a", "u"))
    await client.request("join", room="b", token=server.token("b", "u"))
    host_b, _ = await server.member("b", "hb", "host")
    await host_b.request("chat.send", room="b", text="to b", cid="1")
    assert (await client.event("chat"))["room"] == "b"
    await client.request("leave", room="b")
    await host_b.request("chat.send", room="b", text="after leave", cid="2")
    assert (await client.call("chat.send", room="b", text="x", cid="3"))["code"] == "not_joined"
    assert (await client.request("chat.send", room="a", text="still in a", cid="4"))["seq"] == 1
    await client.event("chat", where=lambda e: e["room"] == "a")
    assert [e for e in client.of_type("chat") if e["room"] == "b"] == []


async def test_room_limit_per_connection() -> None:
    async with running_server(make_settings(max_rooms_per_connection=2)) as srv:
        client = await srv.connect()
        for name in ("r1", "r2", "r3"):
            await srv.create_room(name)
        await client.request("join", room="r1", token=srv.token("r1", "u"))
        await client.request("join", room="r2", token=srv.token("r2", "u"))
        reply = await client.call("join", room="r3", token=srv.token("r3", "u"))
        assert reply["code"] == "forbidden"
        await client.request("leave", room="r1")
        await client.request("join", room="r3", token=srv.token("r3", "u"))


async def test_presence_and_member_events(server: Server) -> None:
    await server.create_room("p")
    host, _ = await server.member("p", "h", "host")
    viewer, _ = await server.member("p", "v")
    joined = await host.event("member.joined", where=lambda e: e["user"] == "v")
    assert joined == {"t": "member.joined", "room": "p", "user": "v", "name": "V", "role": "member"}
    presence = await host.event("presence", where=lambda e: e["members"] == 2, timeout=3)
    assert presence["room"] == "p"
    await viewer.close()
    left = await host.event("member.left", where=lambda e: e["user"] == "v")
    assert left["role"] == "member"
    assert (await host.event("presence", where=lambda e: e["members"] == 1, timeout=3))["room"]


async def test_member_events_stop_for_big_rooms_but_not_for_staff() -> None:
    async with running_server(make_settings(member_events_below=3)) as srv:
        await srv.create_room("big")
        host, _ = await srv.member("big", "h", "host")
        await srv.member("big", "m1")
        await srv.member("big", "m2")
        await srv.member("big", "m3")
        await srv.member("big", "mod", "moderator")
        await host.event("member.joined", where=lambda e: e["user"] == "mod")
        users = [e["user"] for e in host.of_type("member.joined")]
        assert "m1" in users  # the room had 2 members: under the threshold of 3
        assert "m2" not in users and "m3" not in users


async def test_presence_is_coalesced(server: Server) -> None:
    await server.create_room("pc")
    host, _ = await server.member("pc", "h", "host")
    for i in range(15):
        await server.member("pc", f"v{i}")
    await host.event("presence", where=lambda e: e["members"] == 16, timeout=3)
    assert len(host.of_type("presence")) <= 2  # at most one per second


async def test_second_connection_of_a_user_counts_once(server: Server) -> None:
    await server.create_room("dup")
    await server.member("dup", "h", "host")
    await server.member("dup", "same")
    await server.member("dup", "same")
    status, body = await server.api("GET", "/api/rooms/dup")
    assert status == 200 and body["members"] == 2


async def test_an_empty_room_leaves_no_local_state_and_keeps_its_rules(server: Server) -> None:
    await server.create_room("gone")
    host, _ = await server.member("gone", "h", "host")
    member, _ = await server.member("gone", "m")
    await host.request("mod.ban", room="gone", user="m")
    await host.request("product.pin", room="gone", product={"id": "p", "title": "Kit"})
    await host.close()
    await member.close()
    for _ in range(100):
        if "gone" not in server.node.rooms:
            break
        await asyncio.sleep(0.02)
    assert "gone" not in server.node.rooms
    again = await server.connect()
    assert (await again.call("join", room="gone", token=server.token("gone", "m")))[
        "code"
    ] == "banned"
    _, snap = await server.member("gone", "other")
    assert snap["room"]["pinned"] == {"id": "p", "title": "Kit"} and snap["room"]["host"] == "h"


@pytest.mark.parametrize("kind", ["memory", "redis", "redis-sharded"])
async def test_a_burst_of_joins_is_queued_not_refused(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """300 members join at once: more than a node's Redis connections, all succeed."""
    url = ""
    if kind == "redis":
        url = request.getfixturevalue("redis_server").url
    elif kind == "redis-sharded":
        url = ",".join(s.url for s in request.getfixturevalue("redis_shards"))
    settings = make_settings(redis=url, redis_prefix=f"burst-{kind}", joins_per_ip_rate=10_000)
    async with running_server(settings) as srv:
        await srv.create_room("burst")

        async def join(i: int) -> str:
            client = await srv.connect()
            reply = await client.call("join", room="burst", token=srv.token("burst", f"b{i}"))
            return str(reply.get("code", reply["t"]))

        outcomes = await asyncio.gather(*(join(i) for i in range(300)))
        assert outcomes == ["ok"] * 300


async def test_a_member_token_edited_to_host_cannot_join(server: Server) -> None:
    await server.create_room("forge")
    header, payload, signature = server.token("forge", "eve").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "host"
    edited = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    client = await server.connect()
    reply = await client.call("join", room="forge", token=f"{header}.{edited}.{signature}")
    assert reply["code"] == "unauthorized"
