"""Fan-out of a publisher's media to its viewers; nothing here decodes or encodes.

Viewers are fed packet by packet; whole frames go to recorders.

Invariants:

* One :class:`Feed` per published track. Each RTP packet enters once
  (:meth:`Feed.push_packet`, called on the event loop by the packet tap of
  :mod:`media.hooks` as it arrives, retransmissions already recovered) and is
  handed to every :class:`PacketViewer`, which renumbers it
  (:class:`media.rtp.StreamMap`), protects it and writes it to the viewer's
  socket at once. Nothing waits: a viewer's socket that cannot take more
  drops packets (counted), and the viewer asks again (NACK, answered from
  its last :data:`HISTORY_PACKETS` packets, or rebuilt from the feed's recent
  packets or keyframe cache when older) or asks for a keyframe. A slow
  viewer costs only itself. A packet that comes twice (a retransmission
  crossing the original) is sent on once.
* Each complete frame also enters once (:meth:`Feed.push`, from the receiver's
  jitter buffer) and goes to every frame consumer (:class:`ViewerTrack`, the
  recorder's tap) through a bounded queue: when full, video drops the whole
  queue and skips to the next keyframe (asking the publisher for one), audio
  drops its oldest frame.
* A video viewer starts at the first packet of a keyframe; if that packet came
  late (retransmitted), the rest of the keyframe, which came before it,
  follows it at once. The feed caches the
  packets from the latest keyframe on (and, for recorders, the frames), at
  most :data:`CACHE_MAX_FRAMES` frames and :data:`CACHE_MAX_BYTES` bytes, else
  nothing until the next keyframe. A viewer that joins while the cache holds
  at most :data:`CACHE_FRESH_FRAMES` frames (and, for packet viewers,
  :data:`CACHE_FRESH_BYTES`) starts from it at once, and the publisher is not
  asked for anything. Otherwise the feed asks for a
  keyframe, and a viewer still waiting :data:`KEYFRAME_WAIT_S` later gets the
  cache after all if it is not too long to catch up on (:data:`CACHE_FRESH_BYTES`), else
  only once it has waited :data:`KEYFRAME_GIVE_UP_S`; while anyone waits, the
  request is repeated.
* A viewer is announced when it subscribes (:meth:`Feed.expect_viewer`), before
  ICE and DTLS: if the cache will not be fresh when it is connected, the
  keyframe is asked for then, so that it arrives while the viewer connects.
  One request is outstanding at a time (until a keyframe comes or
  :data:`KEYFRAME_WAIT_S` passes), however many viewers arrive.
* A replayed cache is sent with consecutive timestamps (one tick apart)
  ending at the newest frame's, so a receiver's jitter buffer renders it as
  a fast catch-up instead of playing seconds behind live. It is paced:
  :data:`REPLAY_SLICE_BYTES` at once, then as much every :data:`REPLAY_TICK_S`
  (one timer per feed for all replaying viewers), so no burst overflows a
  receiver's socket or jitter buffer and its NACKs are answered between
  slices; live packets arriving meanwhile follow the replay, in order.
* Keyframe requests reach the publisher through one
  :class:`KeyframeRequester` per feed: at most one PLI per interval; a request
  inside the interval is sent when it ends, never lost.
* The timestamps a viewer gets only move forward. When the publisher
  republishes with the same codec the feed carries on, and each viewer
  rebases the new publication's timestamps after what it already sent.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import av
from aiortc import clock
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from media.rtp import (
    KeyframeCache,
    RecentPackets,
    RtpWriter,
    SourcePacket,
    StreamMap,
    sequence_number,
    starts_keyframe,
)

CACHE_MAX_FRAMES = 150
CACHE_MAX_BYTES = 4 * 1024 * 1024
CACHE_FRESH_FRAMES = 60
#: Nor more than this many bytes: a replay is paced (REPLAY_SLICE_BYTES per
#: REPLAY_TICK_S), and a longer one keeps the viewer catching up for too long.
CACHE_FRESH_BYTES = 1024 * 1024
#: Frames a subscribing viewer may take to connect: a cache older than
#: CACHE_FRESH_FRAMES minus this when it subscribes is refreshed for it.
CONNECT_FRAMES = 15
KEYFRAME_WAIT_S = 0.5
#: A packet viewer waiting this long for a keyframe gets the cache whatever its size.
KEYFRAME_GIVE_UP_S = 3.0
VIDEO_QUEUE_FRAMES = 90
AUDIO_QUEUE_FRAMES = 100
PLI_INTERVAL_S = 1.0
#: Packets each viewer keeps for retransmission: about 1.5 s of 800 kbps video.
HISTORY_PACKETS = 128
#: A cache replay goes out this many payload bytes at a time, one slice per viewer per
#: REPLAY_TICK_S (26 Mbit/s, about 3 packets a millisecond), after its keyframe, which
#: goes at once. A receiver's jitter buffer (512 packets in aiortc) must not fill while
#: one lost packet is asked for twice, nor pass 100 packets beyond a packet whose
#: second copy is still on its way: at a faster pace, a viewer that reads its socket
#: 20-30 ms late during the burst hits one limit or the other.
REPLAY_SLICE_BYTES = 16 * 1024
REPLAY_TICK_S = 0.005
#: The first slice holds the whole keyframe, up to this size.
REPLAY_FIRST_SLICE_BYTES = 96 * 1024
#: Live packets held for a viewer still replaying; past this it restarts at a keyframe.
REPLAY_PENDING_PACKETS = 4096
#: A finished replay's run is kept this long to answer NACKs: the cache may have moved
#: on to a new keyframe, and the feed's recent packets hold only the last 512.
REPLAY_KEEP_S = 2.0
#: A packet is sent again at most once in this interval, however often it is asked for:
#: a request repeated before the first answer arrived would only make a duplicate.
RESEND_GUARD_S = 0.01

_VIDEO_FPS = 30
_AUDIO_FPS = 50


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One depacketized frame as the publisher encoded it."""

    data: bytes
    timestamp: int
    keyframe: bool


