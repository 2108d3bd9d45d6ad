"""PK battles over real sockets, on memory, one Redis and three shards.

Invite, decline, accept; the PK poll in both rooms; the score from likes and
votes reaching both rooms; the end (by a host, by the timer, by a room ending)
with one result in both rooms; every refusal with its code.
"""

from __future__ import annotations

import asyncio
import dataclasses

from roomserver.pk import Battle
from tests.harness import Server


async def two_rooms(server: Server) -> tuple[object, ...]:
    await server.create_room("pa", title="Alpha store")
    await server.create_room("pb", title="Beta store")
    host_a, _ = await server.member("pa", "ha", "host")
    host_b, _ = await server.member("pb", "hb", "host")
    viewer_a, _ = await server.member("pa", "va")
    viewer_b, _ = await server.member("pb", "vb")
    return host_a, host_b, viewer_a, viewer_b


async def test_invite_decline_accept_score_and_end(server: Server) -> None:
    host_a, host_b, viewer_a, viewer_b = await two_rooms(server)
    refused = await viewer_a.call("pk.invite", room="pa", to_room="pb", duration_s=60)
    assert refused["code"] == "forbidden"
    assert (await host_a.call("pk.invite", room="pa", to_room="pa", duration_s=60))[
        "code"
    ] == "bad_request"
    assert (await host_a.call("pk.invite", room="pa", to_room="nope", duration_s=60))[
        "code"
    ] == "not_found"
    assert (await host_a.call("pk.invite", room="pa", to_room="pb", duration_s=5))[
        "code"
    ] == "bad_request"

    # Invite, and the invited host declines.
    first = (await host_a.request("pk.invite", room="pa", to_room="pb", duration_s=60))["invite"]
    invited = await host_b.event("pk.invited")
    assert (
        invited["invite"]["id"] == first["id"] and invited["invite"]["from_title"] == "Alpha store"
    )
    assert not viewer_b.of_type("pk.invited")  # only the host is asked
    busy = await host_a.call("pk.invite", room="pa", to_room="pb", duration_s=60)
    assert busy["code"] == "pk_busy"
    _, rejoined = await server.member("pb", "hb", "host")  # the host reloads its page
    assert rejoined["room"]["pk_invite"]["id"] == first["id"]
    _, member_view = await server.member("pb", "vb2")
    assert "pk_invite" not in member_view["room"]  # only hosts are told
    await host_b.request("pk.decline", room="pb", pk=first["id"])
    assert (await host_a.event("pk.declined"))["pk"] == first["id"]
    assert (await host_b.call("pk.accept", room="pb", pk=first["id"]))["code"] == "not_invited"
    _, after_decline = await server.member("pb", "hb", "host")
    assert after_decline["room"]["pk_invite"] is None

    # Invite again; accepted: both rooms get the battle and the PK poll.
    second = (await host_a.request("pk.invite", room="pa", to_room="pb", duration_s=60))["invite"]
    await host_b.event("pk.invited", where=lambda e: e["invite"]["id"] == second["id"])
    started = (await host_b.request("pk.accept", room="pb", pk=second["id"]))["pk"]
    assert started["rooms"] == ["pa", "pb"] and started["hosts"] == ["ha", "hb"]
    for viewer, room in ((viewer_a, "pa"), (viewer_b, "pb")):
        event = await viewer.event("pk.started")
        assert event["room"] == room and event["pk"]["id"] == second["id"]
        poll = (await viewer.event("poll.opened"))["poll"]
        assert [o["text"] for o in poll["options"]] == ["Alpha store", "Beta store"]
    assert (await host_b.call("pk.invite", room="pb", to_room="pa", duration_s=60))[
        "code"
    ] == "pk_busy"

    # Likes in room a and votes in both rooms: the score reaches both rooms.
    await viewer_a.request("like", room="pa", n=5)
    await viewer_a.request("poll.vote", room="pa", poll=started["polls"][0], option=0)
    await viewer_b.request("poll.vote", room="pb", poll=started["polls"][1], option=1)
    want = {"pa": 6, "pb": 1}
    for viewer in (viewer_a, viewer_b, host_a, host_b):
        await viewer.event("pk.score", where=lambda e: e["score"] == want)
    _, late = await server.member("pa", "late")
    assert late["room"]["pk"]["id"] == second["id"] and late["room"]["pk"]["score"] == want

    # A host ends it: one result in both rooms, the PK polls closed.
    ended = (await host_b.request("pk.end", room="pb"))["pk"]
    assert ended["score"] == want and ended["winner"] == "pa"
    for viewer in (viewer_a, viewer_b):
        event = await viewer.event("pk.ended")
        assert event["pk"]["winner"] == "pa" and event["pk"]["score"] == want
        await viewer.event("poll.closed")
    assert (await host_a.call("pk.end", room="pa"))["code"] == "not_found"
    _, after = await server.member("pb", "after")
    assert after["room"]["pk"] is None and after["room"]["last_pk"]["winner"] == "pa"


async def test_the_timer_ends_the_battle_and_a_room_ending_ends_it_too(server: Server) -> None:
    host_a, host_b, viewer_a, viewer_b = await two_rooms(server)
    invite = (await host_a.request("pk.invite", room="pa", to_room="pb", duration_s=30))["invite"]
    await host_b.event("pk.invited")
    started = (await host_b.request("pk.accept", room="pb", pk=invite["id"]))["pk"]
    # Bring the end forward on this node's timer: the timer path, not pk.end.
    battle = dataclasses.replace(
        Battle.from_wire(started), ends_at=server.node.clock.now_ms() + 200
    )
    timer = server.node._timers.pop(("pa", "pk:" + battle.id))
    timer.cancel()
    server.node.battles.schedule_end("pa", battle)
    for viewer in (viewer_a, viewer_b):
        event = await viewer.event("pk.ended", timeout=5)
        assert event["pk"]["winner"] is None and event["pk"]["score"] == {"pa": 0, "pb": 0}
    await asyncio.sleep(0.3)
    assert len(viewer_a.of_type("pk.ended")) == 0  # once, though both rooms had timers

    # A new battle; room b ends: the battle ends in room a too.
    invite = (await host_a.request("pk.invite", room="pa", to_room="pb", duration_s=30))["invite"]
    await host_b.event("pk.invited", where=lambda e: e["invite"]["id"] == invite["id"])
    await host_b.request("pk.accept", room="pb", pk=invite["id"])
    await viewer_a.event("pk.started")
    await host_b.request("room.end", room="pb")
    assert (await viewer_a.event("pk.ended"))["pk"]["id"] == invite["id"]
