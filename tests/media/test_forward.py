"""The fan-out on its own: keyframes, cache, bounded viewer queues, rate-limited requests."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from typing import Any

import av
import pytest
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from media.forward import (
    Feed,
    KeyframeRequester,
    ViewerTrack,
    h264_nal_units,
    is_keyframe,
)
from media.peers import draw_counter

VP8 = RTCRtpCodecCapability(mimeType="video/VP8", clockRate=90000)
OPUS = RTCRtpCodecCapability(mimeType="audio/opus", clockRate=48000, channels=2)


def encode(codec: str, frames: int, keyframe_at: tuple[int, ...] = ()) -> list[bytes]:
    """Real encoded frames (the first is a keyframe), as a publisher would send them."""
    context = av.CodecContext.create(codec, "w")
    context.width, context.height, context.pix_fmt = 64, 64, "yuv420p"
    context.time_base = Fraction(1, 30)
    context.options = {"tune": "zerolatency"} if codec == "libx264" else {}
    out = []
    for n in range(frames):
        frame = draw_counter(n, 64, 64)
        frame.pts = n
        if n in keyframe_at:
            frame.pict_type = av.video.frame.PictureType.I
        out.append(b"".join(bytes(p) for p in context.encode(frame)))
    out[-1] += b"".join(bytes(p) for p in context.encode(None))
    return [data for data in out if data]


def test_vp8_keyframes_are_recognised() -> None:
    frames = encode("libvpx", 4)
    assert [is_keyframe("VP8", f) for f in frames] == [True, False, False, False]


def test_h264_idr_frames_are_recognised() -> None:
    frames = encode("libx264", 4)
    assert is_keyframe("H264", frames[0]) and not is_keyframe("H264", frames[-1])
    types = {unit[0] & 0x1F for unit in h264_nal_units(frames[0])}
    assert {5, 7, 8} <= types
    assert is_keyframe("opus", b"\x00")


async def test_h264_parameter_sets_are_put_before_an_idr_that_lacks_them() -> None:
    feed = Feed("video", RTCRtpCodecCapability(mimeType="video/H264", clockRate=90000))
    feed.start_source("pub")
    sps_pps_idr = b"\x00\x00\x00\x01\x67\xaa\x00\x00\x00\x01\x68\xbb\x00\x00\x00\x01\x65\xcc"
    feed.push(sps_pps_idr, 0, "pub")
    feed.push(b"\x00\x00\x00\x01\x65\xdd", 3000, "pub")  # an IDR on its own
    first = bytes(await recv(ViewerTrack(feed)))
    assert first.startswith(b"\x00\x00\x00\x01\x67\xaa\x00\x00\x00\x01\x68\xbb")
    assert first.endswith(b"\x65\xdd")


def _feed(**kw: Any) -> tuple[Feed, list[str]]:
    feed = Feed("video", VP8, **kw)
    feed.start_source("pub")
    sent: list[str] = []
    feed.keyframes.send = lambda: sent.append("pli")
    return feed, sent


async def recv(viewer: ViewerTrack) -> av.Packet[Any]:
    return await asyncio.wait_for(viewer.recv(), 1)


KEY = b"\x00\x00\x00\x9d\x01\x2a" + bytes(10)
DELTA = b"\x01" + bytes(15)


async def test_a_new_viewer_starts_from_a_fresh_cache_at_once_without_a_request() -> None:
    feed, sent = _feed()
    feed.push(DELTA, 0, "pub")  # before any keyframe: not cached
    for n in range(5):
        feed.push(KEY if n == 0 else DELTA, 3000 * (n + 1), "pub")
    assert feed.cached_frames == 5
    viewer = ViewerTrack(feed)
    packets = [await recv(viewer) for _ in range(5)]
    assert bytes(packets[0]) == KEY and packets[0].time_base == Fraction(1, 90000)
    # Replayed one tick apart, ending at the newest frame's timestamp: a fast catch-up.
    assert [p.pts for p in packets] == [14996, 14997, 14998, 14999, 15000]
    assert sent == [] and feed.cache_replays == 1
    feed.push(DELTA, 18000, "pub")
    assert (await recv(viewer)).pts == 18000


async def test_without_a_cached_keyframe_a_viewer_waits_for_one_and_asks_again() -> None:
    feed, sent = _feed(keyframe_wait_s=0.02)
    feed.keyframes.interval = 0.01
    viewer = ViewerTrack(feed)
    waiting = asyncio.ensure_future(viewer.recv())
    await asyncio.sleep(0)
    assert sent == ["pli"] and feed.keyframes.requests["join"] == 1
    feed.push(DELTA, 0, "pub")
    await asyncio.sleep(0.1)
    assert not waiting.done() and viewer.skipped == 1
    assert feed.keyframes.requests["retry"] >= 2 and len(sent) >= 3  # a lost PLI is repeated
    feed.push(KEY, 3000, "pub")
    assert bytes(await asyncio.wait_for(waiting, 1)) == KEY
    retries = feed.keyframes.requests["retry"]
    await asyncio.sleep(0.1)
    assert feed.keyframes.requests["retry"] == retries  # nobody waits any more


async def test_a_stale_cache_asks_for_a_keyframe_first_and_is_replayed_if_none_comes() -> None:
    feed, sent = _feed(cache_fresh_frames=4, keyframe_wait_s=0.05)
    feed.push(KEY, 3000, "pub")
    for n in range(2, 7):
        feed.push(DELTA, 3000 * n, "pub")
    viewer = ViewerTrack(feed)
    waiting = asyncio.ensure_future(viewer.recv())
    await asyncio.sleep(0.01)
    assert feed.keyframes.requests["stale_cache"] == 1 and sent == ["pli"]
    assert not waiting.done()
    assert bytes(await asyncio.wait_for(waiting, 1)) == KEY  # after keyframe_wait_s
    assert [(await recv(viewer)).pts for _ in range(5)] == [17996, 17997, 17998, 17999, 18000]


async def test_a_stale_cache_is_not_replayed_when_the_keyframe_comes_in_time() -> None:
    feed, _ = _feed(cache_fresh_frames=2, keyframe_wait_s=0.05)
    for n, data in enumerate([KEY, DELTA, DELTA, DELTA]):
        feed.push(data, 3000 * n, "pub")
    viewer = ViewerTrack(feed)
    waiting = asyncio.ensure_future(viewer.recv())
    await asyncio.sleep(0.01)
    feed.push(KEY, 12000, "pub")
    assert (await asyncio.wait_for(waiting, 1)).pts == 12000
    await asyncio.sleep(0.1)
    assert feed.cache_replays == 0 and viewer.frames_out == 1


def test_the_cache_is_bounded() -> None:
    feed, _ = _feed(cache_max_frames=10)
    feed.push(KEY, 0, "pub")
    for n in range(1, 10):
        feed.push(DELTA, n, "pub")
    assert feed.cached_frames == 10
    feed.push(DELTA, 10, "pub")
    assert feed.cached_frames == 0  # past the bound: nothing until the next keyframe
    feed.push(KEY, 11, "pub")
    assert feed.cached_frames == 1


async def test_a_slow_video_viewer_drops_its_queue_and_resumes_at_a_keyframe() -> None:
    feed, _ = _feed()
    feed.push(KEY, 0, "pub")
    slow = ViewerTrack(feed, limit=4)
    fast = ViewerTrack(feed, limit=100)
    await recv(slow)
    await recv(fast)
    for n in range(1, 10):
        feed.push(DELTA, n * 3000, "pub")  # never waits on the slow viewer
    assert slow.dropped == 4 and feed.keyframes.requests["overflow"] == 1
    assert fast.dropped == 0
    feed.push(KEY, 30000, "pub")
    assert bytes(await recv(slow)) == KEY
    assert [(await recv(fast)).pts for _ in range(9)] == [n * 3000 for n in range(1, 10)]


async def test_a_slow_audio_viewer_drops_its_oldest_frames() -> None:
    feed = Feed("audio", OPUS)
    feed.start_source("pub")
    viewer = ViewerTrack(feed, limit=3)
    feed.push(b"a", 0, "pub")  # before the first recv: the viewer has not joined yet
    waiting = asyncio.ensure_future(viewer.recv())
    await asyncio.sleep(0)
    for n in range(1, 6):
        feed.push(bytes([n]), n * 960, "pub")  # the waiting recv has not run yet
    assert (await asyncio.wait_for(waiting, 1)).pts == 2880
    assert [(await recv(viewer)).pts for _ in range(2)] == [3840, 4800]
    assert viewer.dropped == 2


async def test_a_republish_continues_timestamps_and_restarts_at_a_keyframe() -> None:
    feed, _ = _feed()
    feed.push(KEY, 0, "old")  # not the current source: ignored
    assert feed.frames_in == 0
    feed.push(KEY, 90000, "pub")
    viewer = ViewerTrack(feed)
    assert (await recv(viewer)).pts == 90000
    feed.start_source("new")
    feed.push(DELTA, 0, "new")
    feed.push(KEY, 3000, "new")
    feed.push(DELTA, 6000, "new")
    assert [(await recv(viewer)).pts for _ in range(2)] == [93000, 96000]
    feed.source_ended("pub")  # the old publication closing does not end the feed
    assert not feed.ended


async def test_an_ended_feed_ends_its_viewers_after_their_queue() -> None:
    feed, _ = _feed()
    feed.push(KEY, 0, "pub")
    viewer = ViewerTrack(feed)
    waiting = asyncio.ensure_future(viewer.recv())
    await asyncio.sleep(0)
    feed.source_ended("pub")
    assert bytes(await asyncio.wait_for(waiting, 1)) == KEY
    with pytest.raises(MediaStreamError):
        await recv(viewer)
    late = ViewerTrack(feed)
    with pytest.raises(MediaStreamError):
        await recv(late)


async def test_keyframe_requests_are_rate_limited_and_never_lost() -> None:
    now = [100.0]
    sent: list[float] = []
    requester = KeyframeRequester(interval=0.05, clock=lambda: now[0])
    requester.send = lambda: sent.append(now[0])
    requester.request("viewer")
    requester.request("viewer")
    requester.request("join")
    assert sent == [100.0]
    now[0] = 100.05
    await asyncio.sleep(0.1)
    assert sent == [100.0, 100.05]
    assert requester.requests == {"viewer": 2, "join": 1} and requester.sent == 2
    requester.request("viewer")
    requester.close()
    await asyncio.sleep(0.1)
    assert len(sent) == 2
