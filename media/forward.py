"""Fan-out of a publisher's encoded frames to its viewers; nothing here decodes or encodes.

Invariants:

* One :class:`Feed` per published track. A frame enters once (:meth:`Feed.push`,
  called on the event loop by the receiver tap of :mod:`media.hooks`) and is
  handed to every viewer's bounded queue. ``push`` never waits, whatever the
  viewers do.
* A :class:`ViewerTrack` holds at most ``limit`` frames. When full, a video
  viewer drops its whole queue and skips to the next keyframe (asking the
  publisher for one); an audio viewer drops its oldest frame. A slow viewer
  costs only itself.
* A video viewer's first frame is a keyframe. The feed caches the latest
  keyframe and every frame after it (at most :data:`CACHE_MAX_FRAMES` frames
  and :data:`CACHE_MAX_BYTES` bytes, else nothing until the next keyframe).
  A viewer that joins while the cache holds at most
  :data:`CACHE_FRESH_FRAMES` frames starts from it at once, and the publisher
  is not asked for anything. Otherwise the feed asks for a keyframe, and a
  viewer still waiting :data:`KEYFRAME_WAIT_S` later gets the cache after all;
  while anyone waits with nothing cached, the request is repeated.
* A replayed cache is sent with consecutive timestamps (one tick apart)
  ending at the newest frame's, so a receiver's jitter buffer renders it as
  a fast catch-up instead of playing seconds behind live.
* Keyframe requests reach the publisher through one
  :class:`KeyframeRequester` per feed: at most one PLI per interval; a request
  inside the interval is sent when it ends, never lost.
* The timestamps a viewer gets only move forward. When the publisher
  republishes with the same codec the feed carries on, and each viewer
  rebases the new publication's timestamps after what it already sent.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

CACHE_MAX_FRAMES = 150
CACHE_MAX_BYTES = 4 * 1024 * 1024
CACHE_FRESH_FRAMES = 60
KEYFRAME_WAIT_S = 0.5
VIDEO_QUEUE_FRAMES = 90
AUDIO_QUEUE_FRAMES = 100
PLI_INTERVAL_S = 1.0

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
        self._cache: list[EncodedFrame] = []
        self._cache_bytes = 0
        self._h264_params = b""
        self._fallback: asyncio.TimerHandle | None = None

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    @property
    def cached_frames(self) -> int:
        return len(self._cache)

    def start_source(self, source: object) -> None:
        """Frames now come from ``source``; after the first, timestamps and decoding restart."""
        previous, self.source = self.source, source
        if previous is None:
            return
        self._cache = []
        self._cache_bytes = 0
        for viewer in tuple(self._viewers):
            viewer.rebase()

    def source_ended(self, source: object) -> None:
        if source is self.source:
            self.end()

    def push(self, data: bytes, timestamp: int, source: object) -> None:
        """Take one frame from the publisher and hand it to every viewer. Never waits."""
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

    def keyframe_needed(self, reason: str) -> None:
        """A viewer waits for a keyframe: ask, and serve the cache if none comes soon."""
        if self.ended:
            return
        self.keyframes.request(reason)
        if self._fallback is None:
            loop = asyncio.get_running_loop()
            self._fallback = loop.call_later(self._keyframe_wait_s, self._serve_waiting)

    def _serve_waiting(self) -> None:
        self._fallback = None
        waiting = [v for v in self._viewers if v.waiting]
        if not waiting:
            return
        if not self._cache:
            self.keyframe_needed("retry")
            return
        for viewer in waiting:
            self.cache_replays += 1
            viewer.replay(self._cache)

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
        self.keyframes.close()
        if self._fallback is not None:
            self._fallback.cancel()
            self._fallback = None
        for viewer in tuple(self._viewers):
            viewer.end()
        self._viewers.clear()


class ViewerTrack(MediaStreamTrack):
    """What one viewer's ``RTCRtpSender`` reads: the feed's frames as ``av.Packet``.

    The sender packetizes ``av.Packet`` input as it is, so no encoder runs. The
    track joins its feed on the first ``recv``, that is once the viewer's
    connection is up, so the cache replay is not spent on a connection still
    doing ICE.
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
