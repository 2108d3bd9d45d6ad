"""Media with several nodes: a room's WebRTC lives on one node; rtc.* on any node reaches it."""

from __future__ import annotations

import pytest

from media.peers import Publisher, Viewer
from tests.integration.test_multinode import create_room, join
from tests.nodes import nodes
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.netns]


async def test_subscribe_and_cohost_publish_through_another_node(
    redis_server: RedisServer, peers: list[Publisher | Viewer]
) -> None:
    args = ("--redis", redis_server.url, "--redis-prefix", "mnmedia")
    media = ("--media", "on", "--rtc-ip", "127.0.0.1")
    async with nodes(2, *args, *media) as (a, b):
        await create_room(a, "stage")
        host, _ = await join(a, "stage", "h", "host")
        viewer_ws, _ = await join(b, "stage", "v")  # the viewer's signalling is on node B
        fan_ws, _ = await join(b, "stage", "fan")

        publisher = Publisher()
        peers.append(publisher)
        answer = await host.request("rtc.publish", room="stage", sdp=await publisher.offer())
        await publisher.accept(answer["sdp"])
        await viewer_ws.event("tracks", where=lambda e: e["publishers"] == ["h"], timeout=10)

        # rtc.subscribe on node B is answered by node A, which holds the room's media.
        viewer = Viewer()
        peers.append(viewer)
        sdp = await viewer.offer()
        reply = await viewer_ws.request("rtc.subscribe", room="stage", publisher="h", sdp=sdp)
        await viewer.accept(reply["sdp"])
        await viewer.wait_frames(10, timeout=15)

        # A co-host on node B publishes: its stream also lands on node A.
        await host.request("cohost.invite", room="stage", user="fan")
        await fan_ws.request("cohost.accept", room="stage")
        cohost = Publisher()
        peers.append(cohost)
        answer = await fan_ws.request("rtc.publish", room="stage", sdp=await cohost.offer())
        await cohost.accept(answer["sdp"])
        watcher = Viewer()
        peers.append(watcher)
        sdp = await watcher.offer()
        reply = await host.request("rtc.subscribe", room="stage", publisher="fan", sdp=sdp)
        await watcher.accept(reply["sdp"])
        await watcher.wait_frames(10, timeout=15)
        for client in (host, viewer_ws, fan_ws):
            await client.close()
