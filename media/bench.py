"""``python -m media.bench``: the SFU's forwarding against ``MediaRelay`` and Janus, measured alike.

Run it inside a private network namespace (it refuses to run elsewhere):

    unshare --net sh -c 'ip link set lo up && python3 -m media.bench'

For each mode (``sfu``: this package; ``relay``: ``MediaRelay``, which decodes
the publisher once and re-encodes per viewer; ``janus``: Janus 1.1's VideoRoom,
the C SFU the issue compares against, see :mod:`media.janus`) it starts the
server (for ``sfu`` and ``relay`` the real room server) in its own process,
publishes a 640x360 30 fps VP8 stream (a band of ``--noise-rows`` random rows
makes the encoder spend its bitrate, capped at ``--kbps``, 800 by default as
in the issue's scenario) plus Opus from this process, reports the bitrate and
packet rate it really sent, and then measures, with viewers in separate
processes speaking the room protocol (or Janus's API):

* server CPU (from ``/proc/PID/stat``, all threads) and RSS with 0, 1, 8, 32
  and 64 viewers, after every viewer received video, over ``--window``
  seconds; per viewer is the increase over 0 viewers, divided by the count.
  These viewers count frames without decoding them, so the machine's two
  cores go to the server;
* time from sending ``rtc.subscribe`` to the first decoded frame, for 20
  viewers subscribing at once (p50/p95);
* capture-to-decode latency (p50/p95): the publisher notes when it made each
  numbered frame, viewers read the number back from the decoded pixels.

Prints a JSON document and a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.stats import RTCOutboundRtpStreamStats

from media import hooks, janus
from media.ice import IcePolicy
from media.peers import Publisher, Viewer
from roomserver import config
from roomserver.app import build_app
from roomserver.auth import mint_token
from roomserver.errors import NotFound
from signaling.client import RoomClient
from signaling.server import NODE_KEY

SECRET = "bench-secret-0123456789-abcdefghijklmnop"
ROOM = "bench"
LOOPBACK = ("127.0.0.1",)
WIDTH, HEIGHT, FPS = 640, 360, 30
VIEWERS_PER_PROCESS = 16
#: Random rows under the counter: about 800 kbit/s of VP8 at 640x360, 30 fps, 3 packets a frame.
NOISE_ROWS = 16
#: The publisher's video bitrate cap, kbit/s: the issue's scenario.
KBPS = 800
CLK_TCK = os.sysconf("SC_CLK_TCK")

#: Sends the publisher's offer to the server under test; returns its answer.
Publish = Callable[[str], Awaitable[str]]


# -- the baseline: aiortc's MediaRelay behind the same node --------------------------------


class RelayBackend:
    """A MediaBackend on ``MediaRelay``: one decoder per publisher track, one encoder per viewer."""

    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.ice = IcePolicy.from_settings(LOOPBACK, ())
        self.sources: dict[tuple[str, str], dict[str, MediaStreamTrack]] = {}
        self.pcs: dict[tuple[str, str, str | None], RTCPeerConnection] = {}
        self.drains: list[asyncio.Future[None]] = []

    async def _answer(self, pc: RTCPeerConnection, sdp: str) -> str:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        answer = await pc.createAnswer()
        with self.ice.gathering():
            await pc.setLocalDescription(answer)
        local: str = pc.localDescription.sdp
        return local

    async def publish(self, room: str, user: str, sdp: str) -> str:
        pc = RTCPeerConnection(self.ice.configuration())
        tracks: dict[str, MediaStreamTrack] = {}

        def on_track(track: MediaStreamTrack) -> None:
            tracks[track.kind] = track
            # Decode from the start, as a relay server does: otherwise the first viewer
            # would get (and pay for) every frame decoded since the publication began.
            self.drains.append(asyncio.ensure_future(_drain(self.relay.subscribe(track))))

        pc.on("track", on_track)
        answer = await self._answer(pc, sdp)
        self.sources[(room, user)] = tracks
        self.pcs[(room, user, None)] = pc
        return answer

    async def subscribe(self, room: str, user: str, publisher: str, sdp: str, tab: str = "") -> str:
        tracks = self.sources.get((room, publisher))
        if not tracks:
            raise NotFound(f"{publisher!r} is not publishing")
        pc = RTCPeerConnection(self.ice.configuration())
        for track in tracks.values():
            pc.addTrack(self.relay.subscribe(track))
        self.pcs[(room, user, publisher)] = pc
        return await self._answer(pc, sdp)

    async def _drop(self, keys: list[tuple[str, str, str | None]]) -> None:
        for key in keys:
            pc = self.pcs.pop(key, None)
            if pc is not None:
                await pc.close()

    async def unpublish(self, room: str, user: str) -> None:
        self.sources.pop((room, user), None)
        await self._drop([k for k in self.pcs if k[0] == room and user in (k[1], k[2])])

    async def unsubscribe(self, room: str, user: str, publisher: str, tab: str = "") -> None:
        await self._drop([(room, user, publisher)])

    async def member_gone(self, room: str, user: str, tab: str = "") -> None:
        await self._drop([k for k in self.pcs if k[0] == room and k[1] == user])

    async def room_ended(self, room: str) -> None:
        await self._drop([k for k in self.pcs if k[0] == room])

    async def guests_gone(self, room: str, prefix: str) -> None:
        await self._drop([k for k in self.pcs if k[0] == room and k[1].startswith(prefix)])

    async def close(self) -> None:
        for drain in self.drains:
            drain.cancel()
        await self._drop(list(self.pcs))


async def _drain(track: MediaStreamTrack) -> None:
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()


# -- server process --------------------------------------------------------------------------


async def serve(mode: str) -> None:
    settings = config.load(
        {},
        environ={},
        host="127.0.0.1",
        port=0,
        secret=SECRET,
        rtc_ip=LOOPBACK,
        media=mode == "sfu",
        log_level="warning",
    )
    app = build_app(settings)
    if mode == "relay":
        app[NODE_KEY].media = RelayBackend()
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"PORT {runner.addresses[0][1]}", flush=True)
    await _line()  # the orchestrator closes our stdin to stop us
    await runner.cleanup()


async def _line() -> str:
    line: str = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return line.strip()


# -- viewer process --------------------------------------------------------------------------


class RoomSubscriptions:
    """Viewers subscribing through the room protocol: offer, ``rtc.subscribe``, answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.clients: list[RoomClient] = []

    async def join(self, count: int) -> None:
        tag = f"p{os.getpid()}"
        for n in range(count):
            token = mint_token(SECRET, room=ROOM, user=f"{tag}-{n}", name="Viewer", role="member")
            client = await RoomClient.connect(self.url)
            await client.request("join", room=ROOM, token=token)
            self.clients.append(client)

    async def subscribe(self, n: int, viewer: Viewer, sent: list[float]) -> float:
        """Subscribe ``viewer``, noting in ``sent[n]`` when it asked; seconds to the answer."""
        offer = await viewer.offer()
        sent[n] = time.monotonic()
        reply = await self.clients[n].request(
            "rtc.subscribe", room=ROOM, publisher="host", sdp=offer, timeout=60
        )
        answered = time.monotonic() - sent[n]
        await viewer.accept(reply["sdp"])
        return answered

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


