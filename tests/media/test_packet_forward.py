"""Packet-level fan-out on its own: real packetized frames, a recorded send function."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
import pytest
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters

from media import forward
from media.forward import Feed, PacketViewer
from media.rtp import RtpWriter, sequence_number, starts_keyframe
from tests.media.test_forward import OPUS, VP8, encode

H264 = RTCRtpCodecCapability(mimeType="video/H264", clockRate=90000)


def packetize(codec: str, frames: list[bytes]) -> list[list[bytes]]:
    """RTP payloads of each frame, as aiortc's own sender would cut them."""
    name = "VP8" if codec == "libvpx" else "H264"
    params: dict[str, Any] = {} if name == "VP8" else {"packetization-mode": "1"}
    encoder = get_encoder(
        RTCRtpCodecParameters(mimeType=f"video/{name}", clockRate=90000, parameters=params)
    )
    out = []
    for n, data in enumerate(frames):
        packet = av.Packet(data)
        packet.pts = n * 3000
        packet.time_base = Fraction(1, 90000)
        payloads, _ = encoder.pack(packet)
        out.append(payloads)
    return out


@pytest.mark.parametrize(("codec", "name"), [("libvpx", "vp8"), ("libx264", "h264")])
def test_only_the_first_packet_of_a_keyframe_starts_one(codec: str, name: str) -> None:
    frames = encode(codec, 6, keyframe_at=(3,))
    packets = packetize(codec, frames)
    starts = [[starts_keyframe(name, p) for p in frame] for frame in packets]
    assert starts[0][0] and starts[3][0]
    for n, frame in enumerate(starts):
        later = frame[1:] if name == "vp8" else []
        assert not any(later), (n, frame)
        if n not in (0, 3):
            assert not any(frame), (n, frame)


class Link:
    """A stand-in for ``hooks.PacketSender``: records what would go on the wire."""

    def __init__(self, rtx: tuple[int, int] | None = None, accept: bool = True) -> None:
        self.sent: list[bytes] = []
        self.accept = accept
        self.rtx = rtx
        self.clocked: list[int] = []
        self.packets = 0
        self.octets = 0

    def writer(self) -> RtpWriter:
        return RtpWriter(ssrc=0xABCDEF01, payload_type=100, extension=b"")

    def transmitter(self) -> Callable[[bytes], bool]:
        def transmit(data: bytes) -> bool:
            if self.accept:
                self.sent.append(data)
            return self.accept

        return transmit

    def clock(self, rtp_timestamp: int, ntp_time: int) -> None:
        self.clocked.append(rtp_timestamp)

    def count(self, packets: int, payload_bytes: int) -> None:
        self.packets += packets
        self.octets += payload_bytes


def started_feed() -> Feed:
    """A video feed whose publisher is "pub"."""
    feed = Feed("video", VP8)
    feed.start_source("pub")
    return feed


def attach(feed: Feed, link: Link | None = None, **viewer_args: int) -> tuple[Link, PacketViewer]:
    """A packet viewer on ``link`` (a new one by default), joined to ``feed``."""
    link = link or Link()
    viewer = PacketViewer(feed, link, **viewer_args)
    feed.attach_packets(viewer)
    return link, viewer


def push_frames(
    feed: Feed, packets: list[list[bytes]], first_seq: int = 1000, first_frame: int = 0
) -> int:
    seq = first_seq
    for n, payloads in enumerate(packets, start=first_frame):
        for i, payload in enumerate(payloads):
            marker = int(i == len(payloads) - 1)
            feed.push_packet(seq % 65536, 5000 + n * 3000, marker, payload, "pub")
            seq += 1
    return seq


def timestamps(sent: list[bytes]) -> list[int]:
    return [struct.unpack_from("!I", p, 4)[0] for p in sent]


