"""Exact accounting of chat deliveries: lost, duplicated, unacknowledged, out of order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from loadtest.ledger import (
    Receipts,
    Tally,
    at_or_below,
    mask_from_hex,
    mask_of,
    mask_to_hex,
    settle,
)


def test_every_message_received_once_is_nothing_lost() -> None:
    receipts = Receipts()
    for seq in range(1, 101):
        assert receipts.mark(seq)
    tally = settle(receipts, mask_of(set(range(1, 101))))
    assert (tally.expected, tally.delivered, tally.lost, tally.duplicated) == (100, 100, 0, 0)
    assert tally.out_of_order == 0 and tally.unacknowledged == 0


def test_missing_and_repeated_messages_are_counted_exactly() -> None:
    receipts = Receipts()
    for seq in [1, 2, 2, 4, 5, 5, 5]:
        receipts.mark(seq)
    tally = settle(receipts, mask_of({1, 2, 3, 4, 5}))
    assert tally.lost == 1  # seq 3
    assert tally.duplicated == 3
    assert tally.delivered == 4


def test_a_member_is_owed_only_what_came_after_its_snapshot() -> None:
    receipts = Receipts(base=10)
    for seq in range(11, 21):
        receipts.mark(seq)
    tally = settle(receipts, mask_of(set(range(1, 21))))
    assert tally.expected == 10 and tally.lost == 0 and tally.below_base == 0


def test_receipts_at_or_below_the_base_are_flagged() -> None:
    receipts = Receipts(base=5)
    receipts.mark(5)
    receipts.mark(6)
    tally = settle(receipts, mask_of({5, 6}))
    assert tally.below_base == 1 and tally.expected == 1 and tally.delivered == 1


def test_a_receipt_of_an_unacknowledged_message_is_not_a_delivery() -> None:
    receipts = Receipts()
    receipts.mark(1)
    receipts.mark(2)
    tally = settle(receipts, mask_of({1}))
    assert tally.delivered == 1 and tally.unacknowledged == 1 and tally.lost == 0


def test_out_of_order_receipts_are_counted() -> None:
    receipts = Receipts()
    for seq in [1, 3, 2, 4]:
        receipts.mark(seq)
    assert receipts.out_of_order == 1
    assert settle(receipts, mask_of({1, 2, 3, 4})).lost == 0


@given(
    st.sets(st.integers(min_value=1, max_value=3000), max_size=200),
    st.lists(st.integers(min_value=1, max_value=3000), max_size=300),
    st.integers(min_value=0, max_value=3000),
)
def test_settle_matches_set_arithmetic(accepted: set[int], got: list[int], base: int) -> None:
    receipts = Receipts(base)
    for seq in got:
        receipts.mark(seq)
    tally = settle(receipts, mask_of(accepted))
    owed = {s for s in accepted if s > base}
    received = set(got)
    assert tally.expected == len(owed)
    assert tally.delivered == len(owed & received)
    assert tally.lost == len(owed - received)
    assert tally.duplicated == len(got) - len(received)
    assert tally.unacknowledged == len({s for s in received - accepted if s > base})
    assert tally.below_base == len({s for s in received if s <= base})


def test_tallies_add_up_and_round_trip() -> None:
    total = Tally()
    total.add(Tally(expected=3, delivered=2, lost=1, connections=1))
    total.add(Tally(expected=3, delivered=3, duplicated=1, connections=1))
    assert Tally.from_json(total.to_json()) == total
    assert (total.expected, total.lost, total.duplicated, total.connections) == (6, 1, 1, 2)


def test_masks_round_trip_through_hex() -> None:
    mask = mask_of({1, 7, 8, 1000})
    assert mask_from_hex(mask_to_hex(mask)) == mask
    assert mask_from_hex("") == 0 == mask_of(set())
    assert at_or_below(2) == 0b111 and at_or_below(-1) == 0
