"""Packet-level forwarding logic: keyframe starts, the keyframe cache, renumbering."""

from __future__ import annotations

import struct

from media.rtp import (
    KeyframeCache,
    RecentPackets,
    RtpWriter,
    SourcePacket,
    StreamMap,
    sequence_number,
    starts_keyframe,
)

# A VP8 key frame's first bytes: frame tag with bit 0 clear, then the start code.
VP8_KEY = b"\x50\x02\x00\x9d\x01\x2a\x80\x02\xe0\x01"
VP8_DELTA = b"\x31\x02\x00" + b"\x00" * 7


def packet(seq: int, ts: int, *, key: bool = False, size: int = 10) -> SourcePacket:
    return SourcePacket(seq % 65536, ts % 2**32, 0, b"x" * size, key)


# -- keyframe starts --------------------------------------------------------------------


def test_vp8_keyframe_start_needs_s_bit_partition_zero_and_key_frame_tag() -> None:
    assert starts_keyframe("vp8", b"\x10" + VP8_KEY)
    assert not starts_keyframe("vp8", b"\x10" + VP8_DELTA)  # a delta frame
    assert not starts_keyframe("vp8", b"\x00" + VP8_KEY)  # not the start of a frame
    assert not starts_keyframe("vp8", b"\x11" + VP8_KEY)  # partition 1
    assert not starts_keyframe("vp8", b"")


def test_vp8_extended_descriptor_is_skipped_before_the_frame_tag() -> None:
    # X=1, S=1; then I (15-bit picture id: 2 bytes), L (1 byte), T/K (1 byte).
    descriptor = b"\x90" + b"\xf0" + b"\x81\x23" + b"\x05" + b"\x40"
    assert starts_keyframe("vp8", descriptor + VP8_KEY)
    assert not starts_keyframe("vp8", descriptor + VP8_DELTA)
    # 7-bit picture id only: one byte.
    assert starts_keyframe("vp8", b"\x90\x80\x12" + VP8_KEY)
    assert not starts_keyframe("vp8", b"\x90\x80")  # truncated


def test_h264_keyframe_start_in_single_nal_stap_a_and_fu_a() -> None:
    assert starts_keyframe("h264", b"\x65\x88")  # IDR slice
    assert starts_keyframe("h264", b"\x67\x42")  # SPS
    assert not starts_keyframe("h264", b"\x41\x9a")  # non-IDR slice
    sps, pps = b"\x67\x42\x00\x1f", b"\x68\xce"
    stap = b"\x78" + struct.pack("!H", len(sps)) + sps + struct.pack("!H", len(pps)) + pps
    assert starts_keyframe("h264", stap)
    sei = b"\x06\x05\x01"
    assert not starts_keyframe("h264", b"\x78" + struct.pack("!H", len(sei)) + sei)
    assert starts_keyframe("h264", b"\x7c\x85\x00")  # FU-A, start, IDR
    assert not starts_keyframe("h264", b"\x7c\x05\x00")  # FU-A, middle of an IDR
    assert not starts_keyframe("h264", b"\x7c\x81\x00")  # FU-A, start, non-IDR


def test_audio_starts_anywhere() -> None:
    assert starts_keyframe("opus", b"\xfc\xff")


# -- keyframe cache -----------------------------------------------------------------------


def test_cache_holds_from_the_latest_keyframe_and_counts_frames() -> None:
    cache = KeyframeCache(max_frames=10, max_bytes=10_000)
    cache.add(packet(1, 0))  # nothing before a keyframe
    assert cache.packets == []
    cache.add(packet(2, 3000, key=True))
    cache.add(packet(3, 3000))
    cache.add(packet(4, 6000))
    assert [p.seq for p in cache.packets] == [2, 3, 4] and cache.frames == 2
    cache.add(packet(5, 9000, key=True))
    assert [p.seq for p in cache.packets] == [5] and cache.frames == 1


def test_second_keyframe_packet_of_the_same_frame_does_not_restart_the_cache() -> None:
    cache = KeyframeCache(max_frames=10, max_bytes=10_000)
    cache.add(packet(10, 90, key=True))  # SPS/PPS
    cache.add(packet(11, 90, key=True))  # IDR fragment start, same picture
    assert [p.seq for p in cache.packets] == [10, 11]


