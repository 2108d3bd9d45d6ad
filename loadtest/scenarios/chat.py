"""``chat``: N members in one room, S senders at a total of R messages/s for T seconds.

Delivery latency runs from the sender's clock just before sending to the arrival of
the frame carrying the event at each member (all processes share one machine, so
their wall clocks agree). Expected deliveries = members x accepted messages; every
member joins before t0, so each is owed every accepted message.
"""

from __future__ import annotations

import argparse

from loadtest.plan import Mix
from loadtest.scenarios.core import MixScenario, positive_float, positive_int


class ChatScenario(MixScenario):
    name = "chat"
    help = "chat fan-out: delivery latency, deliveries/s, lost and duplicated deliveries"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--members",
            "-n",
            type=positive_int,
            default=1000,
            help="members in the room, senders included (default 1000)",
        )
        parser.add_argument(
            "--senders",
            "-s",
            type=positive_int,
            default=10,
            help="moderators that send (default 10)",
        )
        parser.add_argument(
            "--rate",
            "-r",
            type=positive_float,
            default=20.0,
            help="messages per second, all senders together (default 20)",
        )
        parser.add_argument(
            "--duration",
            "-t",
            type=positive_float,
            default=10.0,
            help="seconds of sending (default 10)",
        )

    def mix(self, args: argparse.Namespace) -> Mix:
        senders = min(args.senders, args.members)
        return Mix(
            members=args.members,
            initial=args.members,
            senders=senders,
            chat_rate=args.rate,
            chat_s=args.duration,
            duration_s=args.duration,
        )
