"""The draw rule: commitment, order, winners."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from roomserver.draws import commitment, eligible_list, new_seed, select_winners, verify

SEED = "ab" * 32


def test_commitment_is_sha256_of_the_seed_text() -> None:
    assert commitment(SEED) == hashlib.sha256(SEED.encode()).hexdigest()
    assert len(new_seed()) == 64 and new_seed() != new_seed()


def test_winners_follow_the_documented_rule() -> None:
    eligible = eligible_list(["carol", "alice", "bob", "alice", "dave"])
    assert eligible == ["alice", "bob", "carol", "dave"]
    remaining, expected = list(eligible), []
    for i in range(2):
        h = int(hashlib.sha256(f"{SEED}:{i}".encode()).hexdigest(), 16)
        expected.append(remaining.pop(h % len(remaining)))
    assert select_winners(SEED, eligible, 2) == expected


def test_more_winners_than_entries_takes_everyone_once() -> None:
    assert sorted(select_winners(SEED, ["a", "b"], 5)) == ["a", "b"]
    assert select_winners(SEED, [], 3) == []


@given(st.lists(st.text(min_size=1, max_size=8), max_size=30), st.integers(0, 10))
def test_winners_are_distinct_entries(entries: list[str], count: int) -> None:
    eligible = eligible_list(entries)
    winners = select_winners(SEED, eligible, count)
    assert len(winners) == min(count, len(eligible)) == len(set(winners))
    assert set(winners) <= set(eligible)


def test_verify_accepts_an_honest_result_and_names_each_lie() -> None:
    eligible = ["a", "b", "c"]
    honest = {
        "seed": SEED,
        "commitment": commitment(SEED),
        "eligible": eligible,
        "winners_count": 1,
        "winners": select_winners(SEED, eligible, 1),
    }
    assert verify(honest) == []
    assert "commitment" in verify({**honest, "seed": "cd" * 32})[0]
    assert "sorted" in verify({**honest, "eligible": ["c", "b", "a"]})[0]
    other = next(u for u in eligible if u not in honest["winners"])
    assert "winners" in verify({**honest, "winners": [other]})[0]
    assert verify({}) == ["the result has no seed or no eligible list"]