async def test_viewer_waits_for_a_keyframe_then_gets_every_packet_renumbered() -> None:
    frames = packetize("libvpx", encode("libvpx", 6, keyframe_at=(3,)))
    feed = Feed("video", VP8, cache_fresh_frames=0)  # no replay: wait for a keyframe
    feed.start_source("pub")
    link = Link()
    viewer = PacketViewer(feed, link)
    push_frames(feed, frames[:1])
    feed.attach_packets(viewer)  # cache stale (fresh limit 0): waits
    assert viewer.waiting and feed.keyframes.requests["stale_cache"] == 1
    push_frames(feed, frames[1:3], first_seq=2000, first_frame=1)
    assert link.sent == [] and viewer.skipped == sum(len(f) for f in frames[1:3])
    push_frames(feed, frames[3:], first_seq=3000, first_frame=3)
    expected = sum(len(f) for f in frames[3:])
    assert len(link.sent) == expected == viewer.packets_out == link.packets
    seqs = [sequence_number(p) for p in link.sent]
    assert seqs == [(seqs[0] + n) % 65536 for n in range(expected)]
    assert all(p[8:12] == b"\xab\xcd\xef\x01" and p[1] & 0x7F == 100 for p in link.sent)
    assert [p[12:] for p in link.sent] == [p for f in frames[3:] for p in f]
    assert len(link.clocked) == 3  # once per frame
    feed.end()
    assert viewer.ended


async def test_fresh_cache_is_replayed_squeezed_then_live_packets_follow() -> None:
    frames = packetize("libvpx", encode("libvpx", 5))
    feed = started_feed()
    next_seq = push_frames(feed, frames[:4])
    link, _ = attach(feed)
    replayed = sum(len(f) for f in frames[:4])
    assert len(link.sent) == replayed and feed.cache_replays == 1
    ts = timestamps(link.sent)
    distinct = sorted(set(ts))
    assert distinct == [distinct[0] + n for n in range(4)]  # one tick apart
    push_frames(feed, frames[4:], first_seq=next_seq, first_frame=4)
    live = timestamps(link.sent[replayed:])
    assert set(live) == {distinct[-1] + 3000}  # the live spacing resumes
    assert feed.keyframes.requests == {}


async def test_nack_is_answered_from_history_plain_or_on_rtx() -> None:
    frames = packetize("libvpx", encode("libvpx", 3))
    for rtx in (None, (101, 0x11111111)):
        feed = started_feed()
        link, viewer = attach(feed, Link(rtx=rtx), history=8)
        push_frames(feed, frames)
        first = link.sent[0]
        viewer.retransmit(sequence_number(first))
        again = link.sent[-1]
        if rtx is None:
            assert again == first
        else:
            assert again[1] & 0x7F == 101 and again[8:12] == b"\x11\x11\x11\x11"
            assert again[12:14] == first[2:4] and again[14:] == first[12:]
        assert viewer.retransmitted == 1
        viewer.retransmit((sequence_number(first) - 1) % 65536)  # never sent: ignored
        assert viewer.retransmitted == 1


async def test_a_socket_that_cannot_take_more_drops_packets_for_that_viewer_only() -> None:
    frames = packetize("libvpx", encode("libvpx", 3))
    feed = started_feed()
    stuck, fine = Link(accept=False), Link()
    viewers = [PacketViewer(feed, stuck), PacketViewer(feed, fine)]
    for viewer in viewers:
        feed.attach_packets(viewer)
    push_frames(feed, frames)
    total = sum(len(f) for f in frames)
    assert viewers[0].dropped == total and viewers[0].packets_out == 0
    assert len(fine.sent) == total and viewers[1].dropped == 0


async def test_republish_continues_sequence_and_timestamps_from_a_keyframe() -> None:
    frames = packetize("libvpx", encode("libvpx", 3))
    feed = started_feed()
    link, _ = attach(feed)
    push_frames(feed, frames, first_seq=100)
    before = len(link.sent)
    last_seq, last_ts = sequence_number(link.sent[-1]), timestamps(link.sent)[-1]
    feed.start_source("pub2")
    for n, payloads in enumerate(frames):
        for i, payload in enumerate(payloads):
            marker = int(i == len(payloads) - 1)
            feed.push_packet(40_000 + n * 10 + i, 9_999_999 + n, marker, payload, "pub2")
    after = link.sent[before:]
    assert sequence_number(after[0]) == (last_seq + 1) % 65536
    assert timestamps(after)[0] == last_ts + 3000


