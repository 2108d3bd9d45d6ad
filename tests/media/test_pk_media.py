"""PK battles carry the other room's host: on one node, and when that room's media is elsewhere."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from media.peers import Publisher, Viewer
from signaling.client import RoomClient
from tests.harness import Server
from tests.integration.test_multinode import create_room, join
from tests.media.conftest import publish, sfu_of, until
from tests.nodes import nodes
from tests.redis_server import RedisServer

pytestmark = pytest.mark.netns


async def peer_connections(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as resp:
        text = await resp.text()
    (line,) = [x for x in text.splitlines() if x.startswith("roomserver_media_peer_connections ")]
    return int(float(line.split()[1]))


async def start_battle(host_a: RoomClient, host_b: RoomClient) -> dict[str, Any]:
    invite = (await host_a.request("pk.invite", room="pa", to_room="pb", duration_s=60))["invite"]
    await host_b.event("pk.invited", timeout=10)
    started: dict[str, Any] = (await host_b.request("pk.accept", room="pb", pk=invite["id"]))["pk"]
    return started


async def watch_other_host(
    client: RoomClient, peers: list[Publisher | Viewer], publisher: str = "hb", **extra: Any
) -> Viewer:
    viewer = Viewer()
    peers.append(viewer)
    sdp = await viewer.offer()
    reply = await client.request(
        "rtc.subscribe", room="pa", publisher=publisher, sdp=sdp, from_room="pb", **extra
    )
    await viewer.accept(reply["sdp"])
    return viewer


async def test_viewers_of_one_room_watch_the_other_host_until_the_battle_ends(
    server: Server, peers: list[Publisher | Viewer]
) -> None:
    await server.create_room("pa", title="Alpha")
    await server.create_room("pb", title="Beta")
    host_a, _ = await server.member("pa", "ha", "host")
    host_b, _ = await server.member("pb", "hb", "host")
    fan, _ = await server.member("pa", "fan")
    await publish(host_a, "pa", peers)
    await publish(host_b, "pb", peers)

    # Not in a battle yet: the other room's host is not for this room's viewers.
    viewer = Viewer()
    peers.append(viewer)
    refused = await fan.call(
        "rtc.subscribe", room="pa", publisher="hb", sdp=await viewer.offer(), from_room="pb"
    )
    assert refused["code"] == "not_found"

    await start_battle(host_a, host_b)
    await fan.event("pk.started")
    wrong = await fan.call(
        "rtc.subscribe", room="pa", publisher="ha", sdp=await viewer.offer(), from_room="pb"
    )
    assert wrong["code"] == "not_found"  # only the other room's host
    own = Viewer()
    peers.append(own)
    reply = await fan.request("rtc.subscribe", room="pa", publisher="ha", sdp=await own.offer())
    await own.accept(reply["sdp"])
    other = await watch_other_host(fan, peers)
    await own.wait_frames(10, timeout=15)
    await other.wait_frames(10, timeout=15)

    sfu = sfu_of(server)
    guests = [p for p in sfu.peers() if p.room == "pb" and p.user.startswith("pk/pa/")]
    assert len(guests) == 1 and guests[0].publisher == "hb"

    await host_a.request("pk.end", room="pa")
    await fan.event("pk.ended")
    await until(
        lambda: not any(p.user.startswith("pk/") for p in sfu.peers()),
        timeout=5,
    )
    assert any(p.room == "pa" and p.user == "fan" for p in sfu.peers())  # own room's stream stays


@pytest.mark.slow
async def test_the_other_rooms_media_on_another_node(
    redis_server: RedisServer, peers: list[Publisher | Viewer]
) -> None:
    args = ("--redis", redis_server.url, "--redis-prefix", "pkmedia")
    media = ("--media", "on", "--rtc-ip", "127.0.0.1")
    async with nodes(2, *args, *media) as (a, b):
        await create_room(a, "pa")
        await create_room(a, "pb")
        host_a, _ = await join(a, "pa", "ha", "host")
        host_b, _ = await join(b, "pb", "hb", "host")  # room pb's media lands on node b
        fan, _ = await join(a, "pa", "fan")
        for client, room in ((host_a, "pa"), (host_b, "pb")):
            publisher = Publisher()
            peers.append(publisher)
            answer = await client.request("rtc.publish", room=room, sdp=await publisher.offer())
            await publisher.accept(answer["sdp"])
        await start_battle(host_a, host_b)
        await fan.event("pk.started", timeout=10)
        # The fan's signalling is on node a; the subscription is answered by node b.
        other = await watch_other_host(fan, peers)
        await other.wait_frames(10, timeout=15)
        # Node a holds ha's publication; node b holds hb's and the fan's guest subscription.
        assert (await peer_connections(a.url), await peer_connections(b.url)) == (1, 2)
        for client in (host_a, host_b, fan):
            await client.close()
