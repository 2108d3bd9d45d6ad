"""Bad offers are ``bad_request``, unknown publishers ``not_found``; nothing is left behind."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from media import hooks
from media import sfu as sfu_module
from media.peers import Publisher, Viewer
from roomserver.errors import BadRequest, Forbidden, NotFound
from tests.harness import Server
from tests.media.conftest import publish, sfu_of

pytestmark = pytest.mark.netns


async def _publisher_offer(peers: list[Publisher | Viewer], **kw: Any) -> str:
    publisher = Publisher(**kw)
    peers.append(publisher)
    return await publisher.offer()


async def _viewer_offer(peers: list[Publisher | Viewer], **kw: Any) -> str:
    viewer = Viewer(**kw)
    peers.append(viewer)
    return await viewer.offer()


async def _data_channel_offer() -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.createDataChannel("chat")
    offer = await pc.createOffer()
    with hooks.host_addresses(["127.0.0.1"]):
        await pc.setLocalDescription(offer)
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp


async def test_malformed_publish_offers_are_bad_request_and_leave_nothing(
    server: Server, peers: list[Publisher | Viewer]
) -> None:
    await server.create_room("bad")
    host, _ = await server.member("bad", "h", "host")
    good = await _publisher_offer(peers)
    offers = {
        "garbage": "hello",
        "unparsable": "v=0\r\nm=video x RTP/SAVPF 96\r\n",
        "no media": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n",
        "no usable codec": good.replace("VP8/90000", "XV9/90000"),
        "no ice credentials": "\r\n".join(
            line for line in good.split("\r\n") if not line.startswith("a=ice-")
        ),
        "not sending": good.replace("a=sendonly", "a=recvonly"),
        "data channel": await _data_channel_offer(),
        "oversized": good + "a=x-pad:" + "x" * 20_000 + "\r\n",
    }
    for name, sdp in offers.items():
        reply = await host.call("rtc.publish", room="bad", sdp=sdp)
        assert reply["t"] == "error" and reply["code"] == "bad_request", (name, reply)
    sfu = sfu_of(server)
    assert sfu.peer_count == 0
    assert (await host.request("rtc.publish", room="bad", sdp=good))["sdp"].startswith("v=0")
    assert sfu.peer_count == 1


async def test_offer_refused_by_aiortc_closes_its_peer_connection(
    server: Server, peers: list[Publisher | Viewer], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(self: RTCPeerConnection, description: Any) -> None:
        raise ValueError("refused")

    offer = await _publisher_offer(peers)
    monkeypatch.setattr(RTCPeerConnection, "setRemoteDescription", refuse)
    sfu = sfu_of(server)
    with pytest.raises(BadRequest):
        await sfu.publish("r", "u", offer)
    assert sfu.peer_count == 0


async def test_bad_subscribe_offers_are_bad_request(
    server: Server, peers: list[Publisher | Viewer]
) -> None:
    await server.create_room("bs")
    host, _ = await server.member("bs", "h", "host")
    member, _ = await server.member("bs", "v")
    await publish(host, "bs", peers, codec="VP8")
    sending = await _publisher_offer(peers)
    h264_only = (await _viewer_offer(peers)).replace("VP8/90000", "XV9/90000")
    for sdp in ("nonsense", sending, h264_only):
        reply = await member.call("rtc.subscribe", room="bs", publisher="h", sdp=sdp)
        assert reply["code"] == "bad_request", reply
    assert sfu_of(server).peer_count == 1


async def test_subscribing_to_a_non_publisher_is_not_found(
    server: Server, peers: list[Publisher | Viewer]
) -> None:
    await server.create_room("nf")
    await server.member("nf", "h", "host")
    member, _ = await server.member("nf", "v")
    offer = await _viewer_offer(peers)
    for publisher in ("h", "v", "nobody"):
        reply = await member.call("rtc.subscribe", room="nf", publisher=publisher, sdp=offer)
        assert reply["code"] == "not_found", reply
    with pytest.raises(NotFound):
        await sfu_of(server).subscribe("nf", "v", "h", offer)
    assert sfu_of(server).peer_count == 0


async def test_peer_connections_per_member_are_capped(
    server: Server, peers: list[Publisher | Viewer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sfu_module, "MAX_PEERS_PER_MEMBER", 3)
    await server.create_room("cap")
    host, _ = await server.member("cap", "h", "host")
    await publish(host, "cap", peers)
    sfu = sfu_of(server)
    offers = [await _viewer_offer(peers) for _ in range(5)]
    results = await asyncio.gather(
        *(sfu.subscribe("cap", "v", "h", sdp) for sdp in offers), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, Forbidden)]
    assert len(refused) == 2 and "at most 3" in refused[0].message
    # The three that were admitted replaced one another: one subscription remains.
    assert sfu.peer_count == 2


async def test_remote_candidates_outside_loopback_are_ignored(
    server: Server, peers: list[Publisher | Viewer]
) -> None:
    await server.create_room("ip")
    host, _ = await server.member("ip", "h", "host")
    publisher = Publisher()
    peers.append(publisher)
    offer = await publisher.offer()
    extra = (
        "a=candidate:1 1 udp 2130706431 192.0.2.7 9999 typ host\r\n"
        "a=candidate:2 1 udp 2130706431 abcdef.local 9998 typ host\r\n"
    )
    offer = offer.replace("a=end-of-candidates\r\n", extra + "a=end-of-candidates\r\n")
    answer = await host.request("rtc.publish", room="ip", sdp=offer)
    await publisher.accept(answer["sdp"])
    candidates = [line for line in answer["sdp"].splitlines() if line.startswith("a=candidate")]
    assert candidates and all(" 127.0.0.1 " in line for line in candidates)
    (peer,) = sfu_of(server).peers()
    for transceiver in peer.pc.getTransceivers():
        remote = transceiver.receiver.transport.transport.getRemoteCandidates()
        assert remote and all(c.ip.startswith("127.") for c in remote), remote


def _mutate(rng: random.Random, sdp: str) -> str:
    lines = sdp.split("\r\n")
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(lines))
        change = rng.choice(["drop", "repeat", "swap", "edit", "same-mid"])
        if change == "drop" and len(lines) > 2:
            del lines[at]
        elif change == "repeat":
            lines.insert(rng.randrange(len(lines)), lines[at])
        elif change == "swap":
            other = rng.randrange(len(lines))
            lines[at], lines[other] = lines[other], lines[at]
        elif change == "edit" and lines[at]:
            pos = rng.randrange(len(lines[at]))
            junk = rng.choice(["0", " ", ":", "x", "=", "/", "-1", "99999999999"])
            lines[at] = lines[at][:pos] + junk + lines[at][pos + 1 :]
        elif change == "same-mid":
            lines = [line.replace("a=mid:1", "a=mid:0") for line in lines]
    return "\r\n".join(lines)


async def test_mangled_offers_are_answered_or_refused_never_crash_or_leak(
    server: Server, peers: list[Publisher | Viewer]
) -> None:
    """Random damage to real offers: each is answered or bad_request; no peer connection leaks."""
    sfu = sfu_of(server)
    publish_offer = await _publisher_offer(peers)
    subscribe_offer = await _viewer_offer(peers)
    await sfu.publish("fz", "h", publish_offer)
    rng = random.Random(20261123)
    answered = refused = 0
    for _ in range(150):
        publishing = rng.random() < 0.5
        sdp = _mutate(rng, publish_offer if publishing else subscribe_offer)
        try:
            if publishing:
                await sfu.publish("fz", "h", sdp)
            else:
                await sfu.subscribe("fz", "v", "h", sdp)
            answered += 1
        except BadRequest:
            refused += 1
        if not sfu.feeds("fz", "h"):
            await sfu.publish("fz", "h", publish_offer)
        assert sfu.peer_count <= 2  # one publication, one subscription: the rest replaced
    assert answered > 20 and refused > 20