async def test_audio_viewer_starts_at_any_packet() -> None:
    feed = Feed("audio", OPUS)
    feed.start_source("pub")
    link, viewer = attach(feed)
    for n in range(5):
        feed.push_packet(n, n * 960, 1, b"\xfc\x00", "pub")
    assert len(link.sent) == 5 and not viewer.waiting


VP8_KEY_PACKET = b"\x10\x50\x02\x00\x9d\x01\x2a\x80\x02\xe0\x01"
VP8_DELTA_PACKET = b"\x10\x31\x02\x00" + b"\x00" * 7


def push_synthetic(feed: Feed, frames: int, start: int = 0, key_at: tuple[int, ...] = ()) -> None:
    for n in range(start, start + frames):
        payload = VP8_KEY_PACKET if n in key_at else VP8_DELTA_PACKET
        feed.push_packet(n, n * 3000, 1, payload, "pub")


async def test_keyframe_is_asked_for_at_subscribe_and_serves_the_viewer_once_connected() -> None:
    feed = started_feed()
    push_synthetic(feed, 70, key_at=(0,))  # a stale cache: 70 frames since the keyframe
    feed.expect_viewer()
    feed.expect_viewer()  # a second subscriber at once: still one request
    assert feed.keyframes.requests == {"expected": 1}
    push_synthetic(feed, 3, start=70, key_at=(70,))  # the keyframe, while they connect
    link = Link()
    feed.attach_packets(PacketViewer(feed, link))  # connected: starts from the cache
    assert feed.cache_replays == 1 and len(link.sent) == 3
    assert feed.keyframes.requests == {"expected": 1}
    feed.keyframes.close()


async def test_a_fresh_cache_needs_no_request_and_a_viewer_faster_than_the_keyframe_waits() -> None:
    feed = started_feed()
    push_synthetic(feed, 10, key_at=(0,))
    feed.expect_viewer()
    assert feed.keyframes.requests == {}  # fresh enough when it connects

    stale = Feed("video", VP8)
    stale.start_source("pub")
    push_synthetic(stale, 70, key_at=(0,))
    stale.expect_viewer()
    link = Link()
    viewer = PacketViewer(stale, link)
    stale.attach_packets(viewer)  # connected before the keyframe came: waits, no new request
    assert viewer.waiting and stale.keyframes.requests == {"expected": 1}
    push_synthetic(stale, 2, start=70, key_at=(70,))
    assert not viewer.waiting and len(link.sent) == 2
    stale.end()
    feed.end()


async def test_nack_past_the_history_is_rebuilt_from_the_keyframe_cache() -> None:
    frames = packetize("libvpx", encode("libvpx", 8))
    feed = started_feed()
    push_frames(feed, frames[:6])
    link, viewer = attach(feed, history=4)  # far shorter than the replay
    replayed = list(link.sent)
    assert len(replayed) > 4
    for original in replayed[:-4]:  # gone from the history: rebuilt, byte for byte
        viewer.retransmit(sequence_number(original))
        assert link.sent[-1] == original
    assert viewer.retransmitted == len(replayed) - 4
    before = len(link.sent)
    viewer.retransmit((sequence_number(replayed[0]) - 1) % 65536)  # before our first: no
    viewer.retransmit((sequence_number(replayed[-1]) + 1) % 65536)  # not sent yet: no
    assert len(link.sent) == before


async def test_nack_from_before_a_restart_is_not_answered_with_the_wrong_packet() -> None:
    frames = packetize("libvpx", encode("libvpx", 3))
    feed = started_feed()
    link, viewer = attach(feed, history=2)
    push_frames(feed, frames, first_seq=100)
    first = sequence_number(link.sent[0])
    feed.start_source("pub2")  # a republish: the numbering restarts at the next keyframe
    for n, payloads in enumerate(frames):
        for i, payload in enumerate(payloads):
            marker = int(i == len(payloads) - 1)
            feed.push_packet(9000 + n * 10 + i, 777 + n * 3000, marker, payload, "pub2")
    before = len(link.sent)
    viewer.retransmit(first)  # sent under the old numbering, out of the history
    assert len(link.sent) == before


