"""Peer connections are freed whenever their member, publisher, room or network goes away."""

from __future__ import annotations

import time

import pytest

from media import hooks
from media import sfu as sfu_module
from media.peers import Publisher, Viewer
from tests.harness import Server
from tests.media.conftest import publish, sfu_of, subscribe, until

pytestmark = pytest.mark.netns


async def test_publisher_disconnect_ends_stream_and_frees_every_peer_connection(
    server: Server, peers: list[Publisher | Viewer]
) -> None:
    await server.create_room("dc")
    host, _ = await server.member("dc", "h", "host")
    member, _ = await server.member("dc", "v")
    await publish(host, "dc", peers)
    viewer = await subscribe(member, "dc", "h", peers)
    await viewer.wait_frames(10, timeout=10)
    sfu = sfu_of(server)
    assert sfu.peer_count == 2

    await host.close()
    assert (await member.event("stream.ended"))["user"] == "h"
    await member.event("tracks", where=lambda e: e["publishers"] == [])
    await until(lambda: sfu.peer_count == 0, timeout=5)
    await until(lambda: viewer.got.video_ended, timeout=5)
    await until(lambda: viewer.pc.connectionState == "closed", timeout=5)


async def test_vanished_publisher_is_noticed_within_ten_seconds(
    server: Server, peers: list[Publisher | Viewer]
) -> None:
    assert sfu_module.FAILURE_DETECTION_S < 10
    await server.create_room("gone")
    host, _ = await server.member("gone", "h", "host")
    member, _ = await server.member("gone", "v")
    publisher = await publish(host, "gone", peers)
    viewer = await subscribe(member, "gone", "h", peers)
    await viewer.wait_frames(10, timeout=10)

    started = time.monotonic()
    hooks.sever(publisher.pc)  # no BYE, no DTLS close: the network just stops
    assert (await member.event("stream.ended", timeout=10))["user"] == "h"
    assert time.monotonic() - started < 10
    await member.event("tracks", where=lambda e: e["publishers"] == [])
    sfu = sfu_of(server)
    await until(lambda: sfu.peer_count == 0, timeout=3)
    assert sfu.stats()["lost"] >= 1
    assert (await host.request("ping"))["t"] == "ok"  # the signalling side is untouched


async def test_publication_that_never_connects_is_dropped(
    server: Server, peers: list[Publisher | Viewer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sfu_module, "CONNECT_TIMEOUT_S", 0.5)
    await server.create_room("nc")
    host, _ = await server.member("nc", "h", "host")
    publisher = Publisher()
    peers.append(publisher)
    await host.request("rtc.publish", room="nc", sdp=await publisher.offer())  # answer unused
    await host.event("tracks", where=lambda e: e["publishers"] == ["h"])
    await host.event("tracks", where=lambda e: e["publishers"] == [], timeout=5)
    assert sfu_of(server).peer_count == 0


async def test_unsubscribe_unpublish_kick_and_room_end_free_peer_connections(
    server: Server, peers: list[Publisher | Viewer]
) -> None:
    await server.create_room("life")
    host, _ = await server.member("life", "h", "host")
    one, _ = await server.member("life", "v1")
    two, _ = await server.member("life", "v2")
    sfu = sfu_of(server)

    await publish(host, "life", peers)
    await subscribe(one, "life", "h", peers)
    await subscribe(two, "life", "h", peers)
    assert sfu.peer_count == 3
    await one.request("rtc.unsubscribe", room="life", publisher="h")
    assert sfu.peer_count == 2

    await host.request("rtc.unpublish", room="life")
    await two.event("tracks", where=lambda e: e["publishers"] == [])
    assert (await two.event("stream.ended"))["user"] == "h"
    assert sfu.peer_count == 0  # the subscription to it went too

    await publish(host, "life", peers)
    await subscribe(one, "life", "h", peers)
    await subscribe(two, "life", "h", peers)
    assert sfu.peer_count == 3
    await host.request("mod.kick", room="life", user="v1")
    await one.event("kicked")
    await until(lambda: sfu.peer_count == 2, timeout=5)

    await host.request("room.end", room="life")
    await until(lambda: sfu.peer_count == 0, timeout=5)


async def test_leaving_frees_the_members_own_subscriptions(
    server: Server, peers: list[Publisher | Viewer]
) -> None:
    await server.create_room("lv")
    host, _ = await server.member("lv", "h", "host")
    member, _ = await server.member("lv", "v")
    await publish(host, "lv", peers)
    await subscribe(member, "lv", "h", peers)
    sfu = sfu_of(server)
    assert sfu.peer_count == 2
    await member.request("leave", room="lv")
    await until(lambda: sfu.peer_count == 1, timeout=5)
    assert [p.publisher for p in sfu.peers()] == [None]


async def test_two_tabs_of_one_member_each_watch_and_closing_one_keeps_the_other(
    server: Server, peers: list[Publisher | Viewer]
) -> None:
    await server.create_room("tabs")
    host, _ = await server.member("tabs", "h", "host")
    first, _ = await server.member("tabs", "v")
    second, _ = await server.member("tabs", "v")  # the same member in another tab
    await publish(host, "tabs", peers)
    one = await subscribe(first, "tabs", "h", peers)
    two = await subscribe(second, "tabs", "h", peers)
    await one.wait_frames(10, timeout=10)
    await two.wait_frames(10, timeout=10)
    sfu = sfu_of(server)
    assert sum(1 for p in sfu.peers() if p.user == "v") == 2  # the second did not replace it

    await first.close()  # one tab closes: its subscription goes, the other keeps playing
    await until(lambda: sum(1 for p in sfu.peers() if p.user == "v") == 1, timeout=5)
    seen = two.got.encoded_frames + len(two.got.numbers)
    await until(lambda: two.got.encoded_frames + len(two.got.numbers) > seen + 10, timeout=5)

    await second.request("leave", room="tabs")  # the last tab leaves: nothing of v is left
    await until(lambda: not any(p.user == "v" for p in sfu.peers()), timeout=5)
