"""Packet-level forwarding logic: what a packet is, where frames start, and how one
source's packets are renumbered for one viewer. Pure: no sockets, no aiortc objects.

Invariants:

* A :class:`SourcePacket` is taken from the publisher once, after the
  receiver has recovered retransmissions, and shared by every viewer: its
  payload is never copied in Python.
* :func:`starts_keyframe` reads only the RTP payload header (VP8 descriptor,
  H.264 NAL header), so a viewer can start at the first packet of a keyframe
  the moment it arrives, before the frame is complete.
* :class:`KeyframeCache` holds the packets from the latest keyframe's first
  packet on, in arrival order, within a frame and byte bound (past it, nothing
  until the next keyframe). A keyframe whose first packet came late (it was
  retransmitted) still starts with it, followed by the rest of the keyframe
  that arrived before it (:meth:`RecentPackets.after`).
* :class:`RecentPackets` holds the last packets by sequence number, so a
  duplicate (a retransmission that crossed the original) is recognised and
  a late packet's followers are found.
* A :class:`StreamMap` gives one viewer its own sequence numbers and
  timestamps: sequence numbers have no gap where the viewer skipped packets
  (joining, a republish), the source's own gaps are kept so the viewer can
  ask for them (NACK), and timestamps only move forward, also across a
  republish. Cache replays are squeezed one tick apart and end at the newest
  frame's timestamp, so a new viewer renders a fast catch-up, not seconds
  behind live.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32
_HALF_TS = 1 << 31
_HEADER = struct.Struct("!BBHII")


class SourcePacket:
    """One RTP packet as the publisher sent it (after RTX recovery)."""

    __slots__ = ("keyframe_start", "marker", "payload", "seq", "timestamp")

    def __init__(
        self, seq: int, timestamp: int, marker: int, payload: bytes, keyframe_start: bool
    ) -> None:
        self.seq = seq
        self.timestamp = timestamp
        self.marker = marker
        self.payload = payload
        self.keyframe_start = keyframe_start

    def __repr__(self) -> str:
        key = " key" if self.keyframe_start else ""
        return f"SourcePacket(seq={self.seq} ts={self.timestamp}{key} {len(self.payload)} B)"


def newer(a: int, b: int) -> bool:
    """Whether RTP timestamp ``a`` is after ``b`` (modulo 2**32)."""
    return 0 < (a - b) % TS_MOD < _HALF_TS


def _vp8_keyframe_start(p: bytes) -> bool:
    # RFC 7741 4.2: S=1 and PID=0 open a frame; after the descriptor, bit 0 of
    # the VP8 payload header (RFC 6386 9.1) is 0 for a key frame.
    if not p or not p[0] & 0x10 or p[0] & 0x07:
        return False
    at = 1
    if p[0] & 0x80:
        if len(p) < 2:
            return False
        x = p[1]
        at = 2
        if x & 0x80:
            if len(p) <= at:
                return False
            at += 2 if p[at] & 0x80 else 1
        if x & 0x40:
            at += 1
        if x & 0x30:
            at += 1
    if len(p) <= at or p[at] & 0x01:
        return False
    return len(p) < at + 6 or p[at + 3 : at + 6] == b"\x9d\x01\x2a"


def _h264_keyframe_start(p: bytes) -> bool:
    # RFC 6184: a single NAL unit, a STAP-A (24) holding several, or the first
    # fragment of an FU-A (28); IDR slices are type 5, sequence parameter sets 7.
    if not p:
        return False
    kind = p[0] & 0x1F
    if kind in (5, 7):
        return True
    if kind == 24:
        at = 1
        while at + 2 < len(p):
            if p[at + 2] & 0x1F in (5, 7):
                return True
            at += 2 + (p[at] << 8 | p[at + 1])
        return False
    if kind == 28 and len(p) > 1:
        return bool(p[1] & 0x80) and p[1] & 0x1F in (5, 7)
    return False


def starts_keyframe(codec: str, payload: bytes) -> bool:
    """Whether a decoder can start at this packet (``codec`` is a lower-case MIME subtype).

    Audio and unknown codecs start anywhere.
    """
    if codec == "vp8":
        return _vp8_keyframe_start(payload)
    if codec == "h264":
        return _h264_keyframe_start(payload)
    return True


#: Packets :class:`RecentPackets` holds: about half a second of busy video.
RECENT_PACKETS = 512


class RecentPackets:
    """The last :data:`RECENT_PACKETS` packets of one source, by sequence number."""

    def __init__(self, size: int = RECENT_PACKETS) -> None:
        self._slots: list[SourcePacket | None] = [None] * size
        self.newest_seq: int | None = None

    def add(self, packet: SourcePacket) -> bool:
        """Hold ``packet``; False (and nothing changes) if it is a duplicate of one held."""
        slot = packet.seq % len(self._slots)
        held = self._slots[slot]
        if held is not None and held.seq == packet.seq:
            return False
        self._slots[slot] = packet
        newest = self.newest_seq
        if newest is None or 0 < (packet.seq - newest) % SEQ_MOD < SEQ_MOD // 2:
            self.newest_seq = packet.seq
        return True

    def get(self, seq: int) -> SourcePacket | None:
        held = self._slots[seq % len(self._slots)]
        return held if held is not None and held.seq == seq else None

    def after(self, packet: SourcePacket) -> list[SourcePacket]:
        """Packets held that follow ``packet`` in sequence, of its frame or a later one.

        Empty unless ``packet`` came late (a retransmission): then these arrived
        before it, and whoever starts at ``packet`` needs them too.
        """
        if self.newest_seq is None:
            return []
        ahead = (self.newest_seq - packet.seq) % SEQ_MOD
        if ahead == 0 or ahead >= len(self._slots):
            return []
        found = []
        for n in range(1, ahead + 1):
            held = self.get((packet.seq + n) % SEQ_MOD)
            if held is not None and not newer(packet.timestamp, held.timestamp):
                found.append(held)
        return found


class KeyframeCache:
    """The packets from the latest keyframe's first packet on, in arrival order."""

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.packets: list[SourcePacket] = []
        self.frames = 0
        self._bytes = 0
        self._keyframe_ts: int | None = None
        self._newest_ts = 0

    def add(self, packet: SourcePacket, followers: Iterable[SourcePacket] = ()) -> None:
        """Take ``packet``; if it opens a keyframe, ``followers`` are what came before it."""
        if self._opens_keyframe(packet):
            self.packets = [packet]
            self.frames = 1
            self._bytes = len(packet.payload)
            self._keyframe_ts = self._newest_ts = packet.timestamp
            for follower in followers:
                if not self.packets:  # past the bounds
                    break
                self._append(follower)
            return
        if self.packets:
            self._append(packet)

    def _append(self, packet: SourcePacket) -> None:
        self.packets.append(packet)
        self._bytes += len(packet.payload)
        if newer(packet.timestamp, self._newest_ts):
            self._newest_ts = packet.timestamp
            self.frames += 1
        if self.frames > self.max_frames or self._bytes > self.max_bytes:
            self.clear()

    @property
    def size(self) -> int:
        """Payload bytes held."""
        return self._bytes

    def _opens_keyframe(self, packet: SourcePacket) -> bool:
        """A new keyframe, not a second packet of the one cached nor an older one.

        Its timestamp may equal the newest: its other packets came before it.
        """
        if not packet.keyframe_start or packet.timestamp == self._keyframe_ts:
            return False
        return not self.packets or not newer(self._newest_ts, packet.timestamp)

    def clear(self) -> None:
        self.packets = []
        self.frames = 0
        self._bytes = 0
        self._keyframe_ts = None


