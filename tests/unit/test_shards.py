"""The room-to-shard mapping: stable, spread, and minimal movement when shards are added."""

from __future__ import annotations

from collections import Counter

from roomserver.broker.redis import shard_index


def test_one_shard_takes_everything() -> None:
    assert {shard_index(f"r{i}", 1) for i in range(100)} == {0}


def test_mapping_is_stable() -> None:
    assert [shard_index("launch-night", n) for n in (2, 3, 8)] == [
        shard_index("launch-night", n) for n in (2, 3, 8)
    ]


def test_rooms_spread_evenly() -> None:
    counts = Counter(shard_index(f"room-{i}", 3) for i in range(30_000))
    assert set(counts) == {0, 1, 2}
    assert all(9_000 < c < 11_000 for c in counts.values()), counts


def test_adding_a_shard_moves_about_one_in_n() -> None:
    rooms = [f"room-{i}" for i in range(20_000)]
    moved = sum(shard_index(r, 3) != shard_index(r, 4) for r in rooms)
    assert 0.2 < moved / len(rooms) < 0.3  # ideal: 1/4
    assert all(shard_index(r, 4) == 3 for r in rooms if shard_index(r, 3) != shard_index(r, 4))