class JanusSubscriptions:
    """Viewers subscribing to Janus's VideoRoom: join, Janus's offer, our answer, start.

    The viewer makes its answer (and gathers) after the clock starts, where a
    viewer of our SFU makes its offer before: Janus's figures include it.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.http: aiohttp.ClientSession | None = None
        self.session: janus.JanusSession | None = None

    async def join(self, count: int) -> None:
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self.session = await janus.JanusSession.create(self.http, self.url)

    async def subscribe(self, n: int, viewer: Viewer, sent: list[float]) -> float:
        assert self.session is not None
        sent[n] = time.monotonic()
        handle, offer = await janus.subscribe_offer(self.session)
        answered = time.monotonic() - sent[n]
        await janus.start(self.session, handle, await viewer.answer(offer))
        return answered

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.http is not None:
            await self.http.close()


async def view(
    url: str, count: int, decode: bool, frames: int, noise: int, to_janus: bool = False
) -> None:
    """Join ``count`` viewers; on GO subscribe all at once; on STOP report and leave.

    With ``frames`` > 0 a viewer hangs up after that many frames, so that 20
    decoders starting at once do not starve the machine for the whole run.
    """
    path = JanusSubscriptions(url) if to_janus else RoomSubscriptions(url)
    await path.join(count)
    print("JOINED", flush=True)
    assert await _line() == "GO"
    viewers = [Viewer(decode=decode, addresses=LOOPBACK, noise_rows=noise) for _ in range(count)]
    sent = [0.0] * count
    answered = [math.nan] * count
    connected = [math.nan] * count

    def on_state(n: int) -> None:
        if viewers[n].pc.connectionState == "connected":
            connected[n] = time.monotonic() - sent[n]

    for n, viewer in enumerate(viewers):
        viewer.pc.on("connectionstatechange", functools.partial(on_state, n))

    async def subscribe(n: int) -> None:
        answered[n] = await path.subscribe(n, viewers[n], sent)
        if frames:
            with contextlib.suppress(TimeoutError):
                await viewers[n].wait_frames(frames, 60)
            await viewers[n].pc.close()

    hangups = [asyncio.ensure_future(subscribe(n)) for n in range(count)]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(v.wait_frames(1, 60) for v in viewers)), 60)
    print("READY", flush=True)
    assert await _line() == "STOP"
    await asyncio.gather(*hangups)
    stopped = time.monotonic()
    report = []
    for n, viewer in enumerate(viewers):
        got = viewer.got
        first = None if got.first_frame_at is None else got.first_frame_at - sent[n]
        watched = 0.0 if got.first_frame_at is None else stopped - got.first_frame_at
        report.append(
            {
                "answer_s": answered[n],
                "connected_s": connected[n],
                "first_frame_s": first,
                "frames": viewer.frames,
                "fps": viewer.frames / watched if watched > 0 else 0.0,
                "numbers": got.numbers,
                "times": got.times,
            }
        )
    print("RESULT " + json.dumps(report), flush=True)
    for viewer in viewers:
        await viewer.close()
    await path.close()


# -- orchestration ---------------------------------------------------------------------------


@dataclass
class Child:
    proc: asyncio.subprocess.Process

    @classmethod
    async def start(cls, *args: str) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "media.bench",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
        )
        return cls(proc)

    async def expect(self, prefix: str, timeout: float = 120) -> str:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    raise RuntimeError(f"child {self.proc.pid} ended before {prefix}")
                line = raw.decode().strip()
                if line.startswith(prefix):
                    return line[len(prefix) :].strip()

    def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())

    async def finish(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, all threads


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


def _machine_busy() -> tuple[int, int]:
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


async def sample_cpu(pid: int, seconds: float, clients: Sequence[int] = ()) -> dict[str, float]:
    """CPU (% of one core) of the server ``pid`` and of our ``clients``, the server's RSS,
    and the machine's load (% of all cores) over ``seconds``."""
    clients = [os.getpid(), *clients]
    busy0, total0 = _machine_busy()
    ticks0, t0 = _cpu_ticks(pid), time.monotonic()
    client0 = sum(_cpu_ticks(c) for c in clients)
    await asyncio.sleep(seconds)
    ticks1, t1 = _cpu_ticks(pid), time.monotonic()
    client1 = sum(_cpu_ticks(c) for c in clients)
    busy1, total1 = _machine_busy()
    return {
        "cpu_pct": 100.0 * (ticks1 - ticks0) / CLK_TCK / (t1 - t0),
        "clients_cpu_pct": 100.0 * (client1 - client0) / CLK_TCK / (t1 - t0),
        "rss_mb": _rss_mb(pid),
        "machine_busy_pct": 100.0 * (busy1 - busy0) / max(1, total1 - total0),
    }


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def viewers(
    url: str,
    total: int,
    decode: bool,
    frames: int = 0,
    per_process: int = VIEWERS_PER_PROCESS,
    noise: int = NOISE_ROWS,
    to_janus: bool = False,
) -> list[Child]:
    """Start ``total`` viewers over a few processes; return once all have joined."""
    children = []
    left = total
    while left > 0:
        count = min(per_process, left)
        left -= count
        children.append(
            await Child.start(
                "view",
                "--url",
                url,
                "--count",
                str(count),
                "--decode",
                str(decode),
                "--frames",
                str(frames),
                "--noise-rows",
                str(noise),
                *(["--janus"] if to_janus else []),
            )
        )
    await asyncio.gather(*(c.expect("JOINED") for c in children))
    return children


