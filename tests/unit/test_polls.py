"""PollBook: creation, the vote rules and their error order, closing, timers, visibility."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomserver.errors import AlreadyVoted, BadRequest, NotFound, PollClosed
from roomserver.polls import POLL_RECENT_MS, Poll, PollBook

OPTIONS = ("red", "green", "blue")


def book_with(*poll_ids: str, now_ms: int = 1_000, max_polls: int = 100) -> PollBook:
    book = PollBook(max_polls=max_polls)
    for poll_id in poll_ids:
        book.create(poll_id, f"question {poll_id}?", OPTIONS, now_ms, None)
    return book


# --- create / get / to_wire -----------------------------------------------------------


def test_create_opens_a_poll_with_zero_votes() -> None:
    book = PollBook()
    poll = book.create("p1", "Colour?", ["red", "blue"], now_ms=5_000, duration_s=None)
    assert poll == Poll(
        id="p1",
        question="Colour?",
        options=("red", "blue"),
        votes=[0, 0],
        open=True,
        created_at=5_000,
        closes_at=None,
        closed_at=None,
    )
    assert book.get("p1") is poll
    assert poll.total == 0


def test_create_with_duration_sets_closes_at() -> None:
    poll = PollBook().create("p1", "Q?", OPTIONS, now_ms=5_000, duration_s=30)
    assert poll.closes_at == 35_000


def test_create_with_existing_id_is_bad_request() -> None:
    book = book_with("p1")
    with pytest.raises(BadRequest):
        book.create("p1", "again?", OPTIONS, 2_000, None)
    assert book.get("p1").question == "question p1?"


def test_get_unknown_is_not_found() -> None:
    with pytest.raises(NotFound):
        PollBook().get("nope")


def test_to_wire_minimal() -> None:
    poll = PollBook().create("p1", "Colour?", ["red", "blue"], 0, None)
    assert poll.to_wire() == {
        "id": "p1",
        "question": "Colour?",
        "options": [{"text": "red", "votes": 0}, {"text": "blue", "votes": 0}],
        "total": 0,
        "open": True,
    }


def test_to_wire_with_closes_at_and_my_vote() -> None:
    book = PollBook()
    book.create("p1", "Colour?", ["red", "blue"], 1_000, 10)
    book.vote("p1", "u1", 1)
    book.vote("p1", "u2", 1)
    wire = book.get("p1").to_wire(my_vote=book.my_vote("p1", "u1"))
    assert wire == {
        "id": "p1",
        "question": "Colour?",
        "options": [{"text": "red", "votes": 0}, {"text": "blue", "votes": 2}],
        "total": 2,
        "open": True,
        "closes_at": 11_000,
        "my_vote": 1,
    }


def test_to_wire_my_vote_zero_is_included() -> None:
    book = book_with("p1")
    book.vote("p1", "u1", 0)
    assert book.get("p1").to_wire(my_vote=0)["my_vote"] == 0


# --- vote -----------------------------------------------------------------------------


def test_vote_counts_and_totals() -> None:
    book = book_with("p1")
    book.vote("p1", "u1", 0)
    book.vote("p1", "u2", 2)
    poll = book.vote("p1", "u3", 2)
    assert poll.votes == [1, 0, 2]
    assert poll.total == 3
    assert book.my_vote("p1", "u3") == 2
    assert book.my_vote("p1", "u4") is None


def test_one_vote_per_user_per_poll() -> None:
    book = book_with("p1", "p2")
    book.vote("p1", "u1", 0)
    with pytest.raises(AlreadyVoted):
        book.vote("p1", "u1", 1)
    assert book.get("p1").votes == [1, 0, 0]
    assert book.my_vote("p1", "u1") == 0
    book.vote("p2", "u1", 1)  # another poll is another vote
    assert book.get("p2").votes == [0, 1, 0]


def test_a_vote_after_closes_at_is_refused_before_any_timer_closes_the_poll() -> None:
    book = PollBook(max_polls=10)
    book.create("p1", "q?", OPTIONS, 1_000, 30)  # closes_at 31_000
    book.vote("p1", "u1", 0, now_ms=30_999)
    with pytest.raises(PollClosed):
        book.vote("p1", "u2", 0, now_ms=31_000)
    assert book.get("p1").open and book.get("p1").votes == [1, 0, 0]


def test_vote_unknown_poll_is_not_found() -> None:
    with pytest.raises(NotFound):
        book_with("p1").vote("p2", "u1", 0)


@pytest.mark.parametrize("option", [-1, 3, 99])
def test_vote_option_out_of_range(option: int) -> None:
    book = book_with("p1")
    with pytest.raises(BadRequest, match="option out of range"):
        book.vote("p1", "u1", option)
    assert book.get("p1").total == 0
    assert book.my_vote("p1", "u1") is None


def test_vote_boundaries_of_option_range() -> None:
    book = book_with("p1")
    book.vote("p1", "u1", 0)
    book.vote("p1", "u2", 2)
    assert book.get("p1").votes == [1, 0, 1]


def test_vote_on_closed_poll() -> None:
    book = book_with("p1")
    book.close("p1", 2_000)
    with pytest.raises(PollClosed):
        book.vote("p1", "u1", 0)


def test_vote_error_order_closed_before_bad_option() -> None:
    book = book_with("p1")
    book.close("p1", 2_000)
    with pytest.raises(PollClosed):
        book.vote("p1", "u1", 99)


def test_vote_error_order_closed_before_already_voted() -> None:
    book = book_with("p1")
    book.vote("p1", "u1", 0)
    book.close("p1", 2_000)
    with pytest.raises(PollClosed):
        book.vote("p1", "u1", 0)


def test_vote_error_order_bad_option_before_already_voted() -> None:
    book = book_with("p1")
    book.vote("p1", "u1", 0)
    with pytest.raises(BadRequest):
        book.vote("p1", "u1", 7)


def test_my_vote_unknown_poll_is_not_found() -> None:
    with pytest.raises(NotFound):
        PollBook().my_vote("p1", "u1")


@given(ballots=st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(-1, 3)), max_size=40))
def test_total_always_equals_number_of_voters(ballots: list[tuple[str, int]]) -> None:
    book = book_with("p1")
    voters: dict[str, int] = {}
    for user, option in ballots:
        try:
            book.vote("p1", user, option)
        except (AlreadyVoted, BadRequest):
            continue
        voters[user] = option
    poll = book.get("p1")
    assert poll.total == len(voters)
    assert poll.votes == [list(voters.values()).count(i) for i in range(3)]
    for user, option in voters.items():
        assert book.my_vote("p1", user) == option


# --- close ----------------------------------------------------------------------------


def test_close_returns_the_poll_only_the_first_time() -> None:
    book = book_with("p1")
    poll = book.close("p1", 7_000)
    assert poll is not None
    assert (poll.open, poll.closed_at) == (False, 7_000)
    assert book.close("p1", 8_000) is None
    assert book.get("p1").closed_at == 7_000


def test_close_unknown_is_not_found() -> None:
    with pytest.raises(NotFound):
        PollBook().close("p1", 0)


def test_closed_poll_keeps_its_tally() -> None:
    book = book_with("p1")
    book.vote("p1", "u1", 1)
    book.close("p1", 2_000)
    assert book.get("p1").to_wire()["options"][1] == {"text": "green", "votes": 1}
    assert book.get("p1").to_wire()["open"] is False


# --- due / next_deadline --------------------------------------------------------------


def test_due_lists_open_polls_whose_deadline_passed() -> None:
    book = PollBook()
    book.create("never", "Q?", OPTIONS, 0, None)
    book.create("late", "Q?", OPTIONS, 0, 20)  # closes at 20_000
    book.create("early", "Q?", OPTIONS, 0, 10)  # closes at 10_000
    assert book.due(9_999) == []
    assert book.due(10_000) == ["early"]
    assert book.due(20_000) == ["early", "late"]
    book.close("early", 10_000)
    assert book.due(30_000) == ["late"]


def test_next_deadline() -> None:
    book = PollBook()
    assert book.next_deadline() is None
    book.create("never", "Q?", OPTIONS, 0, None)
    assert book.next_deadline() is None
    book.create("a", "Q?", OPTIONS, 0, 30)
    book.create("b", "Q?", OPTIONS, 0, 10)
    assert book.next_deadline() == 10_000
    book.close("b", 10_000)
    assert book.next_deadline() == 30_000
    book.close("a", 30_000)
    assert book.next_deadline() is None


def test_zero_duration_is_due_immediately() -> None:
    book = PollBook()
    book.create("p1", "Q?", OPTIONS, 5_000, 0)
    assert book.next_deadline() == 5_000
    assert book.due(5_000) == ["p1"]


# --- visible --------------------------------------------------------------------------


def test_visible_keeps_closed_polls_for_ten_minutes() -> None:
    assert POLL_RECENT_MS == 600_000
    book = book_with("old", "open", "recent")
    book.close("old", 10_000)
    book.close("recent", 500_000)
    assert [p.id for p in book.visible(10_000)] == ["old", "open", "recent"]
    assert [p.id for p in book.visible(10_000 + POLL_RECENT_MS - 1)] == [
        "old",
        "open",
        "recent",
    ]
    assert [p.id for p in book.visible(10_000 + POLL_RECENT_MS)] == ["open", "recent"]
    assert [p.id for p in book.visible(500_000 + POLL_RECENT_MS)] == ["open"]


def test_visible_is_in_creation_order() -> None:
    book = PollBook()
    for poll_id in ["c", "a", "b"]:
        book.create(poll_id, "Q?", OPTIONS, 0, None)
    assert [p.id for p in book.visible(0)] == ["c", "a", "b"]


# --- max_polls ------------------------------------------------------------------------


def test_full_book_of_open_polls_refuses_a_new_one() -> None:
    book = book_with("p1", "p2", max_polls=2)
    with pytest.raises(BadRequest, match="too many open polls"):
        book.create("p3", "Q?", OPTIONS, 0, None)
    assert len(book) == 2
    assert "p3" not in book


def test_full_book_drops_the_longest_closed_poll() -> None:
    book = book_with("p1", "p2", "p3", max_polls=3)
    book.vote("p2", "u1", 0)
    book.close("p2", 1_000)  # closed first
    book.close("p1", 2_000)
    book.create("p4", "Q?", OPTIONS, 3_000, None)
    assert len(book) == 3
    assert "p2" not in book
    assert [p.id for p in book.visible(3_000)] == ["p1", "p3", "p4"]
    with pytest.raises(NotFound):
        book.my_vote("p2", "u1")
    book.create("p5", "Q?", OPTIONS, 4_000, None)
    assert "p1" not in book
    with pytest.raises(BadRequest):
        book.create("p6", "Q?", OPTIONS, 5_000, None)


def test_dropped_poll_id_can_be_reused() -> None:
    book = book_with("p1", max_polls=1)
    book.vote("p1", "u1", 0)
    book.close("p1", 1_000)
    book.create("p2", "Q?", OPTIONS, 2_000, None)  # drops p1
    assert "p1" not in book
    book.close("p2", 3_000)
    poll = book.create("p1", "new?", OPTIONS, 4_000, None)
    assert poll.question == "new?"
    assert book.my_vote("p1", "u1") is None
    book.vote("p1", "u1", 2)


def test_duplicate_id_checked_before_capacity() -> None:
    book = book_with("p1", max_polls=1)
    with pytest.raises(BadRequest, match="already exists"):
        book.create("p1", "Q?", OPTIONS, 0, None)


def test_invalid_max_polls() -> None:
    with pytest.raises(ValueError):
        PollBook(max_polls=0)
