"""ChatLog: sequencing, bounded history, idempotency, resume and paging gap rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomserver.chat import ChatLog, after_gap, before_gap, resume_window
from roomserver.ids import ChatDraft, ChatMessage


def draft(cid: str, user: str = "u1", text: str = "hi") -> ChatDraft:
    return ChatDraft(user=user, name="Ann", role="member", text=text, cid=cid)


def filled(count: int, capacity: int = 1000, **kwargs: int) -> ChatLog:
    log = ChatLog("r1", capacity=capacity, **kwargs)
    for i in range(1, count + 1):
        log.append(draft(f"c{i}"), ts=1000 + i)
    return log


def seqs(messages: list[ChatMessage]) -> list[int]:
    return [m.seq for m in messages]


# --- sequencing -----------------------------------------------------------------------


def test_empty_log_state() -> None:
    log = ChatLog("r1")
    assert log.latest_seq == 0
    assert log.first_held_seq == 1
    assert len(log) == 0
    assert log.latest(50) == []
    assert log.get(1) is None


def test_seq_starts_at_one_and_is_contiguous() -> None:
    log = ChatLog("r1")
    results = [log.append(draft(f"c{i}"), ts=100 + i) for i in range(5)]
    assert [(m.seq, new) for m, new in results] == [(i, True) for i in range(1, 6)]
    assert log.latest_seq == 5
    assert log.first_held_seq == 1


def test_append_builds_the_wire_message() -> None:
    log = ChatLog("room-9")
    message, new = log.append(
        ChatDraft(user="u7", name="Bo", role="host", text="hello", cid="x"), ts=42
    )
    assert new is True
    assert message.to_event() == {
        "t": "chat",
        "room": "room-9",
        "seq": 1,
        "ts": 42,
        "user": "u7",
        "name": "Bo",
        "role": "host",
        "text": "hello",
        "cid": "x",
    }
    assert log.get(1) is message


# --- idempotency ----------------------------------------------------------------------


def test_retry_returns_first_result_and_does_not_advance_seq() -> None:
    log = ChatLog("r1")
    first, new = log.append(draft("a", text="one"), ts=10)
    assert new
    again, new_again = log.append(draft("a", text="changed"), ts=99)
    assert new_again is False
    assert again is first
    assert (again.seq, again.ts, again.text) == (1, 10, "one")
    assert log.latest_seq == 1
    assert seqs(log.latest(10)) == [1]


def test_same_cid_from_another_user_is_a_new_message() -> None:
    log = ChatLog("r1")
    log.append(draft("a", user="u1"), ts=1)
    message, new = log.append(draft("a", user="u2"), ts=2)
    assert new
    assert message.seq == 2


def test_retry_after_delete_still_returns_first_message() -> None:
    log = ChatLog("r1")
    first, _ = log.append(draft("a"), ts=10)
    assert log.delete(1)
    again, new = log.append(draft("a"), ts=20)
    assert new is False
    assert again == first
    assert log.latest_seq == 1


def test_retry_after_eviction_still_returns_first_message() -> None:
    log = ChatLog("r1", capacity=2)
    log.append(draft("a"), ts=10)
    log.append(draft("b"), ts=11)
    log.append(draft("c"), ts=12)
    assert log.get(1) is None  # evicted
    again, new = log.append(draft("a"), ts=13)
    assert new is False
    assert (again.seq, again.ts) == (1, 10)
    assert log.latest_seq == 3


def test_idempotency_capacity_defaults_to_four_times_capacity() -> None:
    assert ChatLog("r1", capacity=7).idempotency_capacity == 28


def test_idempotency_lru_forgets_least_recently_used() -> None:
    log = ChatLog("r1", capacity=10, idempotency_capacity=2)
    log.append(draft("a"), ts=1)
    log.append(draft("b"), ts=2)
    log.append(draft("a"), ts=3)  # retry touches "a": "b" is now least recently used
    log.append(draft("c"), ts=4)  # evicts "b"
    assert log.append(draft("a"), ts=5)[1] is False
    message, new = log.append(draft("b"), ts=6)
    assert new is True
    assert message.seq == 4


def test_invalid_capacities_are_refused() -> None:
    with pytest.raises(ValueError):
        ChatLog("r1", capacity=0)
    with pytest.raises(ValueError):
        ChatLog("r1", capacity=5, idempotency_capacity=-1)


# --- restore / skip_to ----------------------------------------------------------------


def make_message(seq: int, cid: str | None = None, user: str = "u1") -> ChatMessage:
    return ChatMessage(
        room="r1",
        seq=seq,
        ts=seq * 10,
        user=user,
        name="Ann",
        role="member",
        text=f"m{seq}",
        cid=cid or f"c{seq}",
    )


def test_restore_appends_contiguous_messages_and_records_cid() -> None:
    log = ChatLog("r1")
    log.restore(make_message(1))
    log.restore(make_message(2))
    assert log.latest_seq == 2
    assert log.get(2) == make_message(2)
    again, new = log.append(draft("c1"), ts=999)
    assert new is False
    assert again == make_message(1)
    message, new = log.append(draft("fresh"), ts=999)
    assert (message.seq, new) == (3, True)


@pytest.mark.parametrize("seq", [0, 1, 3, 5])
def test_restore_refuses_a_seq_that_does_not_continue_the_run(seq: int) -> None:
    log = ChatLog("r1")
    log.restore(make_message(1))
    with pytest.raises(ValueError):
        log.restore(make_message(seq))
    assert log.latest_seq == 1


def test_skip_to_then_restore_mirrors_a_tail() -> None:
    log = filled(3)
    log.skip_to(40)
    assert (log.latest_seq, log.first_held_seq, len(log)) == (40, 41, 0)
    assert log.get(3) is None
    log.restore(make_message(41))
    log.restore(make_message(42))
    assert (log.first_held_seq, log.latest_seq) == (41, 42)
    assert log.since(0) == ([make_message(41), make_message(42)], True)
    assert log.since(40) == ([make_message(41), make_message(42)], False)
    # cids remembered before the skip still deduplicate
    assert log.append(draft("c2"), ts=1)[1] is False
    with pytest.raises(ValueError):
        log.skip_to(10)


# --- capacity and eviction ------------------------------------------------------------


def test_eviction_at_capacity_drops_the_oldest() -> None:
    log = filled(3, capacity=3)
    assert (log.first_held_seq, log.latest_seq, len(log)) == (1, 3, 3)
    log.append(draft("c4"), ts=5)
    assert (log.first_held_seq, log.latest_seq, len(log)) == (2, 4, 3)
    assert log.get(1) is None
    assert seqs(log.latest(10)) == [2, 3, 4]


def test_tombstones_count_toward_capacity() -> None:
    log = filled(3, capacity=3)
    assert log.delete(3)
    log.append(draft("c4"), ts=5)
    assert log.first_held_seq == 2
    assert seqs(log.latest(10)) == [2, 4]


def test_capacity_one() -> None:
    log = filled(5, capacity=1)
    assert (log.first_held_seq, log.latest_seq) == (5, 5)
    assert seqs(log.latest(10)) == [5]


# --- delete / get / latest ------------------------------------------------------------


def test_delete_marks_a_tombstone_once() -> None:
    log = filled(3)
    assert log.delete(2) is True
    assert log.delete(2) is False
    assert log.get(2) is None
    assert log.get(3) is not None
    assert seqs(log.latest(10)) == [1, 3]
    assert log.first_held_seq == 1
    assert log.latest_seq == 3


@pytest.mark.parametrize("seq", [0, -1, 4, 100])
def test_delete_of_unheld_seq_is_false(seq: int) -> None:
    log = filled(3)
    assert log.delete(seq) is False


def test_delete_of_evicted_seq_is_false() -> None:
    log = filled(5, capacity=2)
    assert log.delete(3) is False
    assert log.delete(4) is True


def test_latest_returns_last_visible_messages_ascending() -> None:
    log = filled(10)
    log.delete(9)
    assert seqs(log.latest(3)) == [7, 8, 10]
    assert seqs(log.latest(1)) == [10]
    assert log.latest(0) == []
    assert seqs(log.latest(100)) == [1, 2, 3, 4, 5, 6, 7, 8, 10]


# --- resume_window --------------------------------------------------------------------


def test_resume_window_fresh_log() -> None:
    assert resume_window(0, first_held_seq=1, latest_seq=0, limit=500) == (1, 0, False)


def test_resume_window_since_zero_with_all_held() -> None:
    assert resume_window(0, first_held_seq=1, latest_seq=10, limit=500) == (1, 10, False)


def test_resume_window_since_inside_held_run() -> None:
    assert resume_window(7, first_held_seq=3, latest_seq=10, limit=500) == (8, 10, False)


def test_resume_window_since_just_before_first_held_is_no_gap() -> None:
    assert resume_window(2, first_held_seq=3, latest_seq=10, limit=500) == (3, 10, False)


def test_resume_window_since_before_first_held_is_a_gap() -> None:
    assert resume_window(1, first_held_seq=3, latest_seq=10, limit=500) == (3, 10, True)
    assert resume_window(0, first_held_seq=3, latest_seq=10, limit=500) == (3, 10, True)


def test_resume_window_since_equal_latest() -> None:
    assert resume_window(10, first_held_seq=3, latest_seq=10, limit=500) == (11, 10, False)


def test_resume_window_client_ahead_of_room() -> None:
    assert resume_window(11, first_held_seq=3, latest_seq=10, limit=500) == (11, 10, True)
    assert resume_window(5, first_held_seq=1, latest_seq=0, limit=500) == (1, 0, True)


def test_resume_window_exactly_limit_missing_is_no_gap() -> None:
    assert resume_window(0, first_held_seq=1, latest_seq=500, limit=500) == (1, 500, False)


def test_resume_window_more_than_limit_missing() -> None:
    assert resume_window(0, first_held_seq=1, latest_seq=501, limit=500) == (1, 500, True)
    assert resume_window(100, first_held_seq=1, latest_seq=1000, limit=50) == (101, 150, True)


def test_resume_window_nothing_held() -> None:
    assert resume_window(3, first_held_seq=11, latest_seq=10, limit=5) == (11, 10, True)


def test_resume_window_refuses_nonpositive_limit() -> None:
    with pytest.raises(ValueError):
        resume_window(0, 1, 10, 0)


# --- since ----------------------------------------------------------------------------


def test_since_on_fresh_log() -> None:
    assert ChatLog("r1").since(0) == ([], False)


def test_since_returns_messages_after_since() -> None:
    log = filled(10)
    messages, gap = log.since(7)
    assert seqs(messages) == [8, 9, 10]
    assert gap is False


def test_since_equal_latest_is_empty_without_gap() -> None:
    assert filled(10).since(10) == ([], False)


def test_since_ahead_of_latest_is_a_gap() -> None:
    assert filled(10).since(11) == ([], True)


def test_since_before_first_held_is_a_gap() -> None:
    log = filled(10, capacity=5)
    messages, gap = log.since(2)
    assert seqs(messages) == [6, 7, 8, 9, 10]
    assert gap is True
    assert log.since(5) == (log.latest(5), False)


def test_since_with_more_than_limit_missing_returns_oldest_first() -> None:
    log = filled(10)
    messages, gap = log.since(2, limit=3)
    assert seqs(messages) == [3, 4, 5]
    assert gap is True
    messages, gap = log.since(7, limit=3)
    assert seqs(messages) == [8, 9, 10]
    assert gap is False


def test_since_skips_tombstones_without_gap() -> None:
    log = filled(6)
    log.delete(4)
    log.delete(5)
    messages, gap = log.since(3)
    assert seqs(messages) == [6]
    assert gap is False


def test_since_default_limit_is_500() -> None:
    log = filled(501, capacity=1000)
    messages, gap = log.since(0)
    assert len(messages) == 500
    assert messages[-1].seq == 500
    assert gap is True


# --- before / after gap rules ---------------------------------------------------------


def test_before_gap_rule() -> None:
    assert before_gap(returned=5, limit=5, first_held_seq=100) is False
    assert before_gap(returned=4, limit=5, first_held_seq=100) is True
    assert before_gap(returned=4, limit=5, first_held_seq=1) is False
    assert before_gap(returned=0, limit=5, first_held_seq=2) is True


def test_after_gap_rule() -> None:
    assert after_gap(after_seq=5, first_held_seq=6) is False
    assert after_gap(after_seq=4, first_held_seq=6) is True
    assert after_gap(after_seq=10, first_held_seq=6) is False
    assert after_gap(after_seq=0, first_held_seq=1) is False


def test_before_returns_messages_immediately_before_seq() -> None:
    log = filled(10)
    messages, gap = log.before(8, 3)
    assert seqs(messages) == [5, 6, 7]
    assert gap is False


def test_before_reaching_the_start_of_the_room_is_no_gap() -> None:
    log = filled(10)
    messages, gap = log.before(3, 5)
    assert seqs(messages) == [1, 2]
    assert gap is False


def test_before_reaching_evicted_history_is_a_gap() -> None:
    log = filled(10, capacity=5)
    messages, gap = log.before(8, 5)
    assert seqs(messages) == [6, 7]
    assert gap is True
    messages, gap = log.before(9, 2)
    assert seqs(messages) == [7, 8]
    assert gap is False
    assert log.before(6, 5) == ([], True)


def test_before_beyond_latest_reads_from_latest() -> None:
    log = filled(5)
    messages, gap = log.before(100, 2)
    assert seqs(messages) == [4, 5]
    assert gap is False


def test_before_skips_tombstones() -> None:
    log = filled(10)
    log.delete(7)
    messages, gap = log.before(9, 3)
    assert seqs(messages) == [5, 6, 8]
    assert gap is False


def test_after_returns_messages_immediately_after_seq() -> None:
    log = filled(10)
    messages, gap = log.after(3, 4)
    assert seqs(messages) == [4, 5, 6, 7]
    assert gap is False


def test_after_short_page_at_the_end_is_no_gap() -> None:
    log = filled(10)
    messages, gap = log.after(8, 5)
    assert seqs(messages) == [9, 10]
    assert gap is False
    assert log.after(10, 5) == ([], False)


def test_after_from_evicted_history_is_a_gap() -> None:
    log = filled(10, capacity=5)
    messages, gap = log.after(2, 3)
    assert seqs(messages) == [6, 7, 8]
    assert gap is True
    messages, gap = log.after(5, 3)
    assert seqs(messages) == [6, 7, 8]
    assert gap is False


def test_after_skips_tombstones_without_gap() -> None:
    log = filled(10)
    log.delete(4)
    messages, gap = log.after(2, 3)
    assert seqs(messages) == [3, 5, 6]
    assert gap is False


# --- properties -----------------------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 15)),
        st.tuples(st.just("delete"), st.integers(0, 40)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(
    ops=operations,
    capacity=st.integers(1, 8),
    since=st.integers(0, 45),
    limit=st.integers(1, 10),
)
def test_any_appends_and_deletes_keep_the_log_consistent(
    ops: list[tuple[str, int]], capacity: int, since: int, limit: int
) -> None:
    log = ChatLog("r1", capacity=capacity, idempotency_capacity=1000)
    accepted: dict[str, int] = {}
    deleted: set[int] = set()
    for op, arg in ops:
        if op == "append":
            cid = f"c{arg}"
            message, new = log.append(draft(cid), ts=len(accepted))
            if cid in accepted:
                assert not new
                assert message.seq == accepted[cid]
            else:
                assert new
                assert message.seq == len(accepted) + 1
                accepted[cid] = message.seq
        elif log.delete(arg):
            assert arg not in deleted
            deleted.add(arg)

    latest = len(accepted)
    assert log.latest_seq == latest
    assert log.first_held_seq == max(1, latest - capacity + 1)
    held_visible = [s for s in range(log.first_held_seq, latest + 1) if s not in deleted]
    assert seqs(log.latest(capacity)) == held_visible

    messages, gap = log.since(since, limit)
    got = seqs(messages)
    assert got == sorted(set(got))
    assert not set(got) & deleted
    assert all(since < s <= latest for s in got)
    if since > latest:
        assert (got, gap) == ([], True)
    else:
        expected_gap = since + 1 < log.first_held_seq or latest - since > limit
        assert gap is expected_gap
        if not gap:
            assert got == [s for s in held_visible if s > since]


@settings(max_examples=200, deadline=None)
@given(
    count=st.integers(0, 30),
    capacity=st.integers(1, 10),
    seq=st.integers(0, 35),
    limit=st.integers(1, 12),
)
def test_before_and_after_agree_with_a_model(
    count: int, capacity: int, seq: int, limit: int
) -> None:
    log = filled(count, capacity=capacity)
    held = list(range(log.first_held_seq, count + 1))

    before, before_gap_flag = log.before(seq, limit)
    expected_before = [s for s in held if s < seq][-limit:]
    assert seqs(before) == expected_before
    assert before_gap_flag is (len(expected_before) < limit and log.first_held_seq > 1)

    after, after_gap_flag = log.after(seq, limit)
    assert seqs(after) == [s for s in held if s > seq][:limit]
    assert after_gap_flag is (seq + 1 < log.first_held_seq)