async def test_a_viewer_starting_at_a_late_keyframe_packet_gets_the_rest_of_it() -> None:
    feed = Feed("video", VP8, cache_fresh_frames=0)
    feed.start_source("pub")
    link = Link()
    viewer = PacketViewer(feed, link)
    push_synthetic(feed, 3, key_at=(0,))
    feed.attach_packets(viewer)  # the cache is stale: it waits for a keyframe
    keyframe = [VP8_KEY_PACKET] + [b"\x00" + bytes([n]) * 20 for n in range(1, 5)]
    # The keyframe's first packet is lost on the way in and retransmitted after the rest.
    for n in range(1, 5):
        feed.push_packet(10 + n, 30_000, int(n == 4), keyframe[n], "pub")
    assert link.sent == [] and viewer.waiting
    feed.push_packet(10, 30_000, 0, keyframe[0], "pub")
    assert [p[12:] for p in link.sent] == keyframe
    seqs = [sequence_number(p) for p in link.sent]
    assert seqs == [(seqs[0] + n) % 65536 for n in range(5)]
    assert [p.payload for p in feed.cached_packets] == keyframe  # the cache has all of it
    feed.push_packet(15, 33_000, 1, VP8_DELTA_PACKET, "pub")
    assert sequence_number(link.sent[-1]) == (seqs[0] + 5) % 65536
    feed.end()


async def test_a_packet_that_comes_twice_is_sent_on_once() -> None:
    frames = packetize("libvpx", encode("libvpx", 2))
    feed = started_feed()
    link, _ = attach(feed)
    push_frames(feed, frames)
    sent = len(link.sent)
    feed.push_packet(1000, 5000, 0, frames[0][0], "pub")  # a retransmission crossing it
    assert len(link.sent) == sent and feed.duplicates == 1
    feed.end()


def push_big_frame(
    feed: Feed, packets: int, seq: int = 0, ts: int = 3000, source: str = "pub"
) -> int:
    """One keyframe of ``packets`` packets of about 1.1 KB; returns the next sequence number."""
    for n in range(packets):
        payload = VP8_KEY_PACKET + b"\x00" * 1100 if n == 0 else b"\x10" + b"\x00" * 1110
        feed.push_packet(seq + n, ts, int(n == packets - 1), payload, source)
    return seq + packets


async def wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polling a plain object
            await asyncio.sleep(0.005)


async def test_a_cache_too_long_to_catch_up_on_waits_for_the_keyframe() -> None:
    feed = Feed("video", VP8, keyframe_wait_s=0.01)
    feed.start_source("pub")
    push_big_frame(feed, 1000)  # past CACHE_FRESH_BYTES
    assert sum(len(p.payload) for p in feed.cached_packets) > forward.CACHE_FRESH_BYTES
    link, viewer = attach(feed)
    await asyncio.sleep(0.05)  # past the keyframe wait: still waiting, asked again
    assert viewer.waiting and link.sent == [] and feed.keyframes.requests["retry"] >= 1
    viewer.waiting_since -= forward.KEYFRAME_GIVE_UP_S  # waited long: the cache after all
    await wait_for(lambda: len(link.sent) == 1000)
    assert not viewer.waiting
    feed.end()


async def test_a_replay_is_paced_and_live_packets_follow_it_in_order() -> None:
    feed = started_feed()
    next_seq = push_big_frame(feed, 300)  # about 330 KB: several slices
    link, viewer = attach(feed)
    first_slice = sum(len(p) - 12 for p in link.sent)
    assert 0 < first_slice < forward.REPLAY_FIRST_SLICE_BYTES + 1200 and viewer.replaying
    for n in range(20):  # live packets while the replay is under way: they wait for it
        feed.push_packet(next_seq + n, 6000, int(n == 19), b"\x10" + bytes([n]) * 50, "pub")
    assert len(link.sent) < 300
    await wait_for(lambda: not viewer.replaying)
    assert len(link.sent) == 320
    seqs = [sequence_number(p) for p in link.sent]
    assert seqs == [(seqs[0] + n) % 65536 for n in range(320)]
    assert [p[12:] for p in link.sent[300:]] == [b"\x10" + bytes([n]) * 50 for n in range(20)]
    feed.push_packet(next_seq + 20, 9000, 1, VP8_DELTA_PACKET, "pub")  # live again: at once
    assert len(link.sent) == 321
    feed.end()


