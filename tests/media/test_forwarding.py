"""Frames go from a publisher through the real server to viewers, encoded, in order, fast."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import aiortc.rtcrtpreceiver
import pytest
from aiortc.sdp import SessionDescription

from media import forward, hooks, offers
from media.peers import Publisher, Viewer
from tests.harness import Server
from tests.media.conftest import publish, sfu_of, subscribe, until

pytestmark = pytest.mark.netns


def assert_in_order(numbers: list[int], at_least: int, context: object = None) -> None:
    """Strictly increasing, and (over loopback) with hardly any frame missing."""
    assert len(numbers) >= at_least, (len(numbers), context)
    backwards = [(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(numbers)) if b <= a]
    assert not backwards, f"{backwards[:8]} {numbers} {context}"
    span = numbers[-1] - numbers[0] + 1
    assert len(numbers) >= 0.9 * span, (len(numbers), span)


@dataclass
class DecoderCount:
    """Decoders aiortc created, by the queue their thread reads (a Tap means the SFU)."""

    queues: list[Any] = field(default_factory=list)

    @property
    def on_taps(self) -> int:
        return sum(isinstance(q, hooks.Tap) for q in self.queues)


def count_decoders(monkeypatch: pytest.MonkeyPatch) -> DecoderCount:
    count = DecoderCount()
    local = threading.local()
    worker = aiortc.rtcrtpreceiver.decoder_worker
    get_decoder = aiortc.rtcrtpreceiver.get_decoder

    def counting_worker(loop: Any, input_q: Any, output_q: Any, decode_error: Any) -> None:
        local.input_q = input_q
        worker(loop, input_q, output_q, decode_error)

    def counting_get_decoder(codec: Any) -> Any:
        count.queues.append(local.input_q)
        return get_decoder(codec)

    monkeypatch.setattr(aiortc.rtcrtpreceiver, "decoder_worker", counting_worker)
    monkeypatch.setattr(aiortc.rtcrtpreceiver, "get_decoder", counting_get_decoder)
    return count


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_viewer_decodes_publisher_frames_in_order_and_server_never_decodes(
    server: Server, peers: list[Publisher | Viewer], codec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoders = count_decoders(monkeypatch)
    await server.create_room("fwd")
    host, _ = await server.member("fwd", "h", "host")
    member, _ = await server.member("fwd", "v")
    publisher = await publish(host, "fwd", peers, codec=codec)
    assert (await member.event("stream.started"))["user"] == "h"
    await member.event("tracks", where=lambda e: e["publishers"] == ["h"])
    viewer = await subscribe(member, "fwd", "h", peers)
    await viewer.wait_frames(60, timeout=10)
    assert_in_order(viewer.got.numbers, 60)
    await until(lambda: viewer.got.audio_frames >= 10, timeout=5)

    sfu = sfu_of(server)
    (publication,) = [p for p in sfu.peers() if p.publisher is None]
    receivers = [t.receiver for t in publication.pc.getTransceivers()]
    assert len(receivers) == 2 and all(hooks.is_tapped(r) for r in receivers)
    # The viewer's two decoders (audio, video) are the only ones in the process.
    assert decoders.on_taps == 0 and len(decoders.queues) == 2
    assert sfu.feeds("fwd", "h")["video"].name == codec.lower()
    # Subscribed before the first keyframe reached the server: at most one request.
    assert publisher.keyframe_requests <= 1


async def test_cohost_stream_reaches_a_viewer_after_invite_and_accept(
    server: Server, peers: list[Publisher | Viewer]
) -> None:
    await server.create_room("co")
    host, _ = await server.member("co", "h", "host")
    guest, _ = await server.member("co", "c")
    member, _ = await server.member("co", "v")
    refused = await guest.call("rtc.publish", room="co", sdp="v=0\r\n")
    assert refused["code"] == "forbidden"
    await host.request("cohost.invite", room="co", user="c")
    await guest.event("cohost.invited")
    await guest.request("cohost.accept", room="co")
    await publish(guest, "co", peers)
    await member.event("tracks", where=lambda e: e["publishers"] == ["c"])
    viewer = await subscribe(member, "co", "c", peers)
    await viewer.wait_frames(30, timeout=10)
    assert_in_order(viewer.got.numbers, 30)

    sfu = sfu_of(server)
    assert sfu.peer_count == 2
    await host.request("cohost.end", room="co", user="c")
    await member.event("tracks", where=lambda e: e["publishers"] == [])
    await until(lambda: sfu.peer_count == 0, timeout=5)
    await until(lambda: viewer.got.video_ended, timeout=5)


async def test_mid_stream_viewer_starts_within_a_second_without_a_new_keyframe(
    server: Server, peers: list[Publisher | Viewer]
) -> None:
    await server.create_room("mid")
    host, _ = await server.member("mid", "h", "host")
    member, _ = await server.member("mid", "v")
    publisher = await publish(host, "mid", peers)
    await until(lambda: publisher.video.count >= 30, timeout=5)  # ~1 s of stream
    sfu = sfu_of(server)
    feed = sfu.feeds("mid", "h")["video"]
    assert 0 < feed.cached_frames <= 60
    plis_before = sfu.stats()["plis_sent"]

    started = time.monotonic()
    viewer = await subscribe(member, "mid", "h", peers)
    await viewer.wait_frames(1, timeout=1.0)
    assert viewer.got.first_frame_at is not None
    assert viewer.got.first_frame_at - started < 1.0
    await viewer.wait_frames(45, timeout=5)
    assert_in_order(viewer.got.numbers, 45)
    assert sfu.stats()["plis_sent"] == plis_before
    assert publisher.keyframe_requests == 0
    assert feed.cache_replays == 1


async def test_viewer_picture_loss_reaches_the_publisher_rate_limited(
    server: Server, peers: list[Publisher | Viewer]
) -> None:
    await server.create_room("pli")
    host, _ = await server.member("pli", "h", "host")
    member, _ = await server.member("pli", "v")
    publisher = await publish(host, "pli", peers)
    viewer = await subscribe(member, "pli", "h", peers)
    await viewer.wait_frames(10, timeout=10)
    await asyncio.sleep(1.1)  # past any earlier request's interval
    base = publisher.keyframe_requests

    answer = SessionDescription.parse(viewer.pc.remoteDescription.sdp)
    (video,) = [m for m in answer.media if m.kind == "video"]
    ssrc = offers.media_ssrc(video)
    assert ssrc is not None
    (receiver,) = [t.receiver for t in viewer.pc.getTransceivers() if t.kind == "video"]
    for _ in range(5):
        await hooks.send_pli(receiver, ssrc)
    # Five requests within the interval become two upstream: one now, one when it ends.
    await until(lambda: publisher.keyframe_requests == base + 2, timeout=3)
    first, second = publisher.keyframe_requested_at[base:]
    assert second - first >= 0.9
    await asyncio.sleep(1.2)
    assert publisher.keyframe_requests == base + 2
    assert sfu_of(server).stats()["keyframe_requests"]["viewer"] == 5


async def test_republish_keeps_viewers_receiving(
    server: Server, peers: list[Publisher | Viewer]
) -> None:
    await server.create_room("re")
    host, _ = await server.member("re", "h", "host")
    member, _ = await server.member("re", "v")
    first = await publish(host, "re", peers)
    viewer = await subscribe(member, "re", "h", peers)
    await until(lambda: first.video.count >= 45, timeout=5)
    await viewer.wait_frames(30, timeout=5)
    await publish(host, "re", peers)  # e.g. the page reconnected its media
    sfu = sfu_of(server)
    assert sfu.peer_count == 2  # the new publication and the same subscription
    await viewer.wait_frames(viewer.frames + 30, timeout=5)
    numbers = viewer.got.numbers
    restarts = [i for i in range(1, len(numbers)) if numbers[i] <= numbers[i - 1]]
    assert len(restarts) == 1, numbers  # the new publisher counts from its own start
    assert_in_order(numbers[: restarts[0]], 30)
    assert_in_order(numbers[restarts[0] :], 25)
    assert not member.of_type("stream.ended")


async def test_an_audio_only_publisher_is_heard_and_the_video_section_stays_inactive(
    server: Server, peers: list[Publisher | Viewer]
) -> None:
    await server.create_room("mic")
    host, _ = await server.member("mic", "h", "host")
    member, _ = await server.member("mic", "v")
    await publish(host, "mic", peers, video=False)
    viewer = await subscribe(member, "mic", "h", peers)
    answer = SessionDescription.parse(viewer.pc.remoteDescription.sdp)
    assert {m.kind: m.direction for m in answer.media} == {
        "audio": "sendonly",
        "video": "inactive",
    }
    await until(lambda: viewer.got.audio_frames >= 10, timeout=5)
    assert set(sfu_of(server).feeds("mic", "h")) == {"audio"}


async def test_mid_stream_viewer_of_a_large_stream_decodes_in_order(
    server: Server, peers: list[Publisher | Viewer]
) -> None:
    """A cache of 640x360 noisy frames is too large to replay in one burst: aiortc's
    receiver (512 packets) and the socket would overflow, and late repairs land on frames
    it already passed. The replay is paced instead, and the viewer starts from it."""
    await server.create_room("big")
    host, _ = await server.member("big", "h", "host")
    member, _ = await server.member("big", "v")
    publisher = await publish(host, "big", peers, width=640, height=360, noise=True)
    await until(lambda: publisher.video.count >= 40, timeout=10)
    feed = sfu_of(server).feeds("big", "h")["video"]
    assert sum(len(p.payload) for p in feed.cached_packets) > 4 * forward.REPLAY_SLICE_BYTES
    viewer = await subscribe(member, "big", "h", peers, noise_rows=360 // 4)
    await viewer.wait_frames(90, timeout=15)
    assert_in_order(viewer.got.numbers, 90)
    assert feed.cache_replays == 1 and viewer.got.numbers[0] < 40  # from the cache
    assert "expected" not in feed.keyframes.requests


async def test_packet_counts_only_grow_when_viewers_leave(
    server: Server, peers: list[Publisher | Viewer]
) -> None:
    await server.create_room("count")
    host, _ = await server.member("count", "h", "host")
    member, _ = await server.member("count", "v")
    await publish(host, "count", peers)
    viewer = await subscribe(member, "count", "h", peers)
    await viewer.wait_frames(20, timeout=10)
    sfu = sfu_of(server)
    sent = sfu.stats()["packets_out"]
    assert sent > 20 and sfu.stats()["packets_in"] > sent // 2
    await member.request("rtc.unsubscribe", room="count", publisher="h")
    await until(lambda: sfu.peer_count == 1, timeout=5)
    assert sfu.stats()["packets_out"] >= sent
    received = sfu.stats()["packets_in"]
    await host.request("rtc.unpublish", room="count")
    await until(lambda: sfu.peer_count == 0, timeout=5)
    assert sfu.stats()["packets_in"] >= received