async def go(children: list[Child]) -> None:
    """Subscribe every viewer at once; wait for video everywhere."""
    for child in children:
        child.say("GO")
    await asyncio.gather(*(c.expect("READY") for c in children))


async def stop(children: list[Child]) -> list[dict[str, Any]]:
    for child in children:
        child.say("STOP")
    results = await asyncio.gather(*(c.expect("RESULT") for c in children))
    await asyncio.gather(*(c.finish() for c in children))
    return [viewer for result in results for viewer in json.loads(result)]


async def sent_by(publisher: Publisher) -> tuple[int, int, int]:
    """(packets of all tracks, video packets, video bytes) the publisher sent so far."""
    packets = video_packets = video_bytes = 0
    for sender in publisher.pc.getSenders():
        for stats in (await sender.getStats()).values():
            if isinstance(stats, RTCOutboundRtpStreamStats):
                packets += stats.packetsSent
                if stats.kind == "video":
                    video_packets += stats.packetsSent
                    video_bytes += stats.bytesSent
    return packets, video_packets, video_bytes


@contextlib.asynccontextmanager
async def serving(mode: str, kbps: int) -> AsyncIterator[tuple[int, str, Publish]]:
    """The server of ``mode`` until the block ends: its pid, the viewers' URL, how to publish."""
    if mode == "janus":
        if not janus.available():
            raise SystemExit("mode janus: no janus here (apt-get install janus)")
        port = janus.free_port()
        url = f"http://127.0.0.1:{port}/janus"
        async with janus.running(port) as process, aiohttp.ClientSession() as http:
            session = await janus.JanusSession.create(http, url)
            try:
                await janus.create_room(session, kbps * 1000)
                yield process.pid, url, functools.partial(janus.publish, session)
            finally:
                await session.close()
        return
    server = await Child.start("serve", "--mode", mode)
    try:
        port = int(await server.expect("PORT"))
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {SECRET}"}
            async with http.post(
                f"http://127.0.0.1:{port}/api/rooms",
                json={"id": ROOM, "title": "bench"},
                headers=headers,
            ) as resp:
                assert resp.status == 201, await resp.text()
        host = await RoomClient.connect(f"ws://127.0.0.1:{port}/ws")
        token = mint_token(SECRET, room=ROOM, user="host", name="Host", role="host")
        await host.request("join", room=ROOM, token=token)

        async def publish(offer: str) -> str:
            reply = await host.request("rtc.publish", room=ROOM, sdp=offer)
            answer: str = reply["sdp"]
            return answer

        try:
            yield server.proc.pid, f"ws://127.0.0.1:{port}/ws", publish
        finally:
            await host.close()
    finally:
        await server.finish()


