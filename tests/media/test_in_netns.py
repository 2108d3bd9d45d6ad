"""Run the WebRTC tests inside a private network namespace, from a plain ``pytest``.

``unshare --net`` gives the run its own network stack with only ``lo`` up, so
whatever aiortc gathers or sends, nothing leaves the machine. The run must
pass every ``netns`` test there is: it cannot pass by running none.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.media.conftest import IN_NETNS

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 240
PYTEST = [sys.executable, "-m", "pytest", "tests/media", "-m", "netns", "-p", "no:cacheprovider"]


def _collected() -> int:
    listing = subprocess.run(
        [*PYTEST, "--collect-only", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listing.returncode == 0, listing.stdout + listing.stderr
    return sum(1 for line in listing.stdout.splitlines() if "::" in line)


@pytest.mark.slow
@pytest.mark.skipif(IN_NETNS, reason="already inside the namespace")
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_webrtc_tests_pass_inside_a_private_network_namespace() -> None:
    expected = _collected()
    assert expected >= 15
    inner = " ".join(PYTEST) + " -q"
    script = f"ip link set lo up && ROOMSERVER_NETNS=1 exec {inner}"
    result = subprocess.run(
        ["unshare", "--net", "sh", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    summary = output.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"=* ?{expected} passed(, \d+ deselected)? in [\d.]+s( \(.*\))? ?=*", summary
    ), summary
