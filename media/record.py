"""Recording of publishers' encoded media, remuxed with PyAV; nothing here decodes or encodes.

A :class:`RoomRecording` is one recording session of one room: it owns one
:class:`PublisherRecorder` per publisher (host and co-hosts) and a timeline of
room events in JSON lines. Files are named by room, publisher and start time
(:func:`segment_name`) in the room's folder (:func:`room_dir`); a manifest
(``<room>_<start>.json``) lists every segment with its start offset from the
recording start.

Invariants:

* A recorder joins a publisher's :class:`~media.forward.Feed` like a viewer
  (a :class:`RecorderTap`), so a frame reaches it through the same single
  :meth:`Feed.push`. ``deliver`` only appends to a bounded queue and never
  waits; when the queue is full the frame is dropped and counted (a dropped
  video frame makes the recorder wait for the next keyframe), so a slow disk
  never slows forwarding.
* Packets are written exactly as the publisher encoded them (VP8/Opus into
  WebM, H.264/Opus into MP4, see :func:`container_for`). The muxing runs in a
  worker thread, one batch at a time, never on the event loop.
* A video segment starts at a keyframe. A segment is rolled at the first
  keyframe after ``segment_s`` seconds, and when the publisher republishes
  (its timestamps restart), so a crash loses at most one segment; every
  closed segment is a finished, playable file.
* Presentation times are per stream RTP time (unwrapped) anchored on arrival
  time at the segment start, so audio and video of a segment line up.
* A segment's ``offset`` is its first frame's time from the recording start;
  it may be a little negative when the recording starts from the keyframe the
  feed had cached (those frames are dated from their RTP timestamps).
* Timeline offsets are seconds from the recording start (``time.time`` at
  :meth:`RoomRecording.start`), the same clock as segment offsets.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from media.forward import EncodedFrame, Feed, ViewerTrack

log = logging.getLogger(__name__)

SEGMENT_S = 300.0
QUEUE_FRAMES = 600
_SAFE = re.compile(r"[^A-Za-z0-9_-]+")
_OPUS_HEAD = b"OpusHead" + bytes([1, 2]) + struct.pack("<HIh", 312, 48000, 0) + b"\x00"


def container_for(video_codec: str | None) -> tuple[str, str]:
    """The (ffmpeg format, file extension) for a publication's video codec (None: no video)."""
    if video_codec is not None and video_codec.lower() == "h264":
        return "mp4", "mp4"
    return "webm", "webm"


def stamp(wall: float) -> str:
    """A UTC start time for file names, to the millisecond: ``20261123T203504.123Z``."""
    whole = time.strftime("%Y%m%dT%H%M%S", time.gmtime(wall))
    return f"{whole}.{int(wall * 1000) % 1000:03d}Z"


def safe(name: str) -> str:
    """``name`` reduced to characters safe in a file name."""
    return _SAFE.sub("_", name) or "_"


def room_dir(base: Path, room: str) -> Path:
    """The folder of ``room``'s recordings: its safe name and a hash, so no two rooms share it."""
    digest = hashlib.sha256(room.encode()).hexdigest()[:10]
    return base / f"{safe(room)}-{digest}"


def recording_name(room: str, started: float) -> str:
    """The base name of a recording session: room and start time."""
    return f"{safe(room)}_{stamp(started)}"


def segment_name(room: str, publisher: str, started: float, ext: str) -> str:
    """A segment file: room, publisher and the segment's own start time."""
    return f"{safe(room)}_{safe(publisher)}_{stamp(started)}.{ext}"


def timeline_offset(recording_start: float, at: float) -> float:
    """Seconds from the recording start, to the millisecond, never negative."""
    return round(max(0.0, at - recording_start), 3)


