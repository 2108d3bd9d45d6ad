"""Exact accounting of chat deliveries: lost, duplicated and unexpected, per connection.

Invariants:

- A :class:`Receipts` is the set of chat ``seq`` numbers one connection received
  live (after its join snapshot), kept as a growable bitmap: marking costs one byte
  operation, so a receiver can keep up with the server, and a second receipt of the
  same ``seq`` is counted as a duplicate, never as a delivery.
- ``base`` is the snapshot's ``seq``: the contract delivers live every message with a
  larger ``seq`` and none at or below it. So what a connection is owed is exactly the
  accepted ``seq`` numbers above its base, which is what makes the lost count exact
  for members who join while chat is running.
- Accepted messages are given as a bitmask (bit ``s`` set when a sender got ``ok``
  with ``seq`` ``s``). A receipt of a ``seq`` outside that set (its ``ok`` was lost or
  came too late) is counted as ``unacknowledged``, separately from deliveries.
- Order: the contract promises chat in ``seq`` order; a receipt below the highest
  seen so far is counted in ``out_of_order``.
"""

from __future__ import annotations

from dataclasses import dataclass


class Receipts:
    """The live chat receipts of one connection (see the module docstring)."""

    __slots__ = ("base", "bits", "duplicates", "highest", "out_of_order", "unique")

    def __init__(self, base: int = 0) -> None:
        self.base = base
        self.bits = bytearray()
        self.unique = 0
        self.duplicates = 0
        self.out_of_order = 0
        self.highest = base

    def mark(self, seq: int) -> bool:
        """Count a receipt of ``seq``; False when it is a duplicate."""
        byte, bit = seq >> 3, 1 << (seq & 7)
        bits = self.bits
        if byte >= len(bits):
            bits.extend(bytes(byte - len(bits) + 64))
        if bits[byte] & bit:
            self.duplicates += 1
            return False
        bits[byte] |= bit
        self.unique += 1
        if seq < self.highest:
            self.out_of_order += 1
        else:
            self.highest = seq
        return True

    def mask(self) -> int:
        """The received seqs as an int bitmask (bit ``s`` for seq ``s``)."""
        return int.from_bytes(self.bits, "little")


@dataclass(slots=True)
class Tally:
    """The delivery figures of a set of connections, summed over them."""

    expected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    unacknowledged: int = 0
    out_of_order: int = 0
    below_base: int = 0
    connections: int = 0

    def add(self, other: Tally) -> None:
        self.expected += other.expected
        self.delivered += other.delivered
        self.lost += other.lost
        self.duplicated += other.duplicated
        self.unacknowledged += other.unacknowledged
        self.out_of_order += other.out_of_order
        self.below_base += other.below_base
        self.connections += other.connections

    def to_json(self) -> dict[str, int]:
        return {
            "expected": self.expected,
            "delivered": self.delivered,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "unacknowledged": self.unacknowledged,
            "out_of_order": self.out_of_order,
            "below_base": self.below_base,
            "connections": self.connections,
        }

    @classmethod
    def from_json(cls, data: dict[str, int]) -> Tally:
        return cls(**{k: int(v) for k, v in data.items()})


def at_or_below(base: int) -> int:
    """The bitmask of seqs ``0..base``: what a connection's snapshot already covered."""
    return (1 << (base + 1)) - 1 if base >= 0 else 0


def settle(receipts: Receipts, accepted: int) -> Tally:
    """What one connection was owed (accepted seqs above its base) against what it got."""
    got = receipts.mask()
    covered = at_or_below(receipts.base)
    owed = accepted & ~covered
    delivered = (owed & got).bit_count()
    expected = owed.bit_count()
    return Tally(
        expected=expected,
        delivered=delivered,
        lost=expected - delivered,
        duplicated=receipts.duplicates,
        unacknowledged=(got & ~accepted & ~covered).bit_count(),
        out_of_order=receipts.out_of_order,
        below_base=(got & covered).bit_count(),
        connections=1,
    )


def mask_of(seqs: list[int] | set[int]) -> int:
    """A bitmask with bit ``s`` set for every ``s`` in ``seqs``."""
    if not seqs:
        return 0
    bits = bytearray((max(seqs) >> 3) + 1)
    for seq in seqs:
        bits[seq >> 3] |= 1 << (seq & 7)
    return int.from_bytes(bits, "little")


def mask_to_hex(mask: int) -> str:
    """A mask for JSON or a process queue (compact, exact)."""
    return format(mask, "x")


def mask_from_hex(text: str) -> int:
    return int(text, 16) if text else 0
