"""``join``: N members join one or more rooms at a rate, all at once, or in waves.

Join latency runs from the start of the TCP connect to the arrival of the ``ok`` of
``join`` (the snapshot), so it includes the WebSocket handshake. Members keep their
connections for ``--hold`` seconds after the last arrival, so a server that drops
them shortly after admitting them shows up as closes.
"""

from __future__ import annotations

import argparse

from loadtest.plan import Mix
from loadtest.scenarios.core import MixScenario, non_negative_float, positive_float, positive_int
from loadtest.schedule import Arrivals


class JoinScenario(MixScenario):
    name = "join"
    help = "N members join: join latency p50/p95/p99/max, joins/s, errors by code"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--members", "-n", type=positive_int, default=1000)
        parser.add_argument(
            "--rooms", type=positive_int, default=1, help="spread members over K rooms"
        )
        how = parser.add_mutually_exclusive_group()
        how.add_argument("--rate", type=positive_float, help="arrivals per second")
        how.add_argument("--all-at-once", action="store_true", help="every member at t0 (default)")
        how.add_argument("--waves", type=positive_int, metavar="W", help="waves of W members")
        parser.add_argument(
            "--wave-interval",
            type=positive_float,
            default=1.0,
            metavar="S",
            help="seconds between waves (default 1)",
        )
        parser.add_argument(
            "--hold",
            type=non_negative_float,
            default=1.0,
            metavar="S",
            help="keep connections this long after the last arrival (default 1)",
        )

    def mix(self, args: argparse.Namespace) -> Mix:
        if args.rate:
            arrivals = Arrivals("rate", rate=args.rate)
        elif args.waves:
            arrivals = Arrivals("waves", wave=args.waves, wave_interval_s=args.wave_interval)
        else:
            arrivals = Arrivals("once")
        times = arrivals.times(args.members)
        return Mix(
            members=args.members,
            initial=0,
            arrivals=arrivals,
            rooms=min(args.rooms, args.members),
            duration_s=(times[-1] if times else 0.0) + args.hold,
        )