class StreamMap:
    """One viewer's sequence numbers and timestamps for one source's packets.

    ``step`` is one frame in timestamp units, used to continue after a
    republish. A map is *started* at a packet (:meth:`start`, :meth:`replay`);
    before that, and after :meth:`rebase` until the next start, it maps
    nothing.
    """

    def __init__(self, step: int, first_seq: int, first_ts: int) -> None:
        self.step = step
        self.seq_delta: int | None = None
        self.ts_delta = 0
        self.last_seq = (first_seq - 1) % SEQ_MOD
        self.last_ts: int | None = None
        self._first_ts = first_ts
        self._squeezed: dict[int, int] = {}
        self._new_source = True
        self._first_out = first_seq

    @property
    def started(self) -> bool:
        return self.seq_delta is not None

    def rebase(self) -> None:
        """The source changed (a republish): wait for a new start, keep moving forward."""
        self.seq_delta = None
        self._squeezed = {}
        self._new_source = True

    def stop(self) -> None:
        """Skip what follows until the next start (same source, timestamps kept)."""
        self.seq_delta = None

    def start(self, packet: SourcePacket) -> None:
        """``packet`` is the first one sent after a gap: number it right after the last."""
        self.seq_delta = (self.last_seq + 1 - packet.seq) % SEQ_MOD
        self._first_out = (self.last_seq + 1) % SEQ_MOD
        if self._new_source:
            self._new_source = False
            if self.last_ts is None:
                self.ts_delta = (self._first_ts - packet.timestamp) % TS_MOD
            else:
                self.ts_delta = (self.last_ts + self.step - packet.timestamp) % TS_MOD
        self._squeezed = {}

    def replay(self, packets: list[SourcePacket]) -> None:
        """Start at ``packets[0]``, timestamps squeezed one tick apart up to the newest frame."""
        first = packets[0]
        self.start(first)
        order = _frame_timestamps(packets)
        newest_out = (order[-1] + self.ts_delta) % TS_MOD
        start = (newest_out - (len(order) - 1)) % TS_MOD
        if self.last_ts is not None and not newer(start, self.last_ts):
            start = (self.last_ts + 1) % TS_MOD
            self.ts_delta = (start + len(order) - 1 - order[-1]) % TS_MOD
        self._squeezed = {ts: (start + n) % TS_MOD for n, ts in enumerate(order)}

    def source_seq(self, seq: int) -> int | None:
        """The source sequence number our ``seq`` was given to, if sent since the last start.

        Before the last start the numbering differed, so nothing is answered there.
        """
        if self.seq_delta is None or self.last_seq == (self._first_out - 1) % SEQ_MOD:
            return None  # not started, or nothing sent since
        if (seq - self._first_out) % SEQ_MOD > (self.last_seq - self._first_out) % SEQ_MOD:
            return None
        return (seq - self.seq_delta) % SEQ_MOD

    def timestamp(self, packet: SourcePacket) -> int:
        """The timestamp :meth:`place` gave, or would give, ``packet`` (changes nothing)."""
        ts = self._squeezed.get(packet.timestamp) if self._squeezed else None
        return (packet.timestamp + self.ts_delta) % TS_MOD if ts is None else ts

    def place(self, packet: SourcePacket) -> tuple[int, int]:
        """The viewer's sequence number and timestamp for ``packet`` (map started)."""
        assert self.seq_delta is not None
        seq = (packet.seq + self.seq_delta) % SEQ_MOD
        ts = self._squeezed.get(packet.timestamp) if self._squeezed else None
        if ts is None:
            ts = (packet.timestamp + self.ts_delta) % TS_MOD
        if 0 < (seq - self.last_seq) % SEQ_MOD < SEQ_MOD // 2:
            self.last_seq = seq
        if self.last_ts is None or newer(ts, self.last_ts):
            self.last_ts = ts
        return seq, ts


