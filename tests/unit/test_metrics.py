"""Prometheus text: counters and gauges read at scrape time."""

from __future__ import annotations

from roomserver.metrics import Metrics


def test_values_read_at_scrape_time_render_as_gauge_or_counter() -> None:
    metrics = Metrics()
    held = [3.0]
    metrics.gauge("things_held", "things held now", lambda: held[0])
    metrics.counter("things_sent_total", "things sent", lambda: 12.0)
    text = metrics.render()
    assert "# TYPE things_held gauge\nthings_held 3\n" in text
    assert "# TYPE things_sent_total counter\nthings_sent_total 12\n" in text
    held[0] = 1.5
    assert "things_held 1.5" in metrics.render()


def test_media_counters_share_one_stats_reading_per_scrape() -> None:
    from roomserver.app import StatsSnapshot

    calls = [0]

    def stats() -> dict[str, int]:
        calls[0] += 1
        return {"a": 10 * calls[0], "b": 2}

    metrics = Metrics()
    snapshot = StatsSnapshot(stats, max_age_s=60)
    metrics.counter("a_total", "a", lambda: snapshot.read("a"))
    metrics.counter("b_total", "b", lambda: snapshot.read("b"))
    text = metrics.render()
    assert "a_total 10" in text and "b_total 2" in text and calls == [1]
    fresh = StatsSnapshot(stats, max_age_s=0)
    assert fresh.read("a") == 20 and fresh.read("a") == 30  # older than max_age: read again
