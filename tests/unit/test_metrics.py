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