def vp8_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe header (RFC 6386 9.1)."""
    if len(data) < 10 or data[0] & 0x01 or data[3:6] != b"\x9d\x01\x2a":
        return None
    width, height = struct.unpack_from("<HH", data, 6)
    return width & 0x3FFF, height & 0x3FFF


class RecorderTap(ViewerTrack):
    """A feed's viewer that hands every frame, untouched, to a recorder's queue."""

    def __init__(self, feed: Feed, sink: Callable[[str, EncodedFrame, float], None]) -> None:
        super().__init__(feed)
        self._sink = sink
        self._attached = True  # frames flow from attach on; there is no sender to wait for
        self.restarted = False

    def deliver(self, frame: EncodedFrame) -> None:
        if frame.keyframe:
            self._need_keyframe = False  # the feed stops serving us its cache
        self._sink(self.kind, frame, 0.0)

    def replay(self, frames: list[EncodedFrame]) -> None:
        self._need_keyframe = False
        rate = self.feed.codec.clockRate
        for frame in frames:  # the cached keyframe and what followed, dated when they came
            age = ((frames[-1].timestamp - frame.timestamp) & 0xFFFFFFFF) / rate
            self._sink(self.kind, frame, age if age < 60 else 0.0)

    def rebase(self) -> None:
        self.restarted = True
        self._sink("restart", EncodedFrame(b"", 0, False), 0.0)

    def start(self) -> None:
        self.feed.attach(self)

    def stop(self) -> None:
        self.feed.detach(self)
        self.end()


@dataclass
class Segment:
    """One file of one publisher."""

    file: str
    publisher: str
    started: float
    offset: float
    container: str
    frames: dict[str, int] = field(default_factory=dict)
    closed: bool = False
    end: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "publisher": self.publisher,
            "started": round(self.started, 3),
            "offset": self.offset,
            "container": self.container,
            "frames": dict(self.frames),
            "closed": self.closed,
            "end": self.end,
        }


@dataclass
class _Stream:
    stream: Any
    time_base: Fraction
    first_ts: int
    last_raw: int
    unwrapped: int
    base_pts: int


class _Writer:
    """One open container (runs in a worker thread only)."""

    def __init__(self, path: Path, fmt: str, feeds: dict[str, Feed], opened: float) -> None:
        self.path = path
        self.container: Any = av.open(str(path), "w", format=fmt)
        self.feeds = feeds
        self.opened = opened
        self.last = opened
        self.streams: dict[str, _Stream] = {}
        self.frames: dict[str, int] = {}
        self._added = False

    def _add_streams(self, first: EncodedFrame) -> None:
        self._added = True
        video = self.feeds.get("video")
        if video is not None:
            stream = self.container.add_stream(video.name, rate=30)
            size = vp8_size(first.data) if video.name == "vp8" else None
            if size is not None:  # H.264: the MP4 muxer reads the size from the SPS
                stream.width, stream.height = size
            stream.time_base = video.time_base
            self.streams["video"] = _Stream(stream, video.time_base, 0, 0, 0, 0)
        audio = self.feeds.get("audio")
        if audio is not None:
            stream = self.container.add_stream(audio.name, rate=audio.codec.clockRate)
            if audio.name == "opus":
                stream.codec_context.extradata = _OPUS_HEAD
            stream.time_base = audio.time_base
            self.streams["audio"] = _Stream(stream, audio.time_base, 0, 0, 0, 0)
        for state in self.streams.values():
            state.first_ts = -1

    def write(self, kind: str, frame: EncodedFrame, arrived: float) -> None:
        if not self._added:
            self._add_streams(frame)
        self.last = max(self.last, arrived)
        state = self.streams.get(kind)
        if state is None:
            return
        if state.first_ts < 0:
            state.first_ts = state.last_raw = frame.timestamp
            state.base_pts = round(max(0.0, arrived - self.opened) / state.time_base)
        delta = (frame.timestamp - state.last_raw) & 0xFFFFFFFF
        if delta >= 0x80000000:  # a frame from the past: keep the order the muxer needs
            delta = 0
        state.last_raw = frame.timestamp
        state.unwrapped += delta
        packet = av.Packet(frame.data)
        packet.pts = packet.dts = state.base_pts + state.unwrapped
        packet.time_base = state.time_base
        packet.stream = state.stream
        packet.is_keyframe = frame.keyframe
        try:
            self.container.mux(packet)
        except (
            ValueError
        ):  # av.error.ValueError:  # non-monotonic time after a hiccup: skip the frame
            return
        self.frames[kind] = self.frames.get(kind, 0) + 1

    def close(self) -> None:
        self.container.close()


class PublisherRecorder:
    """Records one publisher's feeds into rolling segment files."""

    def __init__(
        self,
        room: str,
        publisher: str,
        feeds: dict[str, Feed],
        directory: Path,
        recording_start: float,
        *,
        segment_s: float = SEGMENT_S,
        queue_frames: int = QUEUE_FRAMES,
        on_segment: Callable[[Segment], None] | None = None,
    ) -> None:
        self.room = room
        self.publisher = publisher
        self.feeds = {k: f for k, f in feeds.items() if k in ("audio", "video")}
        self.directory = directory
        self.recording_start = recording_start
        self.segment_s = segment_s
        self.queue_frames = queue_frames
        self.segments: list[Segment] = []
        self.dropped = 0
        self.written = 0
        self.cpu_s = 0.0
        self._on_segment = on_segment
        self._queue: deque[tuple[str, EncodedFrame, float]] = deque()
        self._wake = asyncio.Event()
        self._need_keyframe = "video" in self.feeds
        self._taps: list[RecorderTap] = []
        self._writer: _Writer | None = None
        self._segment: Segment | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.fmt, self.ext = container_for(
            self.feeds["video"].name if "video" in self.feeds else None
        )

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        for feed in self.feeds.values():
            tap = RecorderTap(feed, self._take)
            self._taps.append(tap)
            tap.start()

    # -- on the forwarding path: append only ------------------------------------------

    def _take(self, kind: str, frame: EncodedFrame, age: float) -> None:
        if self._stopping:
            return
        if kind == "restart":
            self._need_keyframe = "video" in self.feeds
            self._queue.append((kind, frame, time.time()))  # never dropped: it rolls the file
            self._wake.set()
            return
        if kind == "video" and self._need_keyframe:
            if not frame.keyframe:
                return
            self._need_keyframe = False
        if len(self._queue) >= self.queue_frames:
            self.dropped += 1
            if kind == "video":
                self._need_keyframe = True
            return
        self._queue.append((kind, frame, time.time() - age))
        self._wake.set()

    # -- writer -----------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    break
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = list(self._queue)
            self._queue.clear()
            await asyncio.to_thread(self._write_batch, batch)
        await asyncio.to_thread(self._close_segment)

    def _write_batch(self, batch: list[tuple[str, EncodedFrame, float]]) -> None:
        began = time.thread_time()
        try:
            for kind, frame, arrived in batch:
                self._write_one(kind, frame, arrived)
        except Exception:
            log.exception("recording %s/%s: write failed", self.room, self.publisher)
            self._close_segment()
        finally:
            self.cpu_s += time.thread_time() - began

    def _write_one(self, kind: str, frame: EncodedFrame, arrived: float) -> None:
        if kind == "restart":
            self._close_segment()
            return
        has_video = "video" in self.feeds
        boundary = kind == "video" and frame.keyframe if has_video else True
        writer = self._writer
        if writer is not None and boundary and arrived - writer.opened >= self.segment_s:
            self._close_segment()
        if self._writer is None:
            if has_video and not (kind == "video" and frame.keyframe):
                return  # a segment starts with a video keyframe
            self._open_segment(arrived, frame)
        assert self._writer is not None
        self._writer.write(kind, frame, arrived)
        self.written += 1

    def _open_segment(self, arrived: float, first: EncodedFrame) -> None:
        name = segment_name(self.room, self.publisher, arrived, self.ext)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._writer = _Writer(self.directory / name, self.fmt, self.feeds, arrived)
        self._segment = Segment(
            name,
            self.publisher,
            arrived,
            round(arrived - self.recording_start, 3),  # < 0: began with cached frames
            self.fmt,
        )
        self.segments.append(self._segment)
        if self._on_segment is not None:
            self._on_segment(self._segment)

    def _close_segment(self) -> None:
        writer, segment = self._writer, self._segment
        self._writer = self._segment = None
        if writer is None or segment is None:
            return
        try:
            writer.close()
        except Exception:
            log.exception("recording %s: finalising %s failed", self.room, writer.path)
        segment.frames = dict(writer.frames)
        segment.end = round(writer.last - self.recording_start, 3)
        segment.closed = True
        if self._on_segment is not None:
            self._on_segment(segment)

    async def stop(self) -> None:
        """Leave the feeds, write what is queued and finalise the open segment."""
        for tap in self._taps:
            tap.stop()
        self._stopping = True
        self._wake.set()
        if self._task is not None:  # shielded: a cancelled caller still gets a whole file
            await asyncio.shield(self._task)


