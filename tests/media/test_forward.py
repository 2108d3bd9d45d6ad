"""The fan-out on its own: keyframes, cache, bounded viewer queues, rate-limited requests."""

from __future__ import annotations

import asyncio
from fractions import Fraction

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


def test_h264_parameter_sets_are_put_before_an_idr_that_lacks_them() -> None:
    feed = Feed("video", RTCRtpCodecCapability(mimeType="video/H264", clockRate=90000))
    feed.start_source("pub")
    sps_pps_idr = b"\x00\x00\x00\x01\x67\xaa\x00\x00\x00\x01\x68\xbb\x00\x00\x00\x01\x65\xcc"
    feed.push(sps_pps_idr, 0, "pub")
    feed.push(b"\x00\x00\x00\x01\x65\xdd", 3000, "pub")  # an IDR on its own
    cached = feed.attach(ViewerTrack(feed))
    assert cached[0].data.startswith(b"\x00\x00\x00\x01\x67\xaa\x00\x00\x00\x01\x68\xbb")
    assert cached[0].data.endswith(b"\x65\xdd")


def _feed(**kw: int) -> tuple[Feed, list[str]]:
    feed = Feed("video", VP8, **kw)
    feed.start_source("pub")
    sent: list[str] = []
    feed.keyframes.send = lambda: sent.append("pli")
    return feed, sent


KEY = b"\x00\x00\x00\x9d\x01\x2a" + bytes(10)
DELTA = b"\x01" + bytes(15)


async def test_a_new_viewer_starts_from_the_cached_keyframe_without_a_request() -> None:
    feed, sent = _feed()
    feed.push(DELTA, 0, "pub")  # before any keyframe: not cached
    for n in range(5):
        feed.push(KEY if n == 0 else DELTA, 3000 * (n + 1), "pub")
    assert feed.cached_frames == 5
    viewer = ViewerTrack(feed)
    packets = [await viewer.recv() for _ in range(5)]
    assert bytes(packets[0]) == KEY and [p.pts for p in packets] == [3000 * n for n in range(1, 6)]
    assert packets[0].time_base == Fraction(1, 90000)
    assert sent == [] and feed.cache_replays == 1
    feed.push(DELTA, 18000, "pub")
    assert (await viewer.recv()).pts == 18000


async def test_without_a_cached_keyframe_a_viewer_waits_for_one_and_asks() -> None:
    feed, sent = _feed()
    viewer = ViewerTrack(feed)
    waiting = asyncio.ensure_future(viewer.recv())
    await asyncio.sleep(0)
    assert sent == ["pli"] and feed.keyframes.requests["join"] == 1
    feed.push(DELTA, 0, "pub")
    await asyncio.sleep(0)
    assert not waiting.done() and viewer.skipped == 1
    feed.push(KEY, 3000, "pub")
    assert bytes(await asyncio.wait_for(waiting, 1)) == KEY


async def test_cache_is_bounded_and_a_long_replay_asks_for_a_fresher_keyframe() -> None:
    feed, sent = _feed(cache_max_frames=10, cache_fresh_frames=4)
    feed.push(KEY, 0, "pub")
    for n in range(1, 6):
        feed.push(DELTA, n, "pub")
    assert len(feed.attach(ViewerTrack(feed))) == 6
    assert feed.keyframes.requests["stale_cache"] == 1 and sent == ["pli"]
    for n in range(6, 12):
        feed.push(DELTA, n, "pub")
    assert feed.cached_frames == 0  # past the bound: dropped until the next keyframe


async def test_a_slow_video_viewer_drops_its_queue_and_resumes_at_a_keyframe() -> None:
    feed, sent = _feed()
    feed.push(KEY, 0, "pub")
    slow = ViewerTrack(feed, limit=4)
    fast = ViewerTrack(feed, limit=100)
    await slow.recv()
    await fast.recv()
    for n in range(1, 10):
        feed.push(DELTA, n * 3000, "pub")  # never waits on the slow viewer
    assert slow.dropped == 4 and feed.keyframes.requests["overflow"] == 1
    assert fast.dropped == 0
    feed.push(KEY, 30000, "pub")
    assert bytes(await slow.recv()) == KEY
    assert [(await fast.recv()).pts for _ in range(9)] == [n * 3000 for n in range(1, 10)]


async def test_a_slow_audio_viewer_drops_its_oldest_frames() -> None:
    feed = Feed("audio", OPUS)
    feed.start_source("pub")
    viewer = ViewerTrack(feed, limit=3)
    feed.push(b"a", 0, "pub")  # before the first recv: the viewer has not joined yet
    waiting = asyncio.ensure_future(viewer.recv())
    await asyncio.sleep(0)
    for n in range(1, 6):
        feed.push(bytes([n]), n * 960, "pub")  # the waiting recv has not run yet
    assert (await waiting).pts == 2880
    assert [(await viewer.recv()).pts for _ in range(2)] == [3840, 4800]
    assert viewer.dropped == 2


async def test_a_republish_continues_timestamps_and_restarts_at_a_keyframe() -> None:
    feed, _ = _feed()
    feed.push(KEY, 0, "old")  # not the current source: ignored
    assert feed.frames_in == 0
    feed.push(KEY, 90000, "pub")
    viewer = ViewerTrack(feed)
    assert (await viewer.recv()).pts == 90000
    feed.start_source("new")
    feed.push(DELTA, 0, "new")
    feed.push(KEY, 3000, "new")
    feed.push(DELTA, 6000, "new")
    assert [(await viewer.recv()).pts for _ in range(2)] == [93000, 96000]
    feed.source_ended("pub")  # the old publication closing does not end the feed
    assert not feed.ended


async def test_an_ended_feed_ends_its_viewers_after_their_queue() -> None:
    feed, _ = _feed()
    feed.push(KEY, 0, "pub")
    viewer = ViewerTrack(feed)
    waiting = asyncio.ensure_future(viewer.recv())
    await asyncio.sleep(0)
    feed.source_ended("pub")
    assert bytes(await waiting) == KEY
    with pytest.raises(MediaStreamError):
        await viewer.recv()
    late = ViewerTrack(feed)
    with pytest.raises(MediaStreamError):
        await late.recv()


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