def test_late_packet_of_an_older_frame_is_kept_without_counting_a_frame() -> None:
    cache = KeyframeCache(max_frames=10, max_bytes=10_000)
    cache.add(packet(1, 100, key=True))
    cache.add(packet(3, 200))
    cache.add(packet(2, 100))  # a retransmission, arriving late
    assert cache.frames == 2 and len(cache.packets) == 3


def test_late_first_packet_of_a_keyframe_opens_the_cache_with_what_came_before() -> None:
    recent = RecentPackets(size=16)
    cache = KeyframeCache(max_frames=10, max_bytes=10_000)
    arrived = [packet(1, 0, key=True), packet(2, 0), packet(4, 100), packet(5, 100)]
    for p in arrived:
        assert recent.add(p)
        cache.add(p)
    late_key = packet(3, 100, key=True)  # retransmitted: its frame's others came first
    recent.add(late_key)
    followers = recent.after(late_key)
    assert [p.seq for p in followers] == [4, 5]
    cache.add(late_key, followers)
    assert [p.seq for p in cache.packets] == [3, 4, 5] and cache.frames == 1
    on_time = packet(6, 200, key=True)
    recent.add(on_time)
    assert recent.after(on_time) == []


def test_recent_packets_spot_duplicates_and_skip_older_frames_after_a_late_packet() -> None:
    recent = RecentPackets(size=8)
    assert recent.add(packet(10, 300)) and not recent.add(packet(10, 300))
    recent.add(packet(12, 200))  # an older frame's packet, late: not a follower
    recent.add(packet(13, 400))
    assert [p.seq for p in recent.after(packet(11, 300))] == [13]
    assert recent.get(12) is not None and recent.get(20) is None  # 20 would share 12's slot
    recent.add(packet(20, 500))
    assert recent.get(12) is None and recent.get(20) is not None
    assert recent.add(packet(12, 200))  # gone from the ring: no longer a duplicate
    assert recent.after(packet(2, 0)) == []  # further back than the ring holds


def test_cache_past_its_bounds_holds_nothing_until_the_next_keyframe() -> None:
    cache = KeyframeCache(max_frames=3, max_bytes=10_000)
    cache.add(packet(1, 0, key=True))
    for n in range(2, 5):
        cache.add(packet(n, n * 100))
    assert cache.packets == []
    cache.add(packet(5, 500))
    assert cache.packets == []
    cache.add(packet(6, 600, key=True))
    assert len(cache.packets) == 1
    by_bytes = KeyframeCache(max_frames=100, max_bytes=25)
    by_bytes.add(packet(1, 0, key=True, size=20))
    by_bytes.add(packet(2, 0, size=20))
    assert by_bytes.packets == []


# -- stream map -------------------------------------------------------------------------


def test_map_numbers_packets_from_the_viewer_start_and_keeps_source_gaps() -> None:
    stream = StreamMap(step=3000, first_seq=500, first_ts=7_000)
    stream.start(packet(65535, 90_000))
    assert stream.place(packet(65535, 90_000)) == (500, 7_000)
    assert stream.place(packet(0, 93_000)) == (501, 10_000)  # source wraps
    # Source packet 1 was lost upstream: the viewer sees the same gap and can NACK it.
    assert stream.place(packet(2, 93_000)) == (503, 10_000)
    assert stream.place(packet(1, 93_000)) == (502, 10_000)  # recovered late
    assert stream.last_seq == 503


def test_restart_after_skipping_leaves_no_gap_and_keeps_timestamps() -> None:
    stream = StreamMap(step=3000, first_seq=0, first_ts=0)
    stream.start(packet(100, 1_000))
    stream.place(packet(100, 1_000))
    stream.stop()
    assert not stream.started
    stream.start(packet(140, 31_000))  # 39 packets skipped
    assert stream.place(packet(140, 31_000)) == (1, 30_000)


def test_rebase_continues_after_the_last_timestamp_with_a_new_source() -> None:
    stream = StreamMap(step=3000, first_seq=10, first_ts=2**32 - 1000)
    stream.start(packet(7, 50))
    assert stream.place(packet(7, 50)) == (10, 2**32 - 1000)
    stream.rebase()
    stream.start(packet(40_000, 123_456_789))  # new SSRC space after a republish
    assert stream.place(packet(40_000, 123_456_789)) == (11, 2000)  # wrapped, one step on