async def run_mode(
    mode: str,
    counts: Sequence[int],
    window: float,
    log: Callable[[str], None],
    noise: int = NOISE_ROWS,
    kbps: int = KBPS,
) -> dict[str, Any]:
    async with serving(mode, kbps) as (pid, url, publish):
        return await _measure(mode, pid, url, publish, counts, window, log, noise, kbps)


async def _measure(
    mode: str,
    pid: int,
    url: str,
    publish: Publish,
    counts: Sequence[int],
    window: float,
    log: Callable[[str], None],
    noise: int,
    kbps: int,
) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": mode, "cpu": {}}
    start_viewers = functools.partial(viewers, url, noise=noise, to_janus=mode == "janus")
    publisher = Publisher(
        "VP8",
        width=WIDTH,
        height=HEIGHT,
        fps=FPS,
        noise=noise,
        max_bitrate=kbps * 1000,
        addresses=LOOPBACK,
    )
    try:
        await publisher.accept(await publish(await publisher.offer()))
        await asyncio.sleep(3)
        out["cpu"][0] = await sample_cpu(pid, window)
        log(f"{mode}: 0 viewers {out['cpu'][0]}")
        for count in counts:
            children = await start_viewers(count, decode=False)
            started = time.monotonic()
            await go(children)
            ready = time.monotonic() - started
            await asyncio.sleep(1)
            made, sent0 = publisher.video.count, await sent_by(publisher)
            sample = await sample_cpu(pid, window, [c.proc.pid for c in children])
            sample["published_fps"] = (publisher.video.count - made) / window
            sent1 = await sent_by(publisher)
            packets, video_packets, video_bytes = (b - a for a, b in zip(sent0, sent1, strict=True))
            sample["published_kbps"] = video_bytes * 8 / 1000 / window
            sample["published_video_pps"] = video_packets / window
            sample["published_pps"] = packets / window
            got = await stop(children)
            sample["all_ready_s"] = ready
            sample["viewers_with_video"] = sum(1 for v in got if v["frames"] > 0)
            sample["fps_per_viewer"] = fps = statistics.fmean(v["fps"] for v in got)
            extra = sample["cpu_pct"] - out["cpu"][0]["cpu_pct"]
            sample["cpu_pct_per_viewer"] = extra / count
            sample["us_per_viewer_frame"] = extra / 100 / (count * fps) * 1e6 if fps else math.nan
            # Per packet sent on (audio and video), while the viewers keep up.
            pps = sample["published_pps"] * fps / max(1.0, sample["published_fps"])
            sample["us_per_viewer_packet"] = extra / 100 / (count * pps) * 1e6 if pps else math.nan
            sample["rss_mb_per_viewer"] = (sample["rss_mb"] - out["cpu"][0]["rss_mb"]) / count
            cores = os.cpu_count() or 1
            sample["other_load_cores"] = (
                sample["machine_busy_pct"] * cores - sample["cpu_pct"] - sample["clients_cpu_pct"]
            ) / 100
            out["cpu"][count] = sample
            log(f"{mode}: {count} viewers {sample}")
            await asyncio.sleep(2)

        # 20 viewers subscribe at once, decode a few frames and hang up.
        children = await start_viewers(20, decode=True, frames=5, per_process=5)
        await go(children)
        joined = await stop(children)
        firsts = [v["first_frame_s"] for v in joined if v["first_frame_s"] is not None]
        answers = [v["answer_s"] for v in joined]
        connects = [v["connected_s"] for v in joined if not math.isnan(v["connected_s"])]
        await asyncio.sleep(2)
        # Two viewers decode for a while: capture-to-decode latency once caught up.
        children = await start_viewers(2, decode=True)
        await go(children)
        await asyncio.sleep(window + 2)
        got = await stop(children)
        latencies = []
        for v in got:
            if not v["times"]:
                continue
            settle = v["times"][0] + 2.0  # after the cache replay / first keyframe
            for number, at in zip(v["numbers"], v["times"], strict=True):
                captured = publisher.video.captured.get(number)
                if at >= settle and captured is not None and 0 <= at - captured < 10:
                    latencies.append(at - captured)
        out["join"] = {
            "viewers": len(joined),
            "with_video": len(firsts),
            "answer_p50_s": _pct(answers, 0.5),
            "answer_p95_s": _pct(answers, 0.95),
            "connected_p50_s": _pct(connects, 0.5),
            "connected_p95_s": _pct(connects, 0.95),
            "first_frame_p50_s": _pct(firsts, 0.5),
            "first_frame_p95_s": _pct(firsts, 0.95),
            "latency_p50_s": _pct(latencies, 0.5),
            "latency_p95_s": _pct(latencies, 0.95),
            "latency_samples": len(latencies),
        }
        log(f"{mode}: join {out['join']}")
    finally:
        await publisher.close()
    return out


