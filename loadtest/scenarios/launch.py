"""``launch``: the launch-night mix.

Some members are in the room at t0; the others arrive on a ramp; moderators chat,
members like, and every member votes once in a poll opened before t0. With
``--viewers V`` the room is also live: client process 0 publishes the host's video
(640x360 VP8) and puts a member on stage who publishes a co-host video (320x180),
and V WebRTC viewers arrive on the same ramp, each watching the host (decoded: time
to first frame, frames/s) and the co-host (counted undecoded). Every figure (join,
chat delivery, vote, like and first-frame latency) is also reported per second.

Media needs a private network namespace on this machine, as the ``viewers``
scenario does::

    unshare --net sh -c 'ip link set lo up && python -m loadtest launch --spawn 1 --viewers 10'
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import replace
from typing import Any

from loadtest.httpapi import Api, MemberId
from loadtest.mix import MixWorker
from loadtest.plan import Mix, RunConfig, WorkerSpec
from loadtest.recorder import Recorder
from loadtest.scenarios.base import Check, Merged, Plan, Prepared, WorkerRole
from loadtest.scenarios.core import (
    MixScenario,
    non_negative_float,
    positive_float,
    positive_int,
)
from loadtest.scenarios.viewers import (
    COHOST_USER,
    HOST_USER,
    SPAWN_ARGS,
    ViewersWorker,
    summarize,
    viewers_checks,
)
from loadtest.schedule import Arrivals

MEDIA_NOTE = "media not measured: give --viewers V for a host, a co-host and V WebRTC viewers"


class LaunchWorker:
    """One client process: its share of the mix, and of the WebRTC viewers if any."""

    def __init__(self, spec: WorkerSpec, recorder: Recorder) -> None:
        self.mix = MixWorker(spec, recorder)
        self.media: ViewersWorker | None = None
        media = spec.shared.get("media")
        if media:
            seats = tuple(m for m in media["members"] if m.index % spec.procs == spec.index)
            shared = {k: v for k, v in media.items() if k != "members"}
            own = replace(spec, members=seats, shared=shared)
            self.media = ViewersWorker(own, recorder, counter_prefix="viewer_")

    async def setup(self) -> None:
        await self.mix.setup()
        if self.media is not None:
            await self.media.setup()

    async def run(self, t0_ns: int, stop: asyncio.Event) -> dict[str, Any]:
        if self.media is None:
            return await self.mix.run(t0_ns, stop)
        results = await asyncio.gather(self.mix.run(t0_ns, stop), self.media.run(t0_ns, stop))
        sent: dict[str, Any] = results[0]
        return sent

    async def drain(self, payload: dict[str, Any], stop: asyncio.Event) -> None:
        await self.mix.drain(payload, stop)

    def sync(self) -> None:
        self.mix.sync()

    def result(self) -> dict[str, Any]:
        out = self.mix.result()
        if self.media is not None:
            out["media"] = self.media.result()
        return out

    async def close(self) -> None:
        if self.media is not None:
            await self.media.close()
        await self.mix.close()


class LaunchScenario(MixScenario):
    name = "launch"
    help = (
        "launch-night mix: arrivals on a ramp, chat, likes and a poll; with --viewers, "
        "host and co-host publishing to WebRTC viewers"
    )
    default_duration_s = 30.0
    spawn_args = SPAWN_ARGS

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--members",
            "-n",
            type=positive_int,
            default=1000,
            help="members in the end, senders included (default 1000)",
        )
        parser.add_argument(
            "--initial",
            type=int,
            default=None,
            help="members present at t0 (default 10%%, at least the senders)",
        )
        parser.add_argument(
            "--duration",
            "-t",
            type=positive_float,
            default=self.default_duration_s,
            help=f"seconds (default {self.default_duration_s:g})",
        )
        parser.add_argument(
            "--ramp",
            type=non_negative_float,
            default=None,
            help="seconds over which the others arrive (default: half the run)",
        )
        parser.add_argument("--senders", "-s", type=positive_int, default=5)
        parser.add_argument(
            "--chat-rate",
            type=positive_float,
            default=10.0,
            help="messages per second, all senders together (default 10)",
        )
        parser.add_argument(
            "--like-rate",
            type=non_negative_float,
            default=20.0,
            help="likes per second, all members together (default 20)",
        )
        parser.add_argument("--options", type=int, default=4, choices=range(2, 11), metavar="K")
        parser.add_argument(
            "--viewers",
            type=int,
            default=0,
            metavar="V",
            help="WebRTC viewers arriving on the ramp, watching the host and a co-host "
            "(default 0: no media)",
        )
        parser.add_argument(
            "--min-fps",
            type=float,
            default=5.0,
            help="with --viewers: frames/s every viewer must exceed (default 5)",
        )

    def plan(self, args: argparse.Namespace) -> Plan:
        """The mix, and when the run is warm (the ramp is over) for the memory figures."""
        if args.viewers < 0:
            raise ValueError("--viewers must be 0 or more")
        plan = super().plan(args)
        notes = plan.notes
        if args.viewers:
            media = (
                f"media: a host (640x360) and a co-host (320x180) publish VP8; {args.viewers} "
                "WebRTC viewers decode the host in the client processes (see client CPU)"
            )
            notes = (*(n for n in notes if n != MEDIA_NOTE), media)
        params = {"warm_s": _ramp(args), "viewers": args.viewers, "min_fps": args.min_fps}
        return replace(plan, params=params, notes=notes)

    async def prepare(self, plan: Plan, config: RunConfig, api: Api) -> Prepared:
        prepared = await super().prepare(plan, config, api)
        viewers = int(plan.params.get("viewers") or 0)
        if not viewers:
            return prepared
        mix = plan.mix
        assert mix is not None
        room = prepared.rooms[0]
        ramp = float(plan.params["warm_s"])
        members = [
            MemberId(i, f"lt-{config.run_id}-w{i}", f"Watcher {i}", "member", room, url)
            for i, url in ((i, config.urls[i % len(config.urls)]) for i in range(viewers))
        ]
        media = {
            "members": members,
            "publish": True,
            "publisher": f"lt-{config.run_id}-{HOST_USER}",
            "cohost": f"lt-{config.run_id}-{COHOST_USER}",
            "viewers": viewers,
            "rate": viewers / ramp if ramp > 0 and viewers > 1 else None,
            "duration_s": mix.duration_s,
        }
        return replace(prepared, shared={**prepared.shared, "media": media})

    def worker(self, spec: WorkerSpec, recorder: Recorder) -> WorkerRole:
        return LaunchWorker(spec, recorder)

    async def finish(
        self, plan: Plan, prepared: Prepared, config: RunConfig, api: Api, merged: Merged
    ) -> tuple[list[Check], dict[str, Any]]:
        checks, figures = await super().finish(plan, prepared, config, api, merged)
        viewers = int(plan.params.get("viewers") or 0)
        if not viewers:
            return checks, figures
        results = [r.get("media", {}) for r in merged.results]
        records = [v for r in results for v in r.get("viewers", ())]
        summary = summarize(records, viewers)
        published = [r["published_fps"] for r in results if "published_fps" in r]
        if published:
            summary["published_fps"] = published[0]
        summary["per_viewer"] = records
        media_errors = {k: v for k, v in merged.errors.items() if _media_error(k)}
        checks += viewers_checks(summary, media_errors, float(plan.params["min_fps"]))[:2]
        watching = [v for v in records if v.get("first_frame_ms") is not None]
        cohost = sum(1 for v in watching if int(v.get("cohost_frames", 0)) > 0)
        checks.append(
            Check(
                "every viewer received the co-host's video",
                cohost == viewers,
                f"{cohost} of {viewers}",
            )
        )
        return checks, {**figures, "viewers": summary}

    def mix(self, args: argparse.Namespace) -> Mix:
        members = args.members
        senders = min(args.senders, members)
        initial = args.initial if args.initial is not None else max(senders, members // 10)
        initial = min(max(initial, senders), members)
        ramp = _ramp(args)
        arriving = members - initial
        arrivals = Arrivals("rate", rate=arriving / ramp) if arriving and ramp > 0 else Arrivals()
        return Mix(
            members=members,
            initial=initial,
            arrivals=arrivals,
            senders=senders,
            chat_rate=args.chat_rate,
            chat_s=args.duration,
            like_rate=args.like_rate,
            votes=True,
            vote_from_s=0.0,
            vote_until_s=args.duration * 0.8,
            poll_options=args.options,
            duration_s=args.duration,
            media_note=MEDIA_NOTE,
        )


def _media_error(key: str) -> bool:
    return key.startswith("cohost_") or key in ("no_first_frame", "subscribe_error")


def _ramp(args: argparse.Namespace) -> float:
    duration = float(args.duration)
    ramp = float(args.ramp) if args.ramp is not None else duration / 2
    return min(ramp, duration)
