"""The scenario registry: ``python -m loadtest <name>`` looks its scenario up here.

To add one, implement
:class:`~loadtest.scenarios.base.Scenario` in a module of this package and add an
instance to :data:`SCENARIOS`; the CLI, the client processes and the report pick it
up by name. Names are unique; the order is the order of ``--help``.
"""

from __future__ import annotations

from loadtest.scenarios.base import Scenario
from loadtest.scenarios.chat import ChatScenario
from loadtest.scenarios.join import JoinScenario
from loadtest.scenarios.launch import LaunchScenario
from loadtest.scenarios.soak import SoakScenario
from loadtest.scenarios.viewers import ViewersScenario
from loadtest.scenarios.votes import VotesScenario

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        JoinScenario(),
        ChatScenario(),
        VotesScenario(),
        ViewersScenario(),
        LaunchScenario(),
        SoakScenario(),
    )
}

__all__ = ["SCENARIOS", "Scenario"]
