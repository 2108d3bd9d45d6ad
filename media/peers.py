"""Synthetic WebRTC peers on aiortc, for the media tests and ``python -m media.bench``.

A :class:`Publisher` sends video whose frames carry their own number, drawn as
a 4x4 grid of black and white blocks (16 bits, robust to lossy coding), and
silent Opus audio. A :class:`Viewer` sends a recvonly offer and records, for
each decoded video frame, its number and when it was decoded, so tests can
check order and benchmarks can measure latency. With ``decode=False`` a
viewer counts encoded frames without decoding them (the receiver is tapped
like the SFU's), which lets one machine host many viewers.

Both gather ICE candidates only on the given addresses (127.0.0.1 in tests),
through the same hook as the server.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from av import VideoFrame

from media import hooks

LOOPBACK = ("127.0.0.1",)
GRID = 4
BITS = GRID * GRID
VIDEO_CLOCK = 90_000


def draw_counter(number: int, width: int, height: int, noise_rows: int = 0) -> VideoFrame:
    """A yuv420p frame showing ``number`` (mod 2**16) as blocks; optional noise below them."""
    rows = height - noise_rows
    luma = np.zeros((height, width), dtype=np.uint8)
    bw, bh = width // GRID, rows // GRID
    for bit in range(BITS):
        if number >> bit & 1:
            y, x = divmod(bit, GRID)
            luma[y * bh : (y + 1) * bh, x * bw : (x + 1) * bw] = 255
    if noise_rows:
        luma[rows:] = np.random.randint(0, 256, (noise_rows, width), dtype=np.uint8)
    chroma = np.full((height // 2, width), 128, dtype=np.uint8)
    return VideoFrame.from_ndarray(np.vstack([luma, chroma]), format="yuv420p")


def read_counter(frame: VideoFrame, noise_rows: int = 0) -> int:
    """The number :func:`draw_counter` drew, read from the centre of each block."""
    luma = frame.to_ndarray(format="gray")
    height, width = luma.shape
    bw, bh = width // GRID, (height - noise_rows) // GRID
    number = 0
    for bit in range(BITS):
        y, x = divmod(bit, GRID)
        if luma[y * bh + bh // 2, x * bw + bw // 2] > 128:
            number |= 1 << bit
    return number


def rows_of_noise(height: int, noise: bool | int) -> int:
    """Rows of noise a :class:`CounterTrack` draws for its ``noise`` argument."""
    if noise is True:
        return height // 4
    return int(noise)


class CounterTrack(MediaStreamTrack):
    """Video at ``fps`` whose frame ``n`` shows ``n``; remembers when each was captured."""

    kind = "video"

    def __init__(
        self, width: int = 320, height: int = 240, fps: int = 30, noise: bool | int = False
    ):
        """``noise``: True for random rows under a quarter of the frame (a stream of
        several Mbit/s at 640x360), or how many rows (fewer rows, a lighter stream)."""
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self.noise_rows = rows_of_noise(height, noise)
        self.count = 0
        self.captured: dict[int, float] = {}
        self._start: float | None = None

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            due = self._start + self.count / self.fps
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        frame = draw_counter(self.count, self.width, self.height, self.noise_rows)
        frame.pts = self.count * (VIDEO_CLOCK // self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.captured[self.count % (1 << BITS)] = time.time()
        self.count += 1
        return frame


async def _gather_offer(pc: RTCPeerConnection, addresses: Sequence[str]) -> str:
    offer = await pc.createOffer()
    with hooks.host_addresses(addresses):
        await pc.setLocalDescription(offer)
    sdp: str = pc.localDescription.sdp
    return sdp


def _capability(kind: str, name: str) -> list[Any]:
    return [
        c
        for c in RTCRtpSender.getCapabilities(kind).codecs
        if c.mimeType.lower() in (f"{kind}/{name.lower()}", f"{kind}/rtx")
    ]


class Publisher:
    """An aiortc peer sending a :class:`CounterTrack` (VP8 or H.264) and/or silent Opus."""

    def __init__(
        self,
        codec: str = "VP8",
        *,
        audio: bool = True,
        video: bool = True,
        width: int = 320,
        height: int = 240,
        fps: int = 30,
        noise: bool | int = False,
        max_bitrate: int | None = None,
        addresses: Sequence[str] = LOOPBACK,
    ) -> None:
        """``max_bitrate`` (bit/s) holds the video encoder under it, whatever the
        server's estimate allows."""
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.video = CounterTrack(width, height, fps, noise)
        self.addresses = addresses
        self.keyframe_requests = 0
        self.keyframe_requested_at: list[float] = []
        if video:
            transceiver = self.pc.addTransceiver(self.video, direction="sendonly")
            transceiver.setCodecPreferences(_capability("video", codec))
            original = transceiver.sender._send_keyframe

            def counted() -> None:
                self.keyframe_requests += 1
                self.keyframe_requested_at.append(time.monotonic())
                original()

            hooks.on_keyframe_request(transceiver.sender, counted)
            if max_bitrate is not None:
                hooks.cap_bitrate(transceiver.sender, max_bitrate)
        if audio:
            self.pc.addTransceiver(AudioStreamTrack(), direction="sendonly")

    async def offer(self) -> str:
        return await _gather_offer(self.pc, self.addresses)

    async def accept(self, answer: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def close(self) -> None:
        self.video.stop()
        await self.pc.close()


@dataclass
class Received:
    """What a viewer got: decoded frame numbers with their decode times, audio frames."""

    numbers: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    encoded_frames: int = 0
    audio_frames: int = 0
    first_frame_at: float | None = None
    video_ended: bool = False


class Viewer:
    """An aiortc peer receiving one publisher's audio and video through the SFU."""

    def __init__(
        self,
        *,
        audio: bool = True,
        video: bool = True,
        decode: bool = True,
        noise_rows: int = 0,
        addresses: Sequence[str] = LOOPBACK,
    ) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.addresses = addresses
        self.decode = decode
        self.noise_rows = noise_rows
        self.got = Received()
        self.frame_arrived = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        if audio:
            self.pc.addTransceiver("audio", direction="recvonly")
        if video:
            self.pc.addTransceiver("video", direction="recvonly")
        for transceiver in self.pc.getTransceivers():
            hooks.repeat_nacks(transceiver.receiver)  # as browsers do, every round trip
            hooks.drop_late_packets(transceiver.receiver)  # as browsers do, not a restart
        if not decode:
            for transceiver in self.pc.getTransceivers():
                sink = self._encoded_video if transceiver.kind == "video" else self._encoded_audio
                hooks.tap_receiver(transceiver.receiver, sink, lambda: None)
        self.pc.on("track", self._track)

    def _encoded_video(self, codec: RTCRtpCodecParameters, frame: JitterFrame) -> None:
        self._mark_frame()
        self.got.encoded_frames += 1

    def _encoded_audio(self, codec: RTCRtpCodecParameters, frame: JitterFrame) -> None:
        self.got.audio_frames += 1

    def _mark_frame(self) -> None:
        if self.got.first_frame_at is None:
            self.got.first_frame_at = time.monotonic()
        self.frame_arrived.set()

    def _track(self, track: MediaStreamTrack) -> None:
        if not self.decode:
            return
        reader = self._read_video if track.kind == "video" else self._read_audio
        self._tasks.append(asyncio.ensure_future(reader(track)))

    async def _read_video(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                assert isinstance(frame, VideoFrame)
                self.got.numbers.append(read_counter(frame, self.noise_rows))
                self.got.times.append(time.time())
                self._mark_frame()
        except MediaStreamError:
            self.got.video_ended = True

    async def _read_audio(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
                self.got.audio_frames += 1
        except MediaStreamError:
            pass

    async def offer(self) -> str:
        return await _gather_offer(self.pc, self.addresses)

    async def accept(self, answer: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def answer(self, offer: str) -> str:
        """Answer a server's offer: Janus offers to its subscribers (the bench's baseline)."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        answer = await self.pc.createAnswer()
        with hooks.host_addresses(self.addresses):
            await self.pc.setLocalDescription(answer)
        sdp: str = self.pc.localDescription.sdp
        return sdp

    async def wait_frames(self, count: int, timeout: float) -> None:
        """Wait until ``count`` video frames arrived (decoded, or encoded when not decoding)."""
        async with asyncio.timeout(timeout):
            while self.frames < count:
                self.frame_arrived.clear()
                await self.frame_arrived.wait()

    @property
    def frames(self) -> int:
        return len(self.got.numbers) if self.decode else self.got.encoded_frames

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
