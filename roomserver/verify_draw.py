"""``roomserver verify-draw FILE``: recompute a published draw result.

FILE holds the ``draw`` object of a ``draw.result`` event (or the whole
event, or the webhook delivery) as JSON. Exit 0 when the commitment, the
eligible list and the winners all check out, 1 otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from roomserver.draws import select_winners, verify


def find_result(document: Any) -> dict[str, Any]:
    """The draw result inside an event, a webhook body or the bare object."""
    if isinstance(document, dict):
        if "seed" in document:
            return document
        for key in ("draw", "data"):
            if key in document:
                return find_result(document[key])
    raise ValueError("no draw result (with a seed) in this file")


def run(path: str) -> int:
    try:
        result = find_result(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        print(f"verify-draw: {exc}", file=sys.stderr)
        return 2
    problems = verify(result)
    eligible = result.get("eligible", [])
    recomputed = select_winners(
        result.get("seed", ""), eligible, int(result.get("winners_count", 0))
    )
    print(f"draw {result.get('id')}: {len(eligible)} eligible, winners {recomputed}")
    for problem in problems:
        print(f"MISMATCH: {problem}")
    if problems:
        return 1
    print("OK: the seed matches the commitment and the winners follow from seed and entries")
    return 0
