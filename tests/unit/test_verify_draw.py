"""roomserver verify-draw on files a receiver would save."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from roomserver.draws import commitment, select_winners
from roomserver.verify_draw import run

SEED = "5e" * 32


def result() -> dict[str, object]:
    eligible = ["ann", "bob", "cy"]
    return {
        "id": "d1",
        "seed": SEED,
        "commitment": commitment(SEED),
        "eligible": eligible,
        "winners_count": 2,
        "winners": select_winners(SEED, eligible, 2),
    }


def test_accepts_an_event_a_webhook_body_or_the_bare_object(tmp_path: Path, capsys: object) -> None:
    for document in (
        result(),
        {"t": "draw.result", "draw": result()},
        {"data": {"draw": result()}},
    ):
        path = tmp_path / "draw.json"
        path.write_text(json.dumps(document))
        assert run(str(path)) == 0


def test_rejects_tampered_winners(tmp_path: Path) -> None:
    tampered = result()
    tampered["winners"] = ["cy", "ann"] if tampered["winners"] != ["cy", "ann"] else ["bob", "ann"]
    path = tmp_path / "draw.json"
    path.write_text(json.dumps(tampered))
    assert run(str(path)) == 1


def test_unreadable_file(tmp_path: Path) -> None:
    assert run(str(tmp_path / "missing.json")) == 2


def test_the_cli_subcommand(tmp_path: Path) -> None:
    path = tmp_path / "draw.json"
    path.write_text(json.dumps({"t": "draw.result", "room": "r", "draw": result()}))
    done = subprocess.run(
        [sys.executable, "-m", "roomserver.cli", "verify-draw", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout
