"""The recorder's pure parts, and the recorder itself fed by a Feed without any network."""

from __future__ import annotations

import asyncio
import json
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from media.forward import Feed
from media.record import (
    PublisherRecorder,
    RoomRecording,
    container_for,
    list_recordings,
    recording_name,
    room_dir,
    safe,
    segment_name,
    stamp,
    timeline_offset,
    vp8_size,
)

START = 1795466096.25  # 2026-11-23T20:34:56.250Z


def test_names_carry_room_publisher_and_start_time() -> None:
    assert stamp(START) == "20261123T203456.250Z"
    assert recording_name("shop-1", START) == "shop-1_20261123T203456.250Z"
    name = segment_name("shop-1", "host", START, "webm")
    assert name == "shop-1_host_20261123T203456.250Z.webm"
    assert segment_name("a/b", "../x", START, "mp4") == "a_b__x_20261123T203456.250Z.mp4"
    assert safe("") == "_" and safe("ok_-9") == "ok_-9"


def test_rooms_whose_safe_names_collide_get_their_own_folders(tmp_path: Path) -> None:
    assert room_dir(tmp_path, "a b") != room_dir(tmp_path, "a_b")
    assert room_dir(tmp_path, "a b").parent == tmp_path
    assert room_dir(tmp_path, "a b").name.startswith("a_b-")


def test_container_follows_the_video_codec() -> None:
    assert container_for("vp8") == ("webm", "webm")
    assert container_for("H264") == ("mp4", "mp4")
    assert container_for(None) == ("webm", "webm")


def test_timeline_offsets_are_seconds_from_the_start_never_negative() -> None:
    assert timeline_offset(100.0, 103.2504) == 3.25
    assert timeline_offset(100.0, 99.0) == 0.0


def vp8_packets(count: int, keyframe_every: int = 60) -> list[bytes]:
    codec = av.CodecContext.create("libvpx", "w")
    assert isinstance(codec, av.VideoCodecContext)
    codec.width, codec.height, codec.pix_fmt = 320, 240, "yuv420p"
    codec.time_base = Fraction(1, 30)
    codec.gop_size = keyframe_every
    codec.bit_rate = 500_000
    out: list[bytes] = []
    for n in range(count):
        pixels = np.zeros((360, 320), dtype=np.uint8)
        pixels[(n * 4) % 240 : (n * 4) % 240 + 8] = 255  # a moving bar: cheap to encode
        frame = av.VideoFrame.from_ndarray(pixels, format="yuv420p")
        frame.pts = n
        out += [bytes(p) for p in codec.encode(frame)]
    out += [bytes(p) for p in codec.encode(None)]
    return out


def test_vp8_size_reads_a_keyframe_header() -> None:
    first, second = vp8_packets(2)
    assert vp8_size(first) == (320, 240)
    assert vp8_size(second) is None


def video_feed() -> Feed:
    return Feed("video", RTCRtpCodecCapability("video/VP8", 90000))


def audio_feed() -> Feed:
    return Feed("audio", RTCRtpCodecCapability("audio/opus", 48000, 2))


async def test_recording_writes_the_packets_unchanged_and_notes_events(tmp_path: Path) -> None:
    packets = vp8_packets(150)
    opus = b"\xfc" + b"\x00" * 40  # an Opus packet (TOC byte + payload), never decoded here
    video, audio = video_feed(), audio_feed()
    source = object()
    video.start_source(source)
    audio.start_source(source)
    recording = RoomRecording("shop", tmp_path)
    recording.add_publisher("h", {"video": video, "audio": audio})
    began = time.monotonic()
    for n, data in enumerate(packets):
        video.push(data, 1000 + n * 3000, source)
        audio.push(opus, 5000 + n * 1600, source)
        audio.push(opus, 5000 + n * 1600 + 960, source)
        if n == 75:
            recording.note({"t": "chat", "seq": 1, "ts": 1, "text": "hi"})
        await asyncio.sleep(0.001)
    pushing_s = time.monotonic() - began
    await recording.stop()

    (segment,) = recording.segments()
    assert segment.closed and segment.frames == {"video": 150, "audio": 300}
    with av.open(str(recording.directory / segment.file)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "vp8"
        got = [bytes(p) for p in container.demux(stream) if p.size]
    assert got == packets  # byte for byte: a remux
    (line,) = [json.loads(x) for x in recording.timeline.read_text().splitlines()]
    assert line["t"] == "chat" and 0 < line["offset"] <= pushing_s + 0.1
    (listed,) = list_recordings(tmp_path, "shop")
    assert listed["segments"][0]["size"] == (recording.directory / segment.file).stat().st_size
    assert listed["stopped"] is not None
    assert list_recordings(tmp_path, "other") == []


async def test_a_recorder_that_falls_behind_drops_and_counts_and_never_blocks(
    tmp_path: Path,
) -> None:
    packets = vp8_packets(120, keyframe_every=30)
    feed = video_feed()
    source = object()
    feed.start_source(source)
    recorder = PublisherRecorder("r", "h", {"video": feed}, tmp_path, time.time(), queue_frames=10)
    recorder.start()
    began = time.perf_counter()
    for n, data in enumerate(packets):  # no await: the writer cannot run meanwhile
        feed.push(data, n * 3000, source)
    assert time.perf_counter() - began < 0.5
    assert recorder.dropped > 0
    await recorder.stop()
    (segment,) = recorder.segments
    # It kept the first 10, then waited for a keyframe each time it overflowed.
    assert segment.frames["video"] == 10 and recorder.written == 10


async def test_recording_cpu_is_a_few_percent_of_a_core_per_stream(tmp_path: Path) -> None:
    """30 fps of 500 kbit/s VP8 and 50 fps Opus: the writer's CPU time per media second."""
    packets = vp8_packets(90, keyframe_every=90) * 4  # 12 s of media
    opus = b"\xfc" + b"\x00" * 80
    video, audio = video_feed(), audio_feed()
    source = object()
    video.start_source(source)
    audio.start_source(source)
    feeds = {"video": video, "audio": audio}
    # Fed faster than real time: a queue that holds it all, to measure the writing only.
    recorder = PublisherRecorder("r", "h", feeds, tmp_path, time.time(), queue_frames=10_000)
    recorder.start()
    for n, data in enumerate(packets):
        video.push(data, n * 3000, source)
        audio.push(opus, n * 1600, source)
        audio.push(opus, n * 1600 + 960, source)
        if n % 30 == 0:
            await asyncio.sleep(0)
    await recorder.stop()
    media_s = len(packets) / 30
    share = recorder.cpu_s / media_s
    print(f"recording CPU: {recorder.cpu_s * 1000:.1f} ms for {media_s:.0f} s = {share:.2%}")
    assert recorder.written == len(packets) * 3
    assert share < 0.05
