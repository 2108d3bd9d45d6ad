"""Verifiable lucky draws: commit to a seed, reveal it, pick winners anyone can recompute.

The rule, which ``roomserver verify-draw`` and the snippet in docs/draws.md
apply as well:

1. At the start the server draws a random ``seed`` (64 hex characters) and
   publishes only ``commitment = sha256(seed)`` (hex of the seed's UTF-8 bytes).
2. Entries are user ids, one per user; at the end they are sorted by code point
   into the ``eligible`` list and published with the seed.
3. Winner ``i`` (0, 1, …) is taken from the users not yet picked:
   ``h = int(sha256(f"{seed}:{i}").hexdigest(), 16)``, index ``h % len(remaining)``,
   where ``remaining`` keeps the sorted order.

Nobody, the operator included, can choose the seed after seeing the entries:
it was fixed by the commitment before anyone entered.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from typing import Any

ELIGIBILITY = ("present", "keyword", "voted")


def new_seed() -> str:
    return secrets.token_hex(32)


def commitment(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def eligible_list(entries: Iterable[str]) -> list[str]:
    """The published order of the entries: unique, sorted by code point."""
    return sorted(set(entries))


def select_winners(seed: str, eligible: list[str], count: int) -> list[str]:
    """The winners, as the module docstring defines them."""
    remaining = list(eligible)
    winners: list[str] = []
    for index in range(min(count, len(remaining))):
        digest = hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()
        winners.append(remaining.pop(int(digest, 16) % len(remaining)))
    return winners


def verify(result: dict[str, Any]) -> list[str]:
    """Problems with a published draw result; empty when it checks out."""
    problems = []
    seed, eligible = result.get("seed"), result.get("eligible")
    if not isinstance(seed, str) or not isinstance(eligible, list):
        return ["the result has no seed or no eligible list"]
    if commitment(seed) != result.get("commitment"):
        problems.append("sha256(seed) does not match the commitment published at the start")
    if eligible != eligible_list(eligible):
        problems.append("the eligible list is not unique and sorted")
    expected = select_winners(seed, eligible, int(result.get("winners_count", 0)))
    if expected != result.get("winners"):
        problems.append(f"the winners should be {expected}")
    return problems
