"""``votes``: a vote storm. N members vote once each in one poll within T seconds.

Every vote must be accepted (N accepted votes) and the final tally (the answer of
``poll.close``) must equal the accepted votes option by option; vote latency runs
from sending ``poll.vote`` to its ``ok``.
"""

from __future__ import annotations

import argparse

from loadtest.plan import Mix
from loadtest.scenarios.core import MixScenario, positive_float, positive_int


class VotesScenario(MixScenario):
    name = "votes"
    help = "vote storm: every vote accepted, tally matches, vote latency"
    all_must_vote = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--members", "-n", type=positive_int, default=1000)
        parser.add_argument(
            "--window",
            "-t",
            type=positive_float,
            default=5.0,
            help="seconds within which every member votes (default 5)",
        )
        parser.add_argument(
            "--options",
            type=int,
            default=4,
            choices=range(2, 11),
            metavar="K",
            help="poll options, 2-10 (default 4)",
        )

    def mix(self, args: argparse.Namespace) -> Mix:
        return Mix(
            members=args.members,
            initial=args.members,
            votes=True,
            vote_from_s=0.0,
            vote_until_s=args.window,
            poll_options=args.options,
            duration_s=args.window,
        )
