"""``viewers``: V aiortc viewers subscribe to one publishing host; time to first frame.

By default (``--publish``) client process 0 joins the room as its host and publishes
:mod:`media.peers`' synthetic VP8 video (640x360, 30 fps, with a noisy band so the
encoder works) through ``rtc.publish`` during setup; with ``--publisher USER`` the
viewers watch an existing publisher in ``--room`` instead. At t0 the viewers arrive
(all at once, or at ``--rate`` per second); each opens its WebSocket, joins, sends
``rtc.subscribe`` with a recvonly offer and decodes what it receives, until
``--duration`` seconds after t0.

Figures, per viewer: ``first_frame`` (opening the WebSocket to the first decoded
frame), ``subscribe_frame`` (``rtc.subscribe`` sent to the first decoded frame), and
decoded frames per second from its first frame to the end of the run; errors by code
(an error answer's code, a client-side failure, or ``no_first_frame``).

WebRTC and the network: when a target node is on a loopback address, the viewers
(and the publisher) gather only 127.0.0.1 candidates and drop every non-loopback
candidate from the server's answer. On this machine the scenario is run inside a
private network namespace, where nothing can leave the machine::

    unshare --net sh -c 'ip link set lo up && python -m loadtest viewers --spawn 1'

Nodes started with ``--spawn`` get ``--media on --rtc-ip 127.0.0.1``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from loadtest.client import Connection
from loadtest.httpapi import Api, MemberId
from loadtest.plan import RunConfig, WorkerSpec, ws_url
from loadtest.recorder import Recorder, error_key
from loadtest.scenarios.base import Check, Merged, Plan, Prepared, WorkerRole
from loadtest.scenarios.core import positive_float, positive_int

LOOPBACK = ("127.0.0.1",)
WIDTH, HEIGHT, FPS = 640, 360, 30
#: Viewers one client process decodes before another is worth starting (VP8 640x360).
VIEWERS_PER_PROC = 10
#: Extra ``roomserver serve`` arguments for nodes started with ``--spawn``.
SPAWN_ARGS = ("--media=on", "--rtc-ip=127.0.0.1")
#: How long the publisher may take to connect before setup gives up.
PUBLISH_TIMEOUT_S = 30.0
#: After the publisher connects, time for the SFU to see its first frames.
PUBLISH_SETTLE_S = 1.0
HOST_USER = "host"
COHOST_USER = "cohost"
#: The co-host's camera in the launch mix: smaller, as a second tile would be.
COHOST_WIDTH, COHOST_HEIGHT = 320, 180


def is_loopback_url(url: str) -> bool:
    """Whether a node's base URL names a loopback address (``localhost`` counts)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def arrival_offsets(count: int, rate: float | None) -> list[float]:
    """Seconds after t0 at which each viewer starts: all at 0, or evenly at ``rate``/s."""
    if rate is None:
        return [0.0] * count
    return [i / rate for i in range(count)]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` (0-100) percentile by nearest rank; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[min(len(ordered), int(rank)) - 1]


def steady_fps(times: Sequence[float], ended: float) -> float:
    """Frames/s over the second half of a viewer's watch (after any start-up burst).

    ``times`` are the decode times of its frames and ``ended`` when it stopped counting,
    on the same clock. A viewer that just subscribed may first get a burst (the frames
    since the last keyframe, or a decoder catching up); this figure leaves it out.
    """
    if len(times) < 2 or ended <= times[0]:
        return 0.0
    middle = (times[0] + ended) / 2
    late = sum(1 for t in times if middle <= t <= ended)
    return round(late / (ended - middle), 2)


def summarize(viewers: Sequence[dict[str, Any]], expected: int) -> dict[str, Any]:
    """Merge the per-viewer records of every client process into the run's figures."""
    with_frames = [v for v in viewers if v.get("first_frame_ms") is not None]
    fps = [float(v.get("fps", 0.0)) for v in viewers]
    got = [float(v["fps"]) for v in with_frames]
    steady = [float(v.get("steady_fps", 0.0)) for v in viewers]
    return {
        "viewers": expected,
        "reported": len(viewers),
        "with_first_frame": len(with_frames),
        "frames_total": sum(int(v.get("frames", 0)) for v in viewers),
        "repeated_numbers_total": sum(int(v.get("repeated_numbers", 0)) for v in viewers),
        "fps_per_viewer": {
            "min": round(min(fps, default=0.0), 2),
            "p50": round(percentile(fps, 50), 2),
            "mean": round(statistics.fmean(fps), 2) if fps else 0.0,
            "max": round(max(fps, default=0.0), 2),
            "mean_of_viewers_with_frames": round(statistics.fmean(got), 2) if got else 0.0,
        },
        "steady_fps_per_viewer": {
            "min": round(min(steady, default=0.0), 2),
            "p50": round(percentile(steady, 50), 2),
            "max": round(max(steady, default=0.0), 2),
        },
    }


def viewers_checks(figures: dict[str, Any], errors: dict[str, int], min_fps: float) -> list[Check]:
    """What a viewers run must show: every viewer decoded video, steadily, without errors."""
    fps = figures["fps_per_viewer"]
    n_errors = sum(errors.values())
    return [
        Check(
            "every viewer decoded a first frame",
            figures["with_first_frame"] == figures["viewers"],
            f"{figures['with_first_frame']} of {figures['viewers']}",
        ),
        Check(
            f"every viewer decoded more than {min_fps:g} frames/s",
            figures["reported"] == figures["viewers"] and fps["min"] > min_fps,
            f"lowest {fps['min']:g}, median {fps['p50']:g} frames/s",
        ),
        Check(
            "no errors",
            n_errors == 0,
            " ".join(f"{k}={v}" for k, v in sorted(errors.items())) or "none",
        ),
    ]


@dataclass
class _Seat:
    """One viewer in a client process."""

    member: MemberId
    token: str = ""
    conn: Connection | None = None
    viewer: Any = None  # media.peers.Viewer (imported lazily: aiortc is heavy)
    cohost_viewer: Any = None  # the co-host's stream, counted undecoded
    opened: float = 0.0  # time.monotonic()
    subscribed: float = 0.0
    end_frames: int = 0
    ended: float = 0.0
    ended_wall: float = 0.0  # time.time(), the clock of Viewer.got.times


class ViewersWorker:
    """The viewers of one client process, and in process 0 the publishing host."""

    def __init__(self, spec: WorkerSpec, recorder: Recorder, counter_prefix: str = "") -> None:
        self.spec = spec
        self.config: RunConfig = spec.config
        self.rec = recorder
        self.shared = spec.shared
        #: In the launch mix the viewers' joins are not the mix's members' joins.
        self.prefix = counter_prefix
        self.seats = [_Seat(m) for m in spec.members]
        self.publisher: Any = None
        self.cohost_publisher: Any = None
        self.host: Connection | None = None
        self.cohost: Connection | None = None
        self.published_frames = 0
        self.published_s = 0.0
        self.publish_s = 0.0

    def _addresses(self, url: str) -> tuple[str, ...]:
        from media import hooks

        return LOOPBACK if is_loopback_url(url) else tuple(hooks.machine_addresses())

    def _answer_sdp(self, url: str, sdp: str) -> str:
        if not is_loopback_url(url):
            return sdp
        from media.ice import IcePolicy

        return IcePolicy.from_settings(LOOPBACK, ()).filter_offer(sdp)

    async def setup(self) -> None:
        async with Api(self.config.secret) as api:
            tokens = await api.tokens([s.member for s in self.seats])
            for seat, token in zip(self.seats, tokens, strict=True):
                seat.token = token
            if self.spec.index == 0 and self.shared.get("publish"):
                await self._publish(api)

    async def _publish(self, api: Api) -> None:
        from media.peers import Publisher

        room = self.spec.rooms[0]
        url = self.config.urls[0]
        host = MemberId(-1, self.shared["publisher"], "Load host", "host", room, url)
        token = await api.token(host)
        self.host = await Connection.open(
            ws_url(url), self.config.encoding, PUBLISH_TIMEOUT_S, lambda event, now: None
        )
        await self._ok(self.host, {"t": "join", "room": room, "token": token})
        self.publisher = Publisher(
            "VP8",
            width=WIDTH,
            height=HEIGHT,
            fps=FPS,
            noise=True,
            addresses=self._addresses(url),
        )
        offer = await self.publisher.offer()
        answer = await self._ok(self.host, {"t": "rtc.publish", "room": room, "sdp": offer})
        await self.publisher.accept(self._answer_sdp(url, str(answer["sdp"])))
        started = time.monotonic()
        await self._connected(self.publisher)
        if self.shared.get("cohost"):
            await self._publish_cohost(api, room, url)
        await asyncio.sleep(PUBLISH_SETTLE_S)
        self.publish_s = time.monotonic() - started

    async def _connected(self, peer: Any) -> None:
        async with asyncio.timeout(PUBLISH_TIMEOUT_S):
            while peer.pc.connectionState != "connected":  # noqa: ASYNC110 - aiortc
                await asyncio.sleep(0.05)

    async def _publish_cohost(self, api: Api, room: str, url: str) -> None:
        """A member goes on stage the way a viewer does: invited, accepts, publishes."""
        from media.peers import Publisher

        assert self.host is not None
        user = str(self.shared["cohost"])
        cohost = MemberId(-2, user, "Load co-host", "member", room, url)
        token = await api.token(cohost)
        self.cohost = await Connection.open(
            ws_url(url), self.config.encoding, PUBLISH_TIMEOUT_S, lambda event, now: None
        )
        await self._ok(self.cohost, {"t": "join", "room": room, "token": token})
        await self._ok(self.host, {"t": "cohost.invite", "room": room, "user": user})
        await self._ok(self.cohost, {"t": "cohost.accept", "room": room})
        self.cohost_publisher = Publisher(
            "VP8",
            width=COHOST_WIDTH,
            height=COHOST_HEIGHT,
            fps=FPS,
            addresses=self._addresses(url),
        )
        offer = await self.cohost_publisher.offer()
        answer = await self._ok(self.cohost, {"t": "rtc.publish", "room": room, "sdp": offer})
        await self.cohost_publisher.accept(self._answer_sdp(url, str(answer["sdp"])))
        await self._connected(self.cohost_publisher)

    async def _ok(self, conn: Connection, message: dict[str, Any]) -> dict[str, Any]:
        answer, _ = await conn.call(message, self.config.request_timeout_s)
        if answer.get("t") != "ok":
            raise RuntimeError(f"{message['t']}: {answer.get('code')} {answer.get('message')}")
        return answer

    async def run(self, t0_ns: int, stop: asyncio.Event) -> dict[str, Any]:
        # this process's seats are every procs-th member: keep their global arrival times
        all_offsets = arrival_offsets(int(self.shared["viewers"]), self.shared.get("rate"))
        offsets = [all_offsets[s.member.index] for s in self.seats]
        t0 = time.monotonic() + (t0_ns - time.time_ns()) / 1e9
        end = t0 + float(self.shared["duration_s"])
        frames_at_start = self.publisher.video.count if self.publisher is not None else 0
        started = time.monotonic()
        tasks = [
            asyncio.ensure_future(self._watch(seat, t0 + offset, end, stop))
            for seat, offset in zip(self.seats, offsets, strict=True)
        ]
        await asyncio.gather(*tasks)
        if self.publisher is not None:
            self.published_frames = self.publisher.video.count - frames_at_start
            self.published_s = time.monotonic() - started
        return {}

    async def _watch(self, seat: _Seat, start: float, end: float, stop: asyncio.Event) -> None:
        from media.peers import Viewer

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, start - time.monotonic()))
        if stop.is_set():
            return
        member = seat.member
        timeout = self.config.join_timeout_s
        try:
            seat.opened = time.monotonic()
            seat.conn = await Connection.open(
                ws_url(member.url), self.config.encoding, timeout, lambda event, now: None
            )
            answer, _ = await seat.conn.call(
                {"t": "join", "room": member.room, "token": seat.token},
                self.config.request_timeout_s,
            )
            if answer.get("t") != "ok":
                self.rec.error(str(answer.get("code", "join_error")))
                return
            self.rec.counters[self.prefix + "joined"] += 1
            seat.viewer = Viewer(
                decode=True, noise_rows=HEIGHT // 4, addresses=self._addresses(member.url)
            )
            offer = await seat.viewer.offer()
            seat.subscribed = time.monotonic()
            sdp = await self._subscribe(seat, self.shared["publisher"], offer, "")
            if sdp is None:
                return
            self.rec.counters[self.prefix + "subscribed"] += 1
            await seat.viewer.accept(sdp)
            if self.shared.get("cohost"):
                await self._watch_cohost(seat)
            try:
                await seat.viewer.wait_frames(1, max(timeout, end - time.monotonic()))
            except TimeoutError:
                self.rec.error("no_first_frame")
            first = seat.viewer.got.first_frame_at
            if first is not None:
                self.rec.counters["first_frames"] += 1
                now_ns = time.time_ns()
                self.rec.latency("first_frame", now_ns, int((first - seat.opened) * 1e9))
                self.rec.latency("subscribe_frame", now_ns, int((first - seat.subscribed) * 1e9))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, end - time.monotonic()))
        except Exception as exc:  # counted, never hidden
            self.rec.error(error_key(exc))
        finally:
            seat.ended, seat.ended_wall = time.monotonic(), time.time()
            if seat.viewer is not None:
                seat.end_frames = seat.viewer.frames

    async def _watch_cohost(self, seat: _Seat) -> None:
        """The co-host's tile: subscribed too, its frames counted without decoding."""
        from media.peers import Viewer

        member = seat.member
        seat.cohost_viewer = Viewer(decode=False, addresses=self._addresses(member.url))
        offer = await seat.cohost_viewer.offer()
        sdp = await self._subscribe(seat, self.shared["cohost"], offer, "cohost_")
        if sdp is not None:
            await seat.cohost_viewer.accept(sdp)

    async def _subscribe(self, seat: _Seat, publisher: str, offer: str, kind: str) -> str | None:
        """``rtc.subscribe`` to ``publisher``: the answer's SDP, or None (error counted,
        its code prefixed with ``kind``)."""
        assert seat.conn is not None
        member = seat.member
        answer, _ = await seat.conn.call(
            {"t": "rtc.subscribe", "room": member.room, "publisher": publisher, "sdp": offer},
            self.config.request_timeout_s,
        )
        if answer.get("t") != "ok":
            self.rec.error(kind + str(answer.get("code", "subscribe_error")))
            return None
        return self._answer_sdp(member.url, str(answer["sdp"]))

    async def drain(self, payload: dict[str, Any], stop: asyncio.Event) -> None:
        return None

    def sync(self) -> None:
        return None

    def result(self) -> dict[str, Any]:
        viewers = []
        for seat in self.seats:
            got = seat.viewer.got if seat.viewer is not None else None
            first = got.first_frame_at if got is not None else None
            if got is None or first is None:
                viewers.append({"user": seat.member.user, "first_frame_ms": None, "fps": 0.0})
                continue
            # frames counted until the end of the run, over the time since the first one
            watched = max(1e-3, seat.ended - first)
            frames = seat.end_frames
            viewers.append(
                {
                    "user": seat.member.user,
                    "first_frame_ms": round((first - seat.opened) * 1000, 2),
                    "subscribe_frame_ms": round((first - seat.subscribed) * 1000, 2),
                    "frames": frames,
                    "steady_fps": steady_fps(got.times, seat.ended_wall),
                    # frames whose drawn number was decoded before (repeats, or misreads)
                    "repeated_numbers": frames - len(set(got.numbers[:frames])),
                    "fps": round((frames - 1) / watched, 2) if frames > 1 else 0.0,
                }
            )
            cohost = seat.cohost_viewer.got if seat.cohost_viewer is not None else None
            if cohost is not None:
                viewers[-1]["cohost_frames"] = cohost.encoded_frames
        out: dict[str, Any] = {"viewers": viewers}
        if self.publisher is not None:
            out["published_frames"] = self.published_frames
            out["published_fps"] = round(self.published_frames / max(1e-3, self.published_s), 2)
            out["publish_setup_s"] = round(self.publish_s, 3)
        return out

    async def close(self) -> None:
        for seat in self.seats:
            if seat.viewer is not None:
                with contextlib.suppress(Exception):
                    await seat.viewer.close()
            if seat.conn is not None:
                with contextlib.suppress(Exception):
                    await seat.conn.close()
            if seat.cohost_viewer is not None:
                with contextlib.suppress(Exception):
                    await seat.cohost_viewer.close()
        for peer in (self.publisher, self.cohost_publisher, self.host, self.cohost):
            if peer is not None:
                with contextlib.suppress(Exception):
                    await peer.close()


class ViewersScenario:
    name = "viewers"
    help = "WebRTC viewers of one publisher: time to first decoded frame, frames/s per viewer"
    spawn_args = SPAWN_ARGS

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--viewers", "-n", type=positive_int, default=20)
        parser.add_argument(
            "--duration",
            "-d",
            type=positive_float,
            default=10.0,
            metavar="S",
            help="seconds from t0 the viewers watch (default 10)",
        )
        parser.add_argument(
            "--rate", type=positive_float, default=None, help="viewer arrivals per second "
            "(default: all at once)",
        )  # fmt: skip
        parser.add_argument(
            "--publish",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="publish a synthetic VP8 640x360 30 fps video as the room's host (default)",
        )
        parser.add_argument(
            "--publisher",
            metavar="USER",
            default=None,
            help="watch this existing publisher instead (implies --no-publish; needs --room)",
        )
        parser.add_argument(
            "--room", default=None, help="the existing publisher's room (with --publisher)"
        )
        parser.add_argument(
            "--min-fps",
            type=float,
            default=5.0,
            help="frames/s every viewer must exceed for the run to pass (default 5)",
        )

    def plan(self, args: argparse.Namespace) -> Plan:
        publish = args.publish and args.publisher is None
        if not publish and (args.publisher is None or args.room is None):
            raise ValueError("without --publish, give --publisher USER and --room ROOM")
        if args.rate is not None and (args.viewers - 1) / args.rate >= args.duration:
            raise ValueError("--rate too low: the last viewer would arrive after --duration")
        return Plan(
            members=args.viewers,
            duration_s=args.duration,
            events_per_s=0.0,
            params={
                "viewers": args.viewers,
                "rate": args.rate,
                "publish": publish,
                "publisher": args.publisher,
                "room": args.room,
                "min_fps": args.min_fps,
                "viewers_per_proc": VIEWERS_PER_PROC,
            },
            notes=(
                "WebRTC: viewers decode VP8 in the client processes (see client CPU); "
                "on loopback targets ICE uses 127.0.0.1 candidates only",
            )
            + (("client process 0 also encodes the published video",) if publish else ()),
        )

    async def prepare(self, plan: Plan, config: RunConfig, api: Api) -> Prepared:
        params = plan.params
        if params["publish"]:
            room = f"lt-{config.run_id}-viewers"
            await api.create_room(config.urls[0], room, f"Load test viewers {room}")
            publisher = f"lt-{config.run_id}-{HOST_USER}"
        else:
            room, publisher = params["room"], params["publisher"]
        members = tuple(
            MemberId(
                index=i,
                user=f"lt-{config.run_id}-v{i}",
                name=f"Viewer {i}",
                role="member",
                room=room,
                url=config.urls[i % len(config.urls)],
            )
            for i in range(plan.members)
        )
        shared = {
            "publish": params["publish"],
            "publisher": publisher,
            "rate": params["rate"],
            "viewers": plan.members,
            "duration_s": plan.duration_s,
        }
        return Prepared(rooms=(room,), members=members, shared=shared)

    def worker(self, spec: WorkerSpec, recorder: Recorder) -> WorkerRole:
        return ViewersWorker(spec, recorder)

    def drain_payload(self, sent: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return {}

    async def finish(
        self, plan: Plan, prepared: Prepared, config: RunConfig, api: Api, merged: Merged
    ) -> tuple[list[Check], dict[str, Any]]:
        records = [v for r in merged.results for v in r.get("viewers", ())]
        figures = summarize(records, plan.members)
        published = [r["published_fps"] for r in merged.results if "published_fps" in r]
        figures["per_viewer"] = records
        if published:
            figures["published_fps"] = published[0]
        return viewers_checks(figures, merged.errors, float(plan.params["min_fps"])), {
            "viewers": figures
        }
