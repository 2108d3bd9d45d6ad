"""Token buckets, keyed buckets, the strike counter and the word filter."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomserver.limits import KeyedBuckets, StrikeCounter, TokenBucket, WordFilter

# --- TokenBucket ----------------------------------------------------------------------


def test_bucket_starts_full_and_allows_a_burst() -> None:
    bucket = TokenBucket(rate=5, burst=10, now=100.0)
    assert [bucket.take(100.0) for _ in range(10)] == [0.0] * 10
    assert bucket.take(100.0) == pytest.approx(0.2)


def test_refused_take_removes_nothing() -> None:
    bucket = TokenBucket(rate=2, burst=2, now=0.0)
    assert bucket.take(0.0, 2) == 0.0
    assert bucket.take(0.25) == pytest.approx(0.25)  # 0.5 tokens there, 0.5 missing
    assert bucket.take(0.25) == pytest.approx(0.25)  # still the same: nothing was taken
    assert bucket.take(0.5) == 0.0


def test_refill_math() -> None:
    bucket = TokenBucket(rate=4, burst=8, now=10.0)
    assert bucket.take(10.0, 8) == 0.0
    assert bucket.take(10.5, 3) == pytest.approx(0.25)  # 2 tokens, 1 missing at 4/s
    assert bucket.take(10.5, 2) == 0.0
    assert bucket.take(11.25, 3) == 0.0  # 0.75 s * 4/s = 3 tokens
    assert bucket.take(11.25) == pytest.approx(0.25)


def test_refill_is_capped_at_burst() -> None:
    bucket = TokenBucket(rate=5, burst=10, now=0.0)
    assert bucket.take(1_000.0, 10) == 0.0
    assert bucket.take(1_000.0) == pytest.approx(0.2)


def test_retry_after_the_returned_delay_succeeds() -> None:
    bucket = TokenBucket(rate=5, burst=10, now=0.0)
    assert bucket.take(0.0, 10) == 0.0
    delay = bucket.take(0.0, 3)
    assert delay == pytest.approx(0.6)
    assert bucket.take(0.0 + delay, 3) == 0.0


def test_float_refill_rounding_does_not_refuse_a_due_token() -> None:
    bucket = TokenBucket(rate=10, burst=1, now=0.0)
    now = 0.0
    for _ in range(50):
        assert bucket.take(now) == 0.0
        now += 0.1


def test_impossible_takes_wait_forever() -> None:
    assert TokenBucket(rate=5, burst=10, now=0.0).take(0.0, 11) == math.inf
    empty_forever = TokenBucket(rate=0, burst=1, now=0.0)
    assert empty_forever.take(0.0) == 0.0
    assert empty_forever.take(1e9) == math.inf


def test_clock_going_backwards_refills_nothing() -> None:
    bucket = TokenBucket(rate=1, burst=1, now=10.0)
    assert bucket.take(10.0) == 0.0
    assert bucket.take(5.0) == pytest.approx(1.0)
    assert bucket.take(11.0) == 0.0


def test_full_at_and_is_full() -> None:
    bucket = TokenBucket(rate=2, burst=4, now=0.0)
    assert bucket.is_full(0.0)
    bucket.take(0.0, 3)
    assert bucket.full_at() == pytest.approx(1.5)
    assert not bucket.is_full(1.4)
    assert bucket.is_full(1.5)


@pytest.mark.parametrize(("rate", "burst"), [(-1, 1), (1, 0), (1, -2)])
def test_bucket_refuses_bad_parameters(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=rate, burst=burst, now=0.0)


def test_bucket_refuses_negative_take() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=1, burst=1, now=0.0).take(0.0, -1)


@given(
    steps=st.lists(
        st.tuples(st.floats(0, 2, allow_nan=False), st.floats(0.1, 3, allow_nan=False)),
        max_size=40,
    )
)
def test_bucket_never_grants_more_than_rate_allows(steps: list[tuple[float, float]]) -> None:
    rate, burst = 3.0, 5.0
    bucket = TokenBucket(rate, burst, now=0.0)
    now = 0.0
    granted = 0.0
    for dt, n in steps:
        now += dt
        delay = bucket.take(now, n)
        if delay == 0.0:
            granted += n
        else:
            assert delay > 0
        assert 0.0 <= bucket.tokens <= burst
    assert granted <= burst + rate * now + 1e-6


# --- KeyedBuckets ---------------------------------------------------------------------


def test_keyed_buckets_are_independent() -> None:
    buckets = KeyedBuckets(rate=1, burst=2)
    assert buckets.take("a", 0.0) == 0.0
    assert buckets.take("a", 0.0) == 0.0
    assert buckets.take("a", 0.0) == pytest.approx(1.0)
    assert buckets.take("b", 0.0) == 0.0
    assert len(buckets) == 2


def test_keyed_buckets_below_max_keys_evict_nothing() -> None:
    buckets = KeyedBuckets(rate=1, burst=1, max_keys=3)
    for key in "abc":
        buckets.take(key, 100.0)
    assert len(buckets) == 3


def test_keyed_buckets_evict_full_buckets_first() -> None:
    buckets = KeyedBuckets(rate=1, burst=2, max_keys=3)
    buckets.take("old-busy", 0.0, 2)  # drained at t=0, full at t=2
    buckets.take("full", 0.5)  # 1 token left at 0.5, full at 1.5
    buckets.take("new-busy", 1.0, 2)  # full at 3
    # at t=1.6 "old-busy" is the oldest but not full; "full" is full again
    buckets.take("d", 1.6)
    assert len(buckets) == 3
    assert "full" not in buckets
    assert "old-busy" in buckets
    # the surviving drained bucket kept its state: it was not reset
    assert buckets.take("new-busy", 1.6, 2) == pytest.approx(1.4)


def test_keyed_buckets_evict_idle_buckets_oldest_first() -> None:
    buckets = KeyedBuckets(rate=1, burst=1, max_keys=2)
    buckets.take("a", 0.0)
    buckets.take("b", 0.5)
    buckets.take("c", 10.0)
    assert "a" not in buckets
    assert "c" in buckets
    assert len(buckets) <= 2


def test_keyed_buckets_evict_non_full_only_when_no_full_one_can_go() -> None:
    buckets = KeyedBuckets(rate=1, burst=1, max_keys=2)
    buckets.take("a", 0.0)
    buckets.take("b", 0.0)
    buckets.take("c", 0.0)  # nobody is full again: the oldest goes
    assert len(buckets) <= 2
    assert "a" not in buckets
    assert "c" in buckets
    assert buckets.take("c", 0.0) == pytest.approx(1.0)  # the new key's bucket was kept


def test_keyed_buckets_touch_refreshes_recency() -> None:
    buckets = KeyedBuckets(rate=1, burst=1, max_keys=2)
    buckets.take("a", 0.0)
    buckets.take("b", 0.0)
    buckets.take("a", 0.0)  # "a" is now most recent (and still empty)
    buckets.take("c", 0.0)
    assert "b" not in buckets
    assert buckets.take("a", 0.0) == pytest.approx(1.0)


@given(keys=st.lists(st.integers(0, 50), max_size=200))
def test_keyed_buckets_memory_is_bounded(keys: list[int]) -> None:
    buckets = KeyedBuckets(rate=1, burst=3, max_keys=10)
    for i, key in enumerate(keys):
        buckets.take(str(key), i * 0.01)
        assert len(buckets) <= 10
        assert str(key) in buckets


def test_keyed_buckets_forget() -> None:
    buckets = KeyedBuckets(rate=1, burst=1)
    buckets.take("a", 0.0)
    buckets.forget("a")
    buckets.forget("never-seen")
    assert buckets.take("a", 0.0) == 0.0


def test_keyed_buckets_refuse_bad_parameters() -> None:
    with pytest.raises(ValueError):
        KeyedBuckets(rate=1, burst=1, max_keys=0)
    with pytest.raises(ValueError):
        KeyedBuckets(rate=1, burst=0)


# --- StrikeCounter --------------------------------------------------------------------


def test_fifth_strike_within_a_minute_trips() -> None:
    counter = StrikeCounter()
    assert [counter.strike("u1", float(t)) for t in range(5)] == [False] * 4 + [True]


def test_trip_clears_the_key() -> None:
    counter = StrikeCounter(limit=3, window_s=60)
    assert [counter.strike("u1", t) for t in (0.0, 1.0, 2.0)] == [False, False, True]
    assert "u1" not in counter
    assert [counter.strike("u1", t) for t in (3.0, 4.0, 5.0)] == [False, False, True]


def test_strikes_outside_the_window_do_not_count() -> None:
    counter = StrikeCounter(limit=3, window_s=60)
    assert counter.strike("u1", 0.0) is False
    assert counter.strike("u1", 30.0) is False
    assert counter.strike("u1", 60.0) is False  # the strike at 0 is exactly a window old
    assert counter.strike("u1", 61.0) is True  # 30, 60, 61


def test_strikes_are_per_key() -> None:
    counter = StrikeCounter(limit=2, window_s=10)
    assert counter.strike("a", 0.0) is False
    assert counter.strike("b", 0.0) is False
    assert counter.strike("a", 1.0) is True
    assert counter.strike("b", 20.0) is False


def test_limit_one_trips_every_strike() -> None:
    counter = StrikeCounter(limit=1)
    assert counter.strike("a", 0.0) is True
    assert counter.strike("a", 0.0) is True


def test_forget_resets_a_key() -> None:
    counter = StrikeCounter(limit=2)
    counter.strike("u1", 0.0)
    counter.forget("u1")
    counter.forget("unknown")
    assert counter.strike("u1", 1.0) is False


def test_expired_keys_are_dropped() -> None:
    counter = StrikeCounter(limit=5, window_s=60)
    for i in range(100):
        counter.strike(f"user{i}", 0.0)
    assert len(counter) == 100
    counter.strike("late", 61.0)
    assert len(counter) == 1


def test_strike_counter_refuses_bad_parameters() -> None:
    with pytest.raises(ValueError):
        StrikeCounter(limit=0)
    with pytest.raises(ValueError):
        StrikeCounter(window_s=0)


# --- WordFilter -----------------------------------------------------------------------


def test_empty_filter_blocks_nothing() -> None:
    assert WordFilter([]).blocks("anything at all") is False
    assert WordFilter(["", "   ", "\t"]).blocks("anything at all") is False
    assert WordFilter([""]).blocks("") is False


def test_blocks_whole_words() -> None:
    words = WordFilter(["bad"])
    assert words.blocks("bad")
    assert words.blocks("this is bad!")
    assert words.blocks("bad, really")
    assert words.blocks("(bad)")
    assert not words.blocks("badge")
    assert not words.blocks("a bad_idea")
    assert not words.blocks("goodbad2")


def test_word_boundaries_protect_longer_words() -> None:
    words = WordFilter(["ass"])
    assert not words.blocks("first class passage")
    assert not words.blocks("assessment")
    assert words.blocks("you ass")


def test_casefold() -> None:
    words = WordFilter(["Bad"])
    assert words.blocks("BAD")
    assert words.blocks("bAd")
    assert WordFilter(["strasse"]).blocks("STRAẞE and Straße")


def test_nfkc_full_width() -> None:
    words = WordFilter(["bad"])
    assert words.blocks("\uff22\uff21\uff24")  # full-width BAD
    assert words.blocks("so \uff42\uff41\uff44!")
    assert WordFilter(["\uff22\uff21\uff24"]).blocks("bad")


def test_cjk_words_match_as_substrings() -> None:
    words = WordFilter(["垃圾"])
    assert words.blocks("这是垃圾产品")
    assert words.blocks("垃圾")
    assert not words.blocks("这是好产品")


def test_kana_and_hangul_match_as_substrings() -> None:
    assert WordFilter(["ばか"]).blocks("おまえはばかだ")
    assert WordFilter(["ﾊﾞｶ"]).blocks("バカだ")  # half-width katakana, NFKC
    assert WordFilter(["바보"]).blocks("바보야")
    assert WordFilter(["ควาย"]).blocks("เธอเป็นควายจริงๆ")


def test_latin_word_next_to_cjk_text_is_still_a_word() -> None:
    words = WordFilter(["bad"])
    assert words.blocks("这个bad东西")
    assert not words.blocks("这个badge")


def test_several_words_in_one_filter() -> None:
    words = WordFilter(["bad", "worse", "垃圾", "very bad"])
    assert words.blocks("worse")
    assert words.blocks("ok 垃圾")
    assert words.blocks("very   bad")
    assert not words.blocks("good, better, best")
    assert words.words[0] == "very bad"  # longest first


def test_multi_word_phrases_match_any_whitespace() -> None:
    words = WordFilter(["buy  now"])
    assert words.blocks("BUY NOW!!")
    assert words.blocks("buy\nnow")
    assert not words.blocks("buy nowhere")


def test_regex_metacharacters_are_literal() -> None:
    words = WordFilter(["a.b", "c++"])
    assert words.blocks("see a.b here")
    assert not words.blocks("see axb here")
    assert words.blocks("i like c++")
    assert not words.blocks("i like c")


def test_words_are_stripped_and_deduplicated() -> None:
    words = WordFilter(["  bad  ", "BAD", "\uff42\uff41\uff44"])
    assert words.words == ("bad",)
    assert words.blocks("bad")
