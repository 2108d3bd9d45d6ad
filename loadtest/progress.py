"""The live status line, one per second on stderr: pure formatting of the aggregate.

It shows what a person watching a run needs to stop a bad one early: elapsed time,
members joined, requests accepted of sent, deliveries and their rate, the latest
second's latency percentiles, and every error and close so far (never hidden).
"""

from __future__ import annotations

import time

from loadtest.aggregate import Aggregate, ordered_kinds

_REQUESTS = ("chat", "vote", "like")


def status_line(scenario: str, agg: Aggregate, t0_ns: int, now_ns: int | None = None) -> str:
    now_ns = time.time_ns() if now_ns is None else now_ns
    elapsed = (now_ns - t0_ns) / 1e9
    counters = agg.counter_sum()
    errors = agg.error_sum()
    parts = [f"[{scenario} {elapsed:6.1f}s]", f"joined {counters.get('joined', 0)}"]
    for kind in _REQUESTS:
        sent = counters.get(f"{kind}_sent", 0)
        if sent:
            parts.append(f"{kind} {counters.get(f'{kind}_accepted', 0)}/{sent}")
    if counters.get("deliveries"):
        parts.append(f"deliveries {counters['deliveries']}")
    second = int(elapsed)
    for kind in ordered_kinds(list(agg.windows)):
        hist = agg.last_window(kind, second)
        if hist is not None and hist.count:
            s = hist.summary()
            parts.append(f"{kind} {hist.count}/s p50 {s['p50_ms']:g} p99 {s['p99_ms']:g}ms")
    n_errors = sum(errors.values())
    parts.append(f"errors {n_errors}")
    if errors:
        top = sorted(errors.items(), key=lambda kv: -kv[1])[:3]
        parts.append("(" + ", ".join(f"{k} {v}" for k, v in top) + ")")
    return " ".join(parts)
