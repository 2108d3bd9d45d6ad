"""``launch``: the launch-night mix, without media for now.

Some members are in the room at t0; the others arrive on a ramp; moderators chat,
members like, and every member votes once in a poll opened before t0. Every figure
(join, chat delivery, vote and like latency) is also reported per second.

Media (host and co-host publishing, viewers' time to first frame) is not part of it
yet: it needs the SFU (``media/``), and is added with the ``viewers`` scenario. The
output says so.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from loadtest.plan import Mix
from loadtest.scenarios.base import Plan
from loadtest.scenarios.core import (
    MixScenario,
    non_negative_float,
    positive_float,
    positive_int,
)
from loadtest.schedule import Arrivals

MEDIA_NOTE = (
    "media not measured: publishing and viewers' first frame need the SFU, which this "
    "version lacks; viewers join over WebSocket only"
)


class LaunchScenario(MixScenario):
    name = "launch"
    help = "launch-night mix: arrivals on a ramp, chat, likes and a poll (no media yet)"
    default_duration_s = 30.0

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

    def plan(self, args: argparse.Namespace) -> Plan:
        """The mix, and when the run is warm (the ramp is over) for the memory figures."""
        return replace(super().plan(args), params={"warm_s": _ramp(args)})

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


def _ramp(args: argparse.Namespace) -> float:
    duration = float(args.duration)
    ramp = float(args.ramp) if args.ramp is not None else duration / 2
    return min(ramp, duration)
