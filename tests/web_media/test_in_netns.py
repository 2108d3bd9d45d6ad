"""Run the browser media tests inside a private network namespace, from a plain pytest."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.web_media.conftest import IN_NETNS

ROOT = Path(__file__).resolve().parents[2]
PYTEST = [
    sys.executable,
    "-m",
    "pytest",
    "tests/web_media",
    "-m",
    "netns",
    "-p",
    "no:cacheprovider",
]


@pytest.mark.slow
@pytest.mark.skipif(IN_NETNS, reason="already inside the namespace")
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_browser_media_tests_pass_inside_a_private_network_namespace() -> None:
    listing = subprocess.run(
        [*PYTEST, "--collect-only", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    expected = sum(1 for line in listing.stdout.splitlines() if "::" in line)
    assert expected >= 1, listing.stdout + listing.stderr
    script = f"ip link set lo up && ROOMSERVER_NETNS=1 exec {' '.join(PYTEST)} -q"
    result = subprocess.run(
        ["unshare", "--net", "sh", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    summary = output.strip().splitlines()[-1]
    assert re.search(rf"\b{expected} passed\b", summary), summary