async def test_a_replay_sends_its_keyframe_at_once_and_the_rest_in_slices() -> None:
    feed = started_feed()
    next_seq = push_big_frame(feed, 40)  # a keyframe of about 44 KB
    for frame in range(1, 11):  # ten frames of 10 packets after it
        for n in range(10):
            seq = next_seq + 10 * (frame - 1) + n
            feed.push_packet(seq, 3000 + 3000 * frame, int(n == 9), b"\x10" + b"\x00" * 1110, "pub")
    link, viewer = attach(feed)
    assert len(link.sent) == 40 and viewer.replaying  # the keyframe, whole, and no more
    sent = len(link.sent)
    await wait_for(lambda: len(link.sent) > sent)
    second_slice = sum(len(p) - 12 for p in link.sent[sent:])
    assert 0 < second_slice < forward.REPLAY_SLICE_BYTES + 1200
    await wait_for(lambda: not viewer.replaying)
    assert len(link.sent) == 140
    feed.end()


async def test_a_viewer_far_behind_its_replay_restarts_at_a_keyframe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(forward, "REPLAY_PENDING_PACKETS", 10)
    feed = started_feed()
    next_seq = push_big_frame(feed, 300)
    _, viewer = attach(feed)
    for n in range(11):
        feed.push_packet(next_seq + n, 6000, 1, VP8_DELTA_PACKET, "pub")
    assert not viewer.replaying and viewer.waiting
    assert feed.keyframes.requests["replay_behind"] == 1
    feed.end()


async def test_nack_past_history_and_cache_is_answered_from_recent_packets() -> None:
    frames = packetize("libvpx", encode("libvpx", 6, keyframe_at=(3,)))
    feed = started_feed()
    link, viewer = attach(feed, history=2)
    push_frames(feed, frames)  # the cache now starts at frame 3
    first = link.sent[0]
    viewer.retransmit(sequence_number(first))
    assert link.sent[-1] == first and viewer.unanswered == 0
    feed.end()


async def test_a_packet_asked_for_twice_at_once_is_sent_again_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frames = packetize("libvpx", encode("libvpx", 2))
    feed = started_feed()
    link, viewer = attach(feed)
    push_frames(feed, frames)
    seq = sequence_number(link.sent[0])
    viewer.retransmit(seq)
    viewer.retransmit(seq)  # asked again before the first answer could arrive
    assert viewer.retransmitted == 1
    monkeypatch.setattr(forward, "RESEND_GUARD_S", 0.0)
    viewer.retransmit(seq)  # later: answered again
    assert viewer.retransmitted == 2
    feed.end()


async def test_nack_for_a_replayed_packet_is_answered_after_the_cache_moved_on() -> None:
    feed = started_feed()
    next_seq = push_big_frame(feed, 100)
    link, viewer = attach(feed, history=4)
    await wait_for(lambda: not viewer.replaying)
    first = link.sent[0]
    # A new keyframe, then more than the feed's recent packets: only the replay has it.
    push_synthetic(feed, 600, start=next_seq, key_at=(next_seq,))
    assert feed.cached_packet(0) is None
    viewer.retransmit(sequence_number(first))
    assert link.sent[-1] == first and viewer.unanswered == 0
    feed.end()


async def test_a_replay_under_way_stops_when_the_feed_ends_or_the_publisher_republishes() -> None:
    feed = started_feed()
    push_big_frame(feed, 300)
    link, viewer = attach(feed)
    assert viewer.replaying
    feed.start_source("pub2")  # a republish: what was cached is another stream's
    assert not viewer.replaying and viewer.waiting
    sent = len(link.sent)
    await asyncio.sleep(0.03)  # the feed's replay timer sends nothing more
    assert len(link.sent) == sent
    push_big_frame(feed, 300, seq=5000, ts=90_000, source="pub2")  # the new keyframe
    assert len(link.sent) == sent + 300 and not viewer.waiting

    other = PacketViewer(feed, Link())
    feed.attach_packets(other)  # replaying the new cache
    assert other.replaying
    feed.end()
    assert other.ended and not other.replaying and feed._replay_timer is None
