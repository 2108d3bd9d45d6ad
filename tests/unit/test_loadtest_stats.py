"""Histograms and percentiles of the load tool: exact where promised, bounded error elsewhere."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadtest.stats import SUB_BUCKETS, Histogram, bucket_bounds, bucket_of, merge_all, rate


def nearest_rank(values: list[int], p: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def test_small_values_are_exact() -> None:
    for value in range(2 * SUB_BUCKETS):
        assert bucket_bounds(bucket_of(value)) == (value, value)


@given(st.integers(min_value=0, max_value=10**12))
def test_a_value_lies_in_its_bucket_and_buckets_are_narrow(value: int) -> None:
    low, high = bucket_bounds(bucket_of(value))
    assert low <= value <= high
    assert high - low <= max(0, low) / SUB_BUCKETS + 1e-9 * low


def test_buckets_are_contiguous_and_monotonic() -> None:
    previous_high = -1
    for index in range(bucket_of(10**9) + 1):
        low, high = bucket_bounds(index)
        assert low == previous_high + 1
        assert bucket_of(low) == index == bucket_of(high)
        previous_high = high


def test_percentiles_of_known_values() -> None:
    hist = Histogram.of(range(1, 101))  # 1..100 µs, all exact
    assert hist.percentile(50) == 50
    assert hist.percentile(95) == 95
    assert hist.percentile(99) == 99
    assert hist.percentile(100) == 100 == hist.max
    assert hist.percentile(0) == 1 == hist.min
    assert hist.count == 100 and hist.mean == 50.5


def test_empty_histogram_reports_zero() -> None:
    hist = Histogram()
    assert hist.percentile(99) == 0
    assert hist.summary() == {
        "count": 0, "p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "mean_ms": 0.0
    }  # fmt: skip


def test_percentile_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError):
        Histogram.of([1]).percentile(101)


@given(st.lists(st.integers(min_value=0, max_value=10**8), min_size=1, max_size=300),
       st.sampled_from([50.0, 95.0, 99.0, 100.0]))  # fmt: skip
def test_percentile_is_within_one_bucket_of_the_exact_one(values: list[int], p: float) -> None:
    hist = Histogram.of(values)
    exact = nearest_rank(values, p)
    low, high = bucket_bounds(bucket_of(exact))
    assert min(max(low, hist.min), hist.max) <= hist.percentile(p) <= min(high, hist.max)
    assert hist.max == max(values) and hist.min == min(values)


def test_negative_values_count_as_zero() -> None:
    hist = Histogram.of([-5, 3])
    assert hist.min == 0 and hist.count == 2


@given(st.lists(st.lists(st.integers(min_value=0, max_value=10**9), max_size=50), max_size=5))
def test_merging_parts_equals_the_histogram_of_all(parts: list[list[int]]) -> None:
    merged = merge_all(Histogram.of(part) for part in parts)
    whole = Histogram.of(v for part in parts for v in part)
    assert merged.buckets == whole.buckets
    assert (merged.count, merged.total, merged.min, merged.max) == (
        whole.count, whole.total, whole.min, whole.max
    )  # fmt: skip


def test_json_round_trip_keeps_every_count() -> None:
    rng = random.Random(7)
    hist = Histogram.of(int(rng.expovariate(1 / 20000)) for _ in range(5000))
    again = Histogram.from_json(hist.to_json())
    assert again.buckets == hist.buckets
    assert again.summary() == hist.summary()
    assert sum(n for _, _, n in hist.to_json()["buckets"]) == 5000


def test_json_with_inconsistent_count_is_refused() -> None:
    data = Histogram.of([1, 2, 3]).to_json()
    data["count"] = 4
    with pytest.raises(ValueError):
        Histogram.from_json(data)


def test_summary_is_in_milliseconds() -> None:
    summary = Histogram.of([1000, 2000, 3000, 250000]).summary()
    assert summary["count"] == 4
    assert summary["p50_ms"] == pytest.approx(2.0, rel=1 / SUB_BUCKETS)
    assert summary["max_ms"] == 250.0


def test_rate_of_an_empty_interval_is_zero() -> None:
    assert rate(10, 0.0) == 0.0
    assert rate(10, 2.0) == 5.0