def h264_nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream, without start codes."""
    starts = []
    at = data.find(b"\x00\x00\x01")
    while at != -1:
        starts.append(at + 3)
        at = data.find(b"\x00\x00\x01", at + 3)
    units = []
    for n, start in enumerate(starts):
        end = starts[n + 1] - 3 if n + 1 < len(starts) else len(data)
        while n + 1 < len(starts) and end > start and data[end - 1] == 0:
            end -= 1
        if end > start:
            units.append(data[start:end])
    return units


def is_keyframe(codec: str, data: bytes) -> bool:
    """Whether a decoder can start at this frame (``codec`` is a MIME subtype)."""
    codec = codec.lower()
    if codec == "vp8":
        # RFC 6386 9.1: bit 0 of the frame tag is 0 for key frames, which carry a start code.
        return len(data) >= 10 and data[0] & 0x01 == 0 and data[3:6] == b"\x9d\x01\x2a"
    if codec == "h264":
        return any(unit[0] & 0x1F == 5 for unit in h264_nal_units(data))
    return True


class KeyframeRequester:
    """At most one keyframe request upstream per ``interval``; later ones wait, none is lost."""

    def __init__(
        self, interval: float = PLI_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self.send: Callable[[], None] | None = None
        self.requests: Counter[str] = Counter()
        self.sent = 0
        self._clock = clock
        self._last: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    def request(self, reason: str) -> None:
        self.requests[reason] += 1
        if self._timer is not None:
            return
        now = self._clock()
        if self._last is None or now - self._last >= self.interval:
            self._fire()
        else:
            delay = self._last + self.interval - now
            self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._last = self._clock()
        if self.send is not None:
            self.sent += 1
            self.send()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Feed:
    """One published track, fanned out to viewer tracks."""

    def __init__(
        self,
        kind: str,
        codec: RTCRtpCodecCapability,
        *,
        cache_max_frames: int = CACHE_MAX_FRAMES,
        cache_max_bytes: int = CACHE_MAX_BYTES,
        cache_fresh_frames: int = CACHE_FRESH_FRAMES,
        keyframe_wait_s: float = KEYFRAME_WAIT_S,
    ) -> None:
        self.kind = kind
        self.codec = codec
        self.name = codec.mimeType.split("/")[-1].lower()
        self.time_base = Fraction(1, codec.clockRate)
        self.step = codec.clockRate // (_VIDEO_FPS if kind == "video" else _AUDIO_FPS)
        self.keyframes = KeyframeRequester()
        self.source: object | None = None
        self.ended = False
        self.frames_in = 0
        self.cache_replays = 0
        self._cache_max_frames = cache_max_frames
        self._cache_max_bytes = cache_max_bytes
        self._cache_fresh_frames = cache_fresh_frames
        self._keyframe_wait_s = keyframe_wait_s
        self._viewers: set[ViewerTrack] = set()
        self._packet_viewers: set[PacketViewer] = set()
        self._packet_cache = KeyframeCache(cache_max_frames, cache_max_bytes)
        self._recent = RecentPackets()
        self.packets_in = 0
        #: Video packets that came twice (a retransmission crossing the original): not sent on.
        self.duplicates = 0
        self._keyframe_asked_at: float | None = None
        self.ntp_time = clock.current_ntp_time()
        self._newest_ts: int | None = None
        self._cache: list[EncodedFrame] = []
        self._cache_bytes = 0
        self._h264_params = b""
        self._fallback: asyncio.TimerHandle | None = None
        self._replaying: set[PacketViewer] = set()
        self._replay_timer: asyncio.TimerHandle | None = None

    @property
    def viewers(self) -> int:
        """Packet viewers and frame consumers (recorders)."""
        return len(self._viewers) + len(self._packet_viewers)

    @property
    def cached_frames(self) -> int:
        return len(self._cache)

    @property
    def cached_packets(self) -> list[SourcePacket]:
        return list(self._packet_cache.packets)

    def cached_packet(
        self, seq: int, replayed: list[SourcePacket] | None = None
    ) -> SourcePacket | None:
        """The packet with source sequence number ``seq`` (for retransmissions).

        Looked for among the recent packets, the cache, and ``replayed`` (a run a
        viewer was replayed, which the cache may have moved on from).
        """
        recent = self._recent.get(seq)
        if recent is not None:
            return recent
        runs = [self._packet_cache.packets]
        if replayed is not None and replayed is not runs[0]:
            runs.append(replayed)
        for run in runs:
            for packet in reversed(run):
                if packet.seq == seq:
                    return packet
        return None

    def start_source(self, source: object) -> None:
        """Frames now come from ``source``; after the first, timestamps and decoding restart."""
        previous, self.source = self.source, source
        if previous is None:
            return
        self._cache = []
        self._cache_bytes = 0
        self._packet_cache.clear()
        self._recent = RecentPackets()
        for viewer in tuple(self._viewers):
            viewer.rebase()
        for packet_viewer in tuple(self._packet_viewers):
            packet_viewer.rebase()

    def source_ended(self, source: object) -> None:
        if source is self.source:
            self.end()

    def push_packet(
        self, seq: int, timestamp: int, marker: int, payload: bytes, source: object
    ) -> None:
        """Take one RTP packet from the publisher and send it to every viewer. Never waits."""
        if self.ended or source is not self.source:
            return
        video = self.kind == "video"
        packet = SourcePacket(
            seq, timestamp, marker, payload, starts_keyframe(self.name, payload) if video else True
        )
        self.packets_in += 1
        if timestamp != self._newest_ts:
            # One wall-clock reading per frame, shared by every viewer's sender report.
            self._newest_ts = timestamp
            self.ntp_time = clock.current_ntp_time()
        followers: list[SourcePacket] = []
        if video:
            if not self._recent.add(packet):
                self.duplicates += 1
                return
            if packet.keyframe_start:
                followers = self._recent.after(packet)  # it came late: these came first
                self._keyframe_asked_at = None
            self._packet_cache.add(packet, followers)
        for viewer in tuple(self._packet_viewers):
            viewer.deliver(packet, followers)

    def push(self, data: bytes, timestamp: int, source: object) -> None:
        """Take one frame from the publisher and hand it to every frame consumer."""
        if self.ended or source is not self.source:
            return
        keyframe = is_keyframe(self.name, data)
        if self.name == "h264":
            data = self._with_h264_params(data, keyframe)
        frame = EncodedFrame(data, timestamp, keyframe)
        self.frames_in += 1
        if self.kind == "video":
            self._cache_frame(frame)
        for viewer in tuple(self._viewers):
            viewer.deliver(frame)

    def _cache_frame(self, frame: EncodedFrame) -> None:
        if frame.keyframe:
            self._cache = [frame]
            self._cache_bytes = len(frame.data)
        elif self._cache:
            self._cache.append(frame)
            self._cache_bytes += len(frame.data)
            too_long = len(self._cache) > self._cache_max_frames
            if too_long or self._cache_bytes > self._cache_max_bytes:
                self._cache = []
                self._cache_bytes = 0

    def _with_h264_params(self, data: bytes, keyframe: bool) -> bytes:
        """Keep the latest SPS/PPS, and put them before an IDR frame that lacks them."""
        units = h264_nal_units(data)
        types = {unit[0] & 0x1F for unit in units}
        if 7 in types:
            self._h264_params = b"".join(
                b"\x00\x00\x00\x01" + u for u in units if u[0] & 0x1F in (7, 8)
            )
        elif keyframe and self._h264_params:
            return self._h264_params + data
        return data

    def attach(self, viewer: ViewerTrack) -> None:
        """Add ``viewer``: start it from a fresh cache, or ask for a keyframe for it."""
        if self.ended:
            viewer.end()
            return
        self._viewers.add(viewer)
        if self.kind != "video":
            return
        if self._cache and len(self._cache) <= self._cache_fresh_frames:
            self.cache_replays += 1
            viewer.replay(self._cache)
        else:
            self.keyframe_needed("stale_cache" if self._cache else "join")

    def detach(self, viewer: ViewerTrack) -> None:
        self._viewers.discard(viewer)

    def expect_viewer(self) -> None:
        """A viewer is subscribing: if the cache will be stale once it is connected, ask now."""
        if self.ended or self.kind != "video" or self._keyframe_outstanding():
            return
        cache = self._packet_cache
        if (
            cache.packets
            and cache.frames <= self._cache_fresh_frames - CONNECT_FRAMES
            and cache.size <= CACHE_FRESH_BYTES * 3 // 4
        ):
            return
        self._keyframe_asked_at = time.monotonic()
        self.keyframes.request("expected")

    def _keyframe_outstanding(self) -> bool:
        asked = self._keyframe_asked_at
        return asked is not None and time.monotonic() - asked < self._keyframe_wait_s

    def attach_packets(self, viewer: PacketViewer) -> None:
        """Add a packet viewer: start it from a fresh cache, or ask for a keyframe for it."""
        if self.ended:
            viewer.end()
            return
        self._packet_viewers.add(viewer)
        viewer.waiting_since = time.monotonic()
        if self.kind != "video":
            return
        cache = self._packet_cache
        if (
            cache.packets
            and cache.frames <= self._cache_fresh_frames
            and (cache.size <= CACHE_FRESH_BYTES)
        ):
            self._replay_to(viewer)
        elif self._keyframe_outstanding():
            self._start_fallback()  # the keyframe asked for at subscribe is on its way
        else:
            self._keyframe_asked_at = time.monotonic()
            self.keyframe_needed("stale_cache" if cache.packets else "join")

    def detach_packets(self, viewer: PacketViewer) -> None:
        self._packet_viewers.discard(viewer)
        self._replaying.discard(viewer)

    def keyframe_needed(self, reason: str) -> None:
        """A viewer waits for a keyframe: ask, and serve the cache if none comes soon."""
        if self.ended:
            return
        self.keyframes.request(reason)
        self._start_fallback()

    def _start_fallback(self) -> None:
        if self._fallback is None:
            loop = asyncio.get_running_loop()
            self._fallback = loop.call_later(self._keyframe_wait_s, self._serve_waiting)

    def _serve_waiting(self) -> None:
        self._fallback = None
        waiting = [v for v in self._viewers if v.waiting]
        waiting_packets = [v for v in self._packet_viewers if v.waiting]
        if not waiting and not waiting_packets:
            return
        cache = self._packet_cache
        # A cache too large to catch up on quickly is only served to a viewer that
        # has waited long; the others wait for the keyframe asked for again.
        now = time.monotonic()
        servable = [
            v
            for v in waiting_packets
            if cache.packets
            and (cache.size <= CACHE_FRESH_BYTES or now - v.waiting_since >= KEYFRAME_GIVE_UP_S)
        ]
        if (waiting and not self._cache) or len(servable) < len(waiting_packets):
            self.keyframe_needed("retry")
        if self._cache:
            for viewer in waiting:
                self.cache_replays += 1
                viewer.replay(self._cache)
        for packet_viewer in servable:
            self._replay_to(packet_viewer)

    def _replay_to(self, viewer: PacketViewer) -> None:
        """Start ``viewer`` from the cache: its first slice now, the rest paced."""
        self.cache_replays += 1
        if viewer.replay(self._packet_cache.packets):
            self._replaying.add(viewer)
            if self._replay_timer is None:
                loop = asyncio.get_running_loop()
                self._replay_timer = loop.call_later(REPLAY_TICK_S, self._pump_replays)

    def _pump_replays(self) -> None:
        self._replay_timer = None
        for viewer in tuple(self._replaying):
            if not viewer.pump():
                self._replaying.discard(viewer)
        if self._replaying:
            loop = asyncio.get_running_loop()
            self._replay_timer = loop.call_later(REPLAY_TICK_S, self._pump_replays)

    def request_keyframe(self, reason: str) -> None:
        """A viewer's decoder lost the picture (PLI/FIR): pass it on, rate-limited."""
        if not self.ended:
            self.keyframes.request(reason)

    def end(self) -> None:
        """The publisher stopped: every viewer track ends once its queue is sent."""
        if self.ended:
            return
        self.ended = True
        self._cache = []
        self._packet_cache.clear()
        self.keyframes.close()
        if self._fallback is not None:
            self._fallback.cancel()
            self._fallback = None
        if self._replay_timer is not None:
            self._replay_timer.cancel()
            self._replay_timer = None
        self._replaying.clear()
        for viewer in tuple(self._viewers):
            viewer.end()
        self._viewers.clear()
        for packet_viewer in tuple(self._packet_viewers):
            packet_viewer.end()
        self._packet_viewers.clear()


