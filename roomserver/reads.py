"""Read marks of one room: how many members have read up to a given seq.

A mark only moves forward. Marks are kept in a sorted list beside the per-user
map, so ``readers(seq)`` is one binary search rather than a scan of every
member.
"""

from __future__ import annotations

import bisect


class ReadMarks:
    def __init__(self) -> None:
        self._by_user: dict[str, int] = {}
        self._sorted: list[int] = []

    def mark(self, user: str, seq: int) -> int:
        """Move ``user``'s mark to ``seq`` if that is further; returns the mark now held."""
        old = self._by_user.get(user)
        if old is not None:
            if seq <= old:
                return old
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._by_user[user] = seq
        bisect.insort(self._sorted, seq)
        return seq

    def readers(self, seq: int) -> int:
        """Members whose read mark is at least ``seq``."""
        return len(self._sorted) - bisect.bisect_left(self._sorted, seq)

    def __len__(self) -> int:
        return len(self._by_user)
