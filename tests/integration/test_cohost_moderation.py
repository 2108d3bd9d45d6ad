"""Link-mic, moderation, room end and the role table over real sockets."""

from __future__ import annotations

import asyncio

import pytest

from tests.harness import Server, make_settings, running_server


async def test_link_mic_flow(server: Server) -> None:
    await server.create_room("mic")
    host, _ = await server.member("mic", "h", "host")
    mod, _ = await server.member("mic", "mod", "moderator")
    fan, _ = await server.member("mic", "fan")
    other, _ = await server.member("mic", "other")
    await fan.request("cohost.request", room="mic")
    for staff in (host, mod):
        raised = await staff.event("cohost.requested")
        assert raised == {"t": "cohost.requested", "room": "mic", "user": "fan", "name": "Fan"}
    await asyncio.sleep(0.05)
    assert other.of_type("cohost.requested") == []
    assert (await mod.call("cohost.invite", room="mic", user="fan"))["code"] == "forbidden"
    assert (await other.call("cohost.accept", room="mic"))["code"] == "not_invited"
    await host.request("cohost.invite", room="mic", user="fan")
    assert (await fan.event("cohost.invited")) == {"t": "cohost.invited", "room": "mic", "by": "h"}
    assert other.of_type("cohost.invited") == []
    await fan.request("cohost.accept", room="mic")
    for client in (host, other, fan):
        assert (await client.event("cohost.joined"))["user"] == "fan"
    _, snap = await server.member("mic", "late")
    assert snap["room"]["cohosts"] == ["fan"]
    assert (await other.call("cohost.end", room="mic", user="fan"))["code"] == "forbidden"
    await fan.request("cohost.end", room="mic", user="fan")
    assert (await other.event("cohost.left"))["user"] == "fan"


async def test_decline_goes_to_host_only(server: Server) -> None:
    await server.create_room("dec")
    host, _ = await server.member("dec", "h", "host")
    mod, _ = await server.member("dec", "mod", "moderator")
    fan, _ = await server.member("dec", "fan")
    await host.request("cohost.invite", room="dec", user="fan")
    await fan.request("cohost.decline", room="dec")
    assert (await host.event("cohost.declined"))["user"] == "fan"
    await asyncio.sleep(0.05)
    assert mod.of_type("cohost.declined") == []
    assert (await fan.call("cohost.accept", room="dec"))["code"] == "not_invited"


async def test_cohost_full_and_leaving_frees_a_seat() -> None:
    async with running_server(make_settings(max_cohosts=1)) as srv:
        await srv.create_room("full")
        host, _ = await srv.member("full", "h", "host")
        a, _ = await srv.member("full", "a")
        b, _ = await srv.member("full", "b")
        await host.request("cohost.invite", room="full", user="a")
        await host.request("cohost.invite", room="full", user="b")
        await a.request("cohost.accept", room="full")
        assert (await b.call("cohost.accept", room="full"))["code"] == "cohost_full"
        assert (await host.call("cohost.invite", room="full", user="b"))["code"] == "cohost_full"
        await a.close()
        assert (await host.event("cohost.left"))["user"] == "a"
        await host.request("cohost.invite", room="full", user="b")
        await b.request("cohost.accept", room="full")
        assert (await host.event("cohost.joined", where=lambda e: e["user"] == "b"))["room"]


async def test_invite_needs_a_present_user(server: Server) -> None:
    await server.create_room("absent")
    host, _ = await server.member("absent", "h", "host")
    assert (await host.call("cohost.invite", room="absent", user="ghost"))["code"] == "not_found"


async def test_kick_removes_and_allows_rejoin(server: Server) -> None:
    await server.create_room("kick")
    mod, _ = await server.member("kick", "mod", "moderator")
    member, _ = await server.member("kick", "m")
    await mod.request("mod.kick", room="kick", user="m")
    assert (await member.event("kicked")) == {"t": "kicked", "room": "kick", "reason": "kick"}
    reply = await member.call("chat.send", room="kick", text="x", cid="1")
    assert reply["code"] == "not_joined"
    await member.request("join", room="kick", token=server.token("kick", "m"))
    assert (await member.request("chat.send", room="kick", text="back", cid="2"))["seq"] == 1


