"""``soak``: the launch mix for a long time (default 10 minutes), watching memory.

It reports the resident memory (``VmRSS``) of every server process at t0, every few
seconds, and at the end, with the growth after warm-up (once the arrival ramp is
over), next to the errors and lost messages of the launch mix. Memory must be flat
once warm; a steady climb is a leak.
"""

from __future__ import annotations

from loadtest.scenarios.launch import LaunchScenario


class SoakScenario(LaunchScenario):
    name = "soak"
    help = "the launch mix for a set time (default 10 min): server memory, errors, losses"
    default_duration_s = 600.0