class RoomRecording:
    """One recording session of a room: publishers' segments, a timeline, a manifest.

    Everything goes to the room's own folder under ``directory`` (:func:`room_dir`).
    """

    def __init__(
        self,
        room: str,
        directory: Path,
        *,
        segment_s: float = SEGMENT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.room = room
        self.directory = directory = room_dir(directory, room)
        self.segment_s = segment_s
        self.started = clock()
        self.name = recording_name(room, self.started)
        self.timeline = directory / f"{self.name}.timeline.jsonl"
        self.manifest = directory / f"{self.name}.json"
        self.recorders: dict[str, PublisherRecorder] = {}
        self.finished: list[PublisherRecorder] = []
        self._clock = clock
        self._save_lock = threading.Lock()
        self.stopped: float | None = None
        directory.mkdir(parents=True, exist_ok=True)
        # Kept open, line-buffered: one small write per event, each line on disk at once.
        self._timeline_out = self.timeline.open("a", encoding="utf-8", buffering=1)
        self._save()

    def add_publisher(self, publisher: str, feeds: dict[str, Feed]) -> None:
        """Record ``publisher`` (again, after a reconnect with new feeds) from now on."""
        old = self.recorders.get(publisher)
        if old is not None and all(old.feeds.get(k) is f for k, f in feeds.items()):
            return
        if old is not None:
            self.finished.append(old)
            asyncio.get_running_loop().create_task(old.stop())
        recorder = PublisherRecorder(
            self.room,
            publisher,
            feeds,
            self.directory,
            self.started,
            segment_s=self.segment_s,
            on_segment=lambda _s: self._save(),
        )
        self.recorders[publisher] = recorder
        recorder.start()

    async def remove_publisher(self, publisher: str) -> None:
        """Stop recording ``publisher``: its open segment is finalised."""
        recorder = self.recorders.pop(publisher, None)
        if recorder is not None:
            self.finished.append(recorder)
            await recorder.stop()
            self._save()

    def note(self, event: dict[str, Any]) -> None:
        """Append one room event to the timeline, with its offset from the start."""
        if self._timeline_out.closed:
            return
        line = {"offset": timeline_offset(self.started, self._clock()), **event}
        self._timeline_out.write(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n")

    async def stop(self) -> None:
        """Finalise every publisher's open segment and the manifest."""
        self.finished.extend(self.recorders.values())
        self.recorders.clear()
        # Also those being retired elsewhere: stop() waits for the same writer.
        await asyncio.gather(*(r.stop() for r in self.finished))
        self.stopped = self._clock()
        self._timeline_out.close()
        self._save()

    def segments(self) -> list[Segment]:
        recorders = [*self.finished, *self.recorders.values()]
        return sorted((s for r in recorders for s in r.segments), key=lambda s: s.started)

    def stats(self) -> dict[str, Any]:
        recorders = [*self.finished, *self.recorders.values()]
        return {
            "written": sum(r.written for r in recorders),
            "dropped": sum(r.dropped for r in recorders),
            "cpu_s": sum(r.cpu_s for r in recorders),
        }

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "room": self.room,
            "started": round(self.started, 3),
            "stopped": None if self.stopped is None else round(self.stopped, 3),
            "timeline": self.timeline.name,
            "segments": [s.to_json() for s in self.segments()],
        }

    def _save(self) -> None:
        """Rewrite the manifest atomically; recorders' writer threads call this too."""
        with self._save_lock:
            temp = self.manifest.with_suffix(".tmp")
            temp.write_text(json.dumps(self.describe(), indent=1), encoding="utf-8")
            temp.replace(self.manifest)


def list_recordings(directory: Path, room: str) -> list[dict[str, Any]]:
    """The manifests of ``room``'s recordings in ``directory``, with file sizes, oldest first."""
    found = []
    prefix = safe(room) + "_"
    directory = room_dir(directory, room)
    if not directory.is_dir():
        return []
    for path in sorted(directory.glob(f"{prefix}*.json")):
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(manifest, dict) or manifest.get("room") != room:
            continue
        for segment in manifest.get("segments", []):
            file = directory / str(segment.get("file", ""))
            segment["size"] = file.stat().st_size if file.is_file() else 0
        found.append(manifest)
    return found