class SenderLink(Protocol):
    """What a :class:`PacketViewer` needs of its ``RTCRtpSender`` (see ``hooks.PacketSender``)."""

    @property
    def rtx(self) -> tuple[int, int] | None: ...

    def writer(self) -> RtpWriter: ...

    def transmitter(self) -> Callable[[bytes], bool]: ...

    def clock(self, rtp_timestamp: int, ntp_time: int) -> None: ...

    def count(self, packets: int, payload_bytes: int) -> None: ...


class PacketViewer:
    """One viewer's stream of one feed: each packet renumbered, protected and sent at once.

    Sequence numbers and timestamps come from a :class:`~media.rtp.StreamMap`;
    the last :data:`HISTORY_PACKETS` packets sent are kept (as sent, before
    protection) to answer NACKs, on the RTX stream when one was negotiated.
    """

    def __init__(self, feed: Feed, link: SenderLink, history: int = HISTORY_PACKETS) -> None:
        self.kind = feed.kind
        self.feed = feed
        self.map = StreamMap(feed.step, random.randrange(1 << 15), random.randrange(1 << 32))
        self._link = link
        self._writer = link.writer()
        self._transmit = link.transmitter()
        self._rtx = link.rtx
        self._rtx_seq = random.randrange(1 << 15)
        self._history: list[bytes | None] = [None] * history
        self._clock_ts: int | None = None
        self.ended = False
        self.on_end: Callable[[], None] | None = None
        self.packets_out = 0
        self.dropped = 0
        self.skipped = 0
        self.retransmitted = 0
        #: NACKed packets we no longer held (nor could rebuild): the viewer waits for a keyframe.
        self.unanswered = 0
        #: When it joined its feed (it waits for a keyframe from then until started).
        self.waiting_since = time.monotonic()
        # A paced cache replay: the run, how far it is sent, where it ends (live packets
        # arriving meanwhile wait in _pending, and go once the run is out).
        self._run: list[SourcePacket] | None = None
        self._run_at = 0
        self._run_end = 0
        self._pending: deque[SourcePacket] = deque()
        self._replayed: list[SourcePacket] | None = None  # kept REPLAY_KEEP_S for NACKs
        self._resent: dict[int, float] = {}  # seq -> when last sent again

    @property
    def replaying(self) -> bool:
        return self._run is not None

    @property
    def waiting(self) -> bool:
        """Joined, and waiting for a keyframe to (re)start from."""
        return not self.map.started and not self.ended and self.kind == "video"

    def deliver(self, packet: SourcePacket, followers: list[SourcePacket] | None = None) -> None:
        """Send ``packet``; a waiting viewer starts at a keyframe's first packet.

        ``followers`` are the packets that arrived before that first packet (it
        was retransmitted): a viewer starting there gets them right after it.
        """
        if self.ended:
            return
        if self._run is not None:
            if len(self._pending) >= REPLAY_PENDING_PACKETS:
                self._stop_replay()  # too far behind live: start again at a keyframe
                self.map.stop()
                self.feed.keyframe_needed("replay_behind")
            else:
                self._pending.append(packet)
            return
        if not self.map.started:
            if not packet.keyframe_start:
                self.skipped += 1
                return
            self.map.start(packet)
            self._send(packet)
            for follower in followers or ():
                self._send(follower)
            return
        self._send(packet)

    def replay(self, packets: list[SourcePacket], budget: int = REPLAY_SLICE_BYTES) -> bool:
        """Start from ``packets`` (a keyframe's and what followed), squeezed to one tick apart.

        The keyframe goes at once, up to :data:`REPLAY_FIRST_SLICE_BYTES` (the first
        picture waits for nothing), or ``budget`` bytes if more; :meth:`pump` sends
        the rest. True while some of it is still to send.
        """
        if not packets or self.ended:
            return False
        self.map.replay(packets)
        self._run, self._run_at, self._run_end = packets, 0, len(packets)
        self._pending.clear()
        keyframe_bytes = 0
        for packet in packets:
            if packet.timestamp != packets[0].timestamp:
                break
            keyframe_bytes += len(packet.payload)
        return self.pump(max(budget, min(keyframe_bytes, REPLAY_FIRST_SLICE_BYTES)))

    def pump(self, budget: int = REPLAY_SLICE_BYTES) -> bool:
        """Send up to ``budget`` bytes more of the replay; True while some is left."""
        run = self._run
        if run is None or self.ended:
            return False
        sent = 0
        while self._run_at < self._run_end and sent < budget:
            packet = run[self._run_at]
            self._run_at += 1
            self._send(packet)
            sent += len(packet.payload)
        pending = self._pending
        while self._run_at == self._run_end and pending and sent < budget:
            packet = pending.popleft()
            self._send(packet)
            sent += len(packet.payload)
        if self._run_at == self._run_end and not pending:
            self._stop_replay()
            self._replayed = run
            asyncio.get_running_loop().call_later(REPLAY_KEEP_S, self._forget_replay, run)
            return False
        return True

    def _forget_replay(self, run: list[SourcePacket]) -> None:
        if self._replayed is run:
            self._replayed = None

    def _stop_replay(self) -> None:
        self._run = None
        self._pending.clear()

    def rebase(self) -> None:
        self._stop_replay()
        self._replayed = None
        self.map.rebase()

    def _send(self, packet: SourcePacket) -> None:
        seq, timestamp = self.map.place(packet)
        data = self._writer.packet(seq, timestamp, packet.marker, packet.payload)
        self._history[seq % len(self._history)] = data
        if not self._transmit(data):
            self.dropped += 1
            return
        self.packets_out += 1
        if timestamp != self._clock_ts:
            self._clock_ts = timestamp
            self._link.clock(timestamp, self.feed.ntp_time)
        self._link.count(1, len(packet.payload))

    def retransmit(self, seq: int) -> None:
        """The viewer lost packet ``seq``: send it again if we still hold it.

        Past our history (a cache replay is often longer), the packet is rebuilt
        from the feed (:meth:`Feed.cached_packet`), numbered and timed as it was sent.
        """
        if self.ended or not self._may_resend(seq):
            return
        data = self._history[seq % len(self._history)]
        if data is None or sequence_number(data) != seq:
            data = self._rebuild(seq)
            if data is None:
                self.unanswered += 1
                return
        if self._rtx is not None:
            payload_type, ssrc = self._rtx
            data = self._writer.retransmission(data, payload_type, ssrc, self._rtx_seq)
            self._rtx_seq = (self._rtx_seq + 1) % 65536
        if self._transmit(data):
            self.retransmitted += 1

    def _may_resend(self, seq: int) -> bool:
        now = time.monotonic()
        last = self._resent.get(seq)
        if last is not None and now - last < RESEND_GUARD_S:
            return False
        if len(self._resent) >= 2 * len(self._history):
            self._resent = {s: t for s, t in self._resent.items() if now - t < RESEND_GUARD_S}
        self._resent[seq] = now
        return True

    def _rebuild(self, seq: int) -> bytes | None:
        source_seq = self.map.source_seq(seq)
        if source_seq is None:
            return None
        run = self._run if self._run is not None else self._replayed
        packet = self.feed.cached_packet(source_seq, run)
        if packet is None:
            return None
        return self._writer.packet(seq, self.map.timestamp(packet), packet.marker, packet.payload)

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        self._history = [None]
        self._stop_replay()
        self._replayed = None
        if self.on_end is not None:
            self.on_end()