async def test_ban_removes_and_blocks_rejoin(server: Server) -> None:
    await server.create_room("ban")
    host, _ = await server.member("ban", "h", "host")
    member, _ = await server.member("ban", "m")
    await host.request("mod.ban", room="ban", user="m")
    assert (await member.event("kicked"))["reason"] == "ban"
    again = await member.call("join", room="ban", token=server.token("ban", "m"))
    assert again["code"] == "banned"
    fresh = await server.connect()
    assert (await fresh.call("join", room="ban", token=server.token("ban", "m")))[
        "code"
    ] == "banned"


async def test_moderation_goes_down_the_ranks_only(server: Server) -> None:
    await server.create_room("rank")
    host, _ = await server.member("rank", "h", "host")
    mod, _ = await server.member("rank", "mod", "moderator")
    mod2, _ = await server.member("rank", "mod2", "moderator")
    for t in ("mod.kick", "mod.ban"):
        assert (await mod.call(t, room="rank", user="h"))["code"] == "forbidden"
        assert (await mod.call(t, room="rank", user="mod2"))["code"] == "forbidden"
        assert (await mod.call(t, room="rank", user="mod"))["code"] == "forbidden"
    assert (await mod.call("mod.mute", room="rank", user="h", seconds=5))["code"] == "forbidden"
    assert (await mod.call("mod.mute", room="rank", user="nobody", seconds=5))[
        "code"
    ] == "not_found"
    await host.request("mod.mute", room="rank", user="mod2", seconds=5)
    assert (await mod2.event("muted"))["room"] == "rank"


async def test_room_end_by_host(server: Server) -> None:
    await server.create_room("end")
    host, _ = await server.member("end", "h", "host")
    viewer, _ = await server.member("end", "v")
    assert (await viewer.call("room.end", room="end"))["code"] == "forbidden"
    await host.request("room.end", room="end")
    assert (await viewer.event("room.ended")) == {"t": "room.ended", "room": "end"}
    kicked = await viewer.event("kicked")
    assert kicked["reason"] == "room_ended"
    assert (await viewer.call("chat.send", room="end", text="x", cid="1"))["code"] == "not_joined"
    again = await viewer.call("join", room="end", token=server.token("end", "v"))
    assert again["code"] == "not_found"
    status, _ = await server.api("GET", "/api/rooms/end")
    assert status == 404


STAFF_ACTIONS: list[tuple[str, dict[str, object]]] = [
    ("poll.create", {"question": "?", "options": ["a", "b"]}),
    ("poll.close", {"poll": "p"}),
    ("product.pin", {"product": {"id": "p", "title": "t"}}),
    ("product.unpin", {}),
    ("mod.mute", {"user": "h", "seconds": 10}),
    ("mod.kick", {"user": "h"}),
    ("mod.ban", {"user": "h"}),
    ("mod.delete", {"seq": 1}),
    ("cohost.invite", {"user": "h"}),
    ("room.end", {}),
]


@pytest.mark.parametrize(("t", "fields"), STAFF_ACTIONS)
async def test_member_is_forbidden_every_staff_action(
    server: Server, t: str, fields: dict[str, object]
) -> None:
    await server.create_room("roles")
    await server.member("roles", "h", "host")
    member, _ = await server.member("roles", "m")
    reply = await member.call(t, room="roles", **fields)
    assert reply["code"] == "forbidden", reply


@pytest.mark.parametrize(
    ("t", "fields"), [a for a in STAFF_ACTIONS if a[0] in ("cohost.invite", "room.end")]
)
async def test_moderator_is_forbidden_host_actions(
    server: Server, t: str, fields: dict[str, object]
) -> None:
    await server.create_room("roles2")
    await server.member("roles2", "h", "host")
    mod, _ = await server.member("roles2", "mod", "moderator")
    assert (await mod.call(t, room="roles2", **fields))["code"] == "forbidden"


async def test_media_requests_without_media() -> None:
    async with running_server(make_settings(media=False)) as server:
        await _media_requests_answer_unavailable(server)


async def _media_requests_answer_unavailable(server: Server) -> None:
    await server.create_room("rtc")
    host, _ = await server.member("rtc", "h", "host")
    member, _ = await server.member("rtc", "m")
    assert (await member.call("rtc.publish", room="rtc", sdp="v=0"))["code"] == "forbidden"
    assert (await host.call("rtc.publish", room="rtc", sdp="v=0"))["code"] == "unavailable"
    assert (await member.call("rtc.unpublish", room="rtc"))["code"] == "unavailable"
    # Nobody publishes, so there is nothing to subscribe to, wherever media would live.
    sub = await member.call("rtc.subscribe", room="rtc", publisher="h", sdp="v=0")
    assert sub["code"] == "not_found"