def table(results: list[dict[str, Any]], counts: Sequence[int]) -> str:
    modes = [r["mode"] for r in results]
    lines = ["| figure | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
    for count in counts:
        cells = []
        for r in results:
            s = r["cpu"][count]
            cells.append(
                f"{s['cpu_pct']:.1f} % total, {s['cpu_pct_per_viewer']:.2f} %/viewer, "
                f"{s['us_per_viewer_frame']:.0f} µs/viewer-frame, "
                f"{s['us_per_viewer_packet']:.1f} µs/viewer-packet, "
                f"{s['rss_mb_per_viewer']:.2f} MB/viewer, "
                f"{s['fps_per_viewer']:.0f} of {s['published_fps']:.0f} fps"
            )
        lines.append(f"| server CPU, {count} viewers | " + " | ".join(cells) + " |")
    for key, label in (
        ("answer", "rtc.subscribe to answer, 20 at once"),
        ("connected", "rtc.subscribe to connected, 20 at once"),
        ("first_frame", "rtc.subscribe to first decoded frame, 20 at once"),
        ("latency", "capture to decode"),
    ):
        cells = []
        for r in results:
            p50, p95 = r["join"][key + "_p50_s"] * 1000, r["join"][key + "_p95_s"] * 1000
            cells.append(f"p50 {p50:.0f} ms, p95 {p95:.0f} ms")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def run(
    modes: Sequence[str],
    counts: Sequence[int],
    window: float,
    noise: int = NOISE_ROWS,
    kbps: int = KBPS,
) -> None:
    if hooks.machine_addresses():
        raise SystemExit(
            "refusing to run outside a private network namespace; use:\n"
            "  unshare --net sh -c 'ip link set lo up && python3 -m media.bench'"
        )

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    results = []
    for mode in modes:
        result = await run_mode(mode, counts, window, log, noise, kbps)
        result["window"] = window
        results.append(result)
    print(
        json.dumps(
            {"date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(), "results": results},
            indent=1,
        )
    )
    print(table(results, counts))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m media.bench", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command")
    run_p = sub.add_parser("run", help="the whole comparison (default)")
    for p in (parser, run_p):
        p.add_argument("--modes", default="sfu,relay", help="comma-separated: sfu, relay, janus")
        p.add_argument("--viewers", default="1,8,32,64", help="viewer counts for the CPU figure")
        p.add_argument("--window", type=float, default=6.0, help="seconds per CPU sample")
        p.add_argument(
            "--noise-rows",
            type=int,
            default=NOISE_ROWS,
            help="random rows in the published video (more rows, a busier picture)",
        )
        p.add_argument(
            "--kbps", type=int, default=KBPS, help="cap on the published video's bitrate"
        )
    serve_p = sub.add_parser("serve", help="(internal) the server process")
    serve_p.add_argument("--mode", choices=("sfu", "relay"), required=True)
    view_p = sub.add_parser("view", help="(internal) a viewer process")
    view_p.add_argument("--url", required=True)
    view_p.add_argument("--count", type=int, required=True)
    view_p.add_argument("--decode", choices=("True", "False"), required=True)
    view_p.add_argument("--frames", type=int, default=0, help="hang up after this many frames")
    view_p.add_argument("--noise-rows", type=int, default=NOISE_ROWS)
    view_p.add_argument("--janus", action="store_true", help="--url is Janus's HTTP API")
    args = parser.parse_args(argv)
    job: Coroutine[Any, Any, None]
    if args.command == "serve":
        job = serve(args.mode)
    elif args.command == "view":
        job = view(
            args.url, args.count, args.decode == "True", args.frames, args.noise_rows, args.janus
        )
    else:
        counts = [int(c) for c in args.viewers.split(",")]
        job = run(args.modes.split(","), counts, args.window, args.noise_rows, args.kbps)
    asyncio.run(job)


if __name__ == "__main__":
    main()