class PacketTrack(MediaStreamTrack):
    """The track of a viewer's ``RTCRtpSender``: it never yields, packets go past it.

    The sender's RTP loop reads it once the viewer's connection is up; that
    first ``recv`` builds the :class:`PacketViewer` (with ``start``) and joins
    the feed, so a cache replay is not spent on a connection still doing ICE.
    Then it waits, without waking, until the viewer ends.
    """

    def __init__(self, feed: Feed, start: Callable[[], PacketViewer]) -> None:
        super().__init__()
        self.kind = feed.kind
        self.feed = feed
        self.viewer: PacketViewer | None = None
        self._start = start
        self._ended = asyncio.Event()

    async def recv(self) -> av.Packet[Any]:
        if self.viewer is None and not self._ended.is_set():
            self.viewer = self._start()
            self.viewer.on_end = self._ended.set
            self.feed.attach_packets(self.viewer)
        await self._ended.wait()
        raise MediaStreamError

    def stop(self) -> None:
        if self.viewer is not None:
            self.feed.detach_packets(self.viewer)
            self.viewer.end()
        self._ended.set()
        super().stop()


class ViewerTrack(MediaStreamTrack):
    """A frame consumer of a feed (the recorder's tap): frames as ``av.Packet``.

    A sender reading it packetizes ``av.Packet`` input as it is, so no encoder
    runs. The track joins its feed on the first ``recv``.
    """

    def __init__(self, feed: Feed, limit: int | None = None) -> None:
        super().__init__()
        self.kind = feed.kind
        self.feed = feed
        video = feed.kind == "video"
        self._limit = limit or (VIDEO_QUEUE_FRAMES if video else AUDIO_QUEUE_FRAMES)
        self._queue: deque[tuple[bytes, int]] = deque()
        self._wake = asyncio.Event()
        self._attached = False
        self._ended = False
        self._need_keyframe = video
        self._rebase = False
        self._offset = 0
        self._last_ts: int | None = None
        self.frames_out = 0
        self.dropped = 0
        self.skipped = 0

    @property
    def waiting(self) -> bool:
        """Joined, and waiting for a keyframe to (re)start from."""
        return self._attached and self._need_keyframe and not self._ended

    async def recv(self) -> av.Packet[Any]:
        if not self._attached:
            self._attached = True
            self.feed.attach(self)
        while not self._queue:
            if self._ended or self.feed.ended or self.readyState != "live":
                raise MediaStreamError
            self._wake.clear()
            await self._wake.wait()
        data, timestamp = self._queue.popleft()
        packet = av.Packet(data)
        packet.pts = timestamp
        packet.time_base = self.feed.time_base
        self.frames_out += 1
        return packet

    def deliver(self, frame: EncodedFrame) -> None:
        """Queue one frame; never waits. A full queue is dropped as the module says."""
        if not self._attached or self._ended:
            return
        if len(self._queue) >= self._limit:
            if self.kind == "video":
                self.dropped += len(self._queue)
                self._queue.clear()
                self._need_keyframe = True
                if not frame.keyframe:
                    self.feed.keyframe_needed("overflow")
            else:
                self.dropped += 1
                self._queue.popleft()
        if self._need_keyframe:
            if not frame.keyframe:
                self.skipped += 1
                return
            self._need_keyframe = False
        self._push(frame.data, self._place(frame.timestamp))

    def replay(self, frames: list[EncodedFrame]) -> None:
        """Start from ``frames`` (a keyframe and what followed), squeezed to one tick apart."""
        if not frames or self._ended:
            return
        self._need_keyframe = False
        start = self._place(frames[-1].timestamp) - (len(frames) - 1)
        if self._last_ts is not None:
            start = max(start, self._last_ts + 1)
        for n, frame in enumerate(frames):
            self._push(frame.data, start + n)

    def _place(self, timestamp: int) -> int:
        """Our outgoing timestamp for a source timestamp (rebased after a republish)."""
        if self._rebase:
            self._rebase = False
            if self._last_ts is not None:
                self._offset = self._last_ts + self.feed.step - timestamp
        return timestamp + self._offset

    def _push(self, data: bytes, timestamp: int) -> None:
        self._last_ts = timestamp
        self._queue.append((data, timestamp))
        self._wake.set()

    def rebase(self) -> None:
        """The feed's source changed: continue our timestamps, restart at a keyframe."""
        self._rebase = True
        if self.kind == "video":
            self._need_keyframe = True

    def end(self) -> None:
        self._ended = True
        self._wake.set()

    def stop(self) -> None:
        self.feed.detach(self)
        self.end()
        super().stop()