def test_replay_squeezes_frames_one_tick_apart_ending_at_the_newest() -> None:
    stream = StreamMap(step=3000, first_seq=0, first_ts=1_000_000)
    cached = [
        packet(20, 0, key=True),
        packet(21, 0),
        packet(22, 3000),
        packet(24, 6000),
        packet(23, 3000),  # late packet of the second frame
    ]
    stream.replay(cached)
    placed = [stream.place(p) for p in cached]
    assert [seq for seq, _ in placed] == [0, 1, 2, 4, 3]
    newest = 1_000_000 + 6000
    assert [ts for _, ts in placed] == [newest - 2, newest - 2, newest - 1, newest, newest - 1]
    # Live packets after the replay keep the newest frame's spacing.
    assert stream.place(packet(25, 9000)) == (5, newest + 3000)


def test_replay_after_earlier_packets_never_goes_back_in_time() -> None:
    stream = StreamMap(step=3000, first_seq=0, first_ts=0)
    stream.start(packet(1, 0))
    stream.place(packet(1, 0))
    stream.place(packet(2, 3000))  # last_ts 3000
    stream.rebase()
    cached = [packet(900, 10, key=True), packet(901, 20), packet(902, 30)]
    stream.replay(cached)
    placed = [stream.place(p) for p in cached]
    assert [ts for _, ts in placed] == [6020 - 2, 6020 - 1, 6020]  # first packet one step on
    assert [seq for seq, _ in placed] == [2, 3, 4]
    stream2 = StreamMap(step=3000, first_seq=0, first_ts=0)
    stream2.start(packet(1, 0))
    stream2.place(packet(1, 0))
    stream2.stop()
    # Replaying a cache whose newest frame is the one already sent: forced forward.
    stream2.replay([packet(1, 0, key=True), packet(2, 0)])
    assert stream2.place(packet(1, 0))[1] == 1


# -- writer --------------------------------------------------------------------------------


def test_writer_builds_header_extension_and_payload_and_wraps_rtx() -> None:
    extension = b"\xbe\xde\x00\x01\x10\x30\x00\x00"  # one-byte mid "0"
    writer = RtpWriter(ssrc=0x01020304, payload_type=96, extension=extension)
    data = writer.packet(seq=7, timestamp=90_000, marker=1, payload=b"abc")
    assert data[0] == 0x90 and data[1] == 0x80 | 96
    assert sequence_number(data) == 7
    assert struct.unpack_from("!II", data, 4) == (90_000, 0x01020304)
    assert data[12:20] == extension and data[20:] == b"abc"
    rtx = writer.retransmission(data, rtx_payload_type=97, rtx_ssrc=0x0A0B0C0D, seq=300)
    assert rtx[1] == 0x80 | 97 and sequence_number(rtx) == 300
    assert struct.unpack_from("!II", rtx, 4) == (90_000, 0x0A0B0C0D)
    assert rtx[20:22] == b"\x00\x07" and rtx[22:] == b"abc"
    bare = RtpWriter(ssrc=1, payload_type=111, extension=b"")
    plain = bare.packet(seq=1, timestamp=2, marker=0, payload=b"z")
    assert plain[0] == 0x80 and plain[1] == 111 and plain[12:] == b"z"


def test_source_seq_answers_only_for_packets_sent_since_the_last_start() -> None:
    stream = StreamMap(step=3000, first_seq=10, first_ts=0)
    assert stream.source_seq(10) is None  # not started
    stream.start(packet(500, 0))
    assert stream.source_seq(10) is None  # started, nothing sent yet
    stream.place(packet(500, 0))
    stream.place(packet(501, 0))
    assert [stream.source_seq(s) for s in (9, 10, 11, 12)] == [None, 500, 501, None]
    stream.stop()
    stream.start(packet(900, 3000))
    stream.place(packet(900, 3000))
    assert stream.source_seq(12) == 900 and stream.source_seq(11) is None
    assert stream.timestamp(packet(900, 3000)) == stream.place(packet(900, 3000))[1]
