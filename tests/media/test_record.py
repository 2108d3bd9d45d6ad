"""Recording: a synthetic publisher streams while the host records; the files are remuxes.

The recorded file must open with ``av``, last about as long as the recording,
hold about as many frames as were sent, and carry the very packets the feed
forwarded (same codec, same sizes, in order): nothing was decoded or encoded.
The timeline holds the chat sent meanwhile, at its offset.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from media.forward import EncodedFrame, h264_nal_units
from media.peers import Publisher, Viewer
from media.record import RecorderTap
from tests.harness import Server, make_settings, running_server
from tests.media.conftest import publish, sfu_of, until

pytestmark = pytest.mark.netns

STREAM_S = 3.0


@pytest.fixture
async def rec_server(tmp_path: Path) -> AsyncIterator[Server]:
    settings = make_settings(rtc_ip=("127.0.0.1",), recordings_dir=str(tmp_path))
    async with running_server(settings) as srv:
        yield srv


def avcc_units(data: bytes) -> list[bytes]:
    """The NAL units of an MP4 (length-prefixed) H.264 packet."""
    units, at = [], 0
    while at + 4 <= len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        units.append(data[at + 4 : at + 4 + size])
        at += 4 + size
    return units


def sublist_at(small: list[bytes], big: list[bytes]) -> int:
    """Where ``small`` occurs contiguously in ``big`` (-1 if it does not)."""
    for start in range(len(big) - len(small) + 1):
        if big[start : start + len(small)] == small:
            return start
    return -1


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_recording_is_a_remux_of_the_forwarded_frames_with_chat_on_the_timeline(
    rec_server: Server, peers: list[Publisher | Viewer], tmp_path: Path, codec: str
) -> None:
    server = rec_server
    await server.create_room("rec")
    host, _ = await server.member("rec", "h", "host")
    member, _ = await server.member("rec", "v")
    refused = await member.call("rec.start", room="rec")
    assert refused["code"] == "forbidden"

    publisher = await publish(host, "rec", peers, codec=codec)
    await member.event("tracks", where=lambda e: e["publishers"] == ["h"])
    feed = sfu_of(server).feeds("rec", "h")["video"]
    forwarded: list[EncodedFrame] = []

    def seen(kind: str, frame: EncodedFrame, age: float) -> None:
        forwarded.append(frame)

    spy = RecorderTap(feed, seen)
    spy.start()
    await until(lambda: publisher.video.count >= 15, timeout=10)

    await host.request("rec.start", room="rec")
    started = time.time()
    await member.event("rec.started")
    _, snapshot = await server.member("rec", "late")
    assert snapshot["room"]["recording"] is True
    recording = server.node.recordings["rec"]
    await asyncio.sleep(1.0)
    await member.request("chat.send", room="rec", text="hello replay", cid="c1")
    chat_at = time.time() - started
    await asyncio.sleep(STREAM_S - 1.0)
    await host.request("rec.stop", room="rec")
    stopped = time.time() - started
    await member.event("rec.stopped")
    await until(lambda: recording.stopped is not None, timeout=5)
    spy.stop()

    manifest = json.loads(recording.manifest.read_text())
    (segment,) = manifest["segments"]
    assert segment["closed"] and segment["publisher"] == "h"
    offset = segment["offset"]
    assert -2.1 <= offset < 1.0  # negative: it began with the feed's cached keyframe
    path = recording.directory / segment["file"]
    assert path.suffix == (".mp4" if codec == "H264" else ".webm")
    assert path.name.startswith("rec_h_")

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == codec.lower()
        assert (video.codec_context.width, video.codec_context.height) == (320, 240)
        assert container.streams.audio[0].codec_context.name == "opus"
        assert container.duration is not None
        duration = container.duration / 1_000_000
        packets = [p for p in container.demux(video) if p.size]
    recorded = segment["frames"]["video"]
    assert len(packets) == recorded
    # From its first frame to the stop, at 30 fps.
    expected = stopped - offset
    assert expected - 0.5 <= duration <= expected + 0.3, (duration, expected)
    assert 30 * (expected - 0.5) <= recorded <= 30 * (expected + 0.3), (recorded, expected)
    stats = recording.stats()
    assert stats["dropped"] == 0
    share = stats["cpu_s"] / expected
    print(
        f"recording CPU ({codec}): {stats['cpu_s'] * 1000:.1f} ms"
        f" for {expected:.1f} s = {share:.2%}"
    )
    assert share < 0.05  # the writer thread: a few % of a core at most

    # The recorded packets are the forwarded frames, byte for byte (VP8 in WebM) or
    # with Annex B start codes turned into lengths (H.264 in MP4): same count, same order.
    if codec == "VP8":
        sent = [bytes(f.data) for f in forwarded]
        got = [bytes(p) for p in packets]
    else:
        sent = [b"".join(h264_nal_units(f.data)) for f in forwarded]
        got = [b"".join(avcc_units(bytes(p))) for p in packets]
    at = sublist_at(got, sent)
    assert at >= 0
    assert forwarded[at].keyframe

    lines = [json.loads(line) for line in recording.timeline.read_text().splitlines()]
    chats = [e for e in lines if e["t"] == "chat"]
    assert len(chats) == 1
    chat: dict[str, Any] = chats[0]
    assert chat["text"] == "hello replay" and chat["seq"] >= 1 and chat["ts"] > 0
    assert abs(chat["offset"] - chat_at) < 0.5, (chat["offset"], chat_at)
    assert lines[0]["t"] == "rec.started" and lines[0]["offset"] < 0.5
    assert lines[-1]["t"] == "rec.stopped"

    # The API lists it; the file is served with range requests under a signed link.
    status, listing = await server.api("GET", "/api/rooms/rec/recordings")
    assert status == 200
    (listed,) = listing["recordings"]
    (entry,) = listed["segments"]
    assert entry["file"] == segment["file"] and entry["size"] == path.stat().st_size
    assert listed["timeline"] == recording.timeline.name
    async with aiohttp.ClientSession() as http:
        ranged = {"Range": "bytes=0-99"}
        async with http.get(server.url + entry["url"], headers=ranged) as resp:
            assert resp.status == 206 and len(await resp.read()) == 100
        async with http.get(server.url + listed["timeline_url"]) as resp:
            assert resp.status == 200 and "hello replay" in await resp.text()
        forged = entry["url"].replace("sig=", "sig=0")
        async with http.get(server.url + forged) as resp:
            assert resp.status == 403


async def test_a_republish_starts_a_new_segment(
    rec_server: Server, peers: list[Publisher | Viewer]
) -> None:
    server = rec_server
    await server.create_room("seg")
    host, _ = await server.member("seg", "h", "host")
    await host.request("rec.start", room="seg")
    first = await publish(host, "seg", peers)
    recording = server.node.recordings["seg"]
    await until(lambda: first.video.count >= 45, timeout=10)
    await publish(host, "seg", peers)  # the page reconnected its media
    await until(lambda: len(recording.segments()) == 2, timeout=10)
    await asyncio.sleep(1.0)
    await host.request("rec.stop", room="seg")
    await until(lambda: recording.stopped is not None, timeout=5)
    segments = recording.segments()
    assert [s.closed for s in segments] == [True, True]
    assert segments[0].offset < segments[1].offset
    for segment in segments:
        with av.open(str(recording.directory / segment.file)) as container:
            count = sum(1 for p in container.demux(video=0) if p.size)
        assert count == segment.frames["video"] >= 10


async def test_a_cohost_gets_its_own_file_and_the_node_stopping_finalises_them(
    tmp_path: Path,
) -> None:
    settings = make_settings(rtc_ip=("127.0.0.1",), recordings_dir=str(tmp_path))
    made: list[Publisher | Viewer] = []
    async with running_server(settings) as server:
        await server.create_room("co")
        host, _ = await server.member("co", "h", "host")
        guest, _ = await server.member("co", "c")
        await host.request("rec.start", room="co")
        await publish(host, "co", made)
        recording = server.node.recordings["co"]
        await host.request("poll.create", room="co", question="Colour?", options=["red", "blue"])
        await host.request("product.pin", room="co", product={"id": "p1", "title": "Kit"})
        await asyncio.sleep(1.0)
        await host.request("cohost.invite", room="co", user="c")
        await guest.event("cohost.invited")
        await guest.request("cohost.accept", room="co")
        await publish(guest, "co", made)
        await until(lambda: "c" in recording.recorders, timeout=5)
        await until(lambda: len(recording.segments()) == 2, timeout=10)
        await asyncio.sleep(1.5)
        for peer in made:
            await peer.close()
    # The server stopped with the recording on: every file was finalised.
    assert recording.stopped is not None
    host_file, cohost_file = recording.segments()
    assert (host_file.publisher, cohost_file.publisher) == ("h", "c")
    assert host_file.closed and cohost_file.closed
    assert cohost_file.offset > host_file.offset + 0.9
    for segment in (host_file, cohost_file):
        with av.open(str(recording.directory / segment.file)) as container:
            count = sum(1 for p in container.demux(video=0) if p.size)
        assert count == segment.frames["video"] >= 15
    kinds = [json.loads(line)["t"] for line in recording.timeline.read_text().splitlines()]
    for kind in ("rec.started", "poll.opened", "product.pinned", "cohost.joined"):
        assert kind in kinds, kinds
    assert kinds.index("poll.opened") < kinds.index("cohost.joined")


async def test_record_when_live_records_each_stream_and_the_api_switches_recording(
    rec_server: Server, peers: list[Publisher | Viewer]
) -> None:
    server = rec_server
    await server.create_room("auto", record_when_live=True)
    host, snapshot = await server.member("auto", "h", "host")
    viewer, _ = await server.member("auto", "v")
    assert snapshot["room"]["record_when_live"] is True
    assert snapshot["room"]["recording"] is False  # nothing live yet

    publisher = await publish(host, "auto", peers)
    await viewer.event("rec.started")
    recording = server.node.recordings["auto"]
    await until(lambda: publisher.video.count >= 30, timeout=10)
    await host.request("rtc.unpublish", room="auto")
    await viewer.event("stream.ended")
    await viewer.event("rec.stopped")
    await until(lambda: recording.stopped is not None, timeout=5)
    (segment,) = recording.segments()
    assert segment.closed and segment.frames["video"] >= 10

    # The operator turns the setting off and records by hand over the API.
    path = "/api/rooms/auto/recording"
    status, body = await server.api("POST", path, {"record_when_live": False})
    assert (status, body) == (200, {"recording": False, "record_when_live": False})
    await viewer.event("rec.auto", where=lambda e: e["on"] is False)
    await publish(host, "auto", peers)
    await viewer.event("stream.started")
    assert "auto" not in server.node.recordings
    status, body = await server.api("POST", path, {"on": True})
    assert (status, body) == (200, {"recording": True, "record_when_live": False})
    await viewer.event("rec.started")
    second = server.node.recordings["auto"]
    assert second is not recording
    await until(lambda: len(second.segments()) == 1, timeout=10)
    status, body = await server.api("POST", path, {"on": False})
    assert (status, body) == (200, {"recording": False, "record_when_live": False})
    await viewer.event("rec.stopped")
    await until(lambda: second.stopped is not None, timeout=5)
    status, listed = await server.api("GET", "/api/rooms/auto/recordings")
    assert status == 200 and len(listed["recordings"]) == 2