def _frame_timestamps(packets: Iterable[SourcePacket]) -> list[int]:
    """The distinct timestamps of ``packets``, oldest first, late arrivals in place."""
    order: list[int] = []
    for packet in packets:
        if not order or newer(packet.timestamp, order[-1]):
            order.append(packet.timestamp)
    return order


class RtpWriter:
    """Builds one viewer's RTP packets: fixed SSRC, payload type and header extensions.

    ``extension`` is the header extension block as serialized after the fixed
    header (profile, length and elements), empty for none.
    """

    def __init__(self, ssrc: int, payload_type: int, extension: bytes) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.extension = extension
        self.header_size = 12 + len(extension)
        self._first_byte = 0x90 if extension else 0x80

    def packet(self, seq: int, timestamp: int, marker: int, payload: bytes) -> bytes:
        head = _HEADER.pack(
            self._first_byte, marker << 7 | self.payload_type, seq, timestamp, self.ssrc
        )
        return head + self.extension + payload

    def retransmission(
        self, original: bytes, rtx_payload_type: int, rtx_ssrc: int, seq: int
    ) -> bytes:
        """``original`` (one of ours) wrapped for the RTX stream (RFC 4588)."""
        marker = original[1] & 0x80
        head = _HEADER.pack(
            self._first_byte, marker | rtx_payload_type, seq, _ts(original), rtx_ssrc
        )
        return head + self.extension + original[2:4] + original[self.header_size :]


def _ts(packet: bytes) -> int:
    value: int = struct.unpack_from("!I", packet, 4)[0]
    return value


def sequence_number(packet: bytes) -> int:
    """The sequence number of a serialized RTP packet."""
    return packet[2] << 8 | packet[3]
