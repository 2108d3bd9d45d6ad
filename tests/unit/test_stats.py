"""Room analytics folded from counters and the room log."""

from __future__ import annotations

import csv
import io

from roomserver.stats import PresenceFold, RoomCounters, build_report, minute_of, report_csv


def test_presence_fold_is_time_weighted() -> None:
    fold = PresenceFold()
    fold.sample(1_000, 10)  # 10 members for 9 s
    fold.sample(10_000, 100)  # 100 members for 1 s
    fold.sample(11_000, 0)
    assert fold.peak == 100
    assert fold.average(11_000) == (10 * 9_000 + 100 * 1_000) / 10_000
    # The last count holds until "now".
    assert fold.average(21_000) == (10 * 9_000 + 100 * 1_000 + 0) / 20_000


def test_presence_fold_round_trips_and_handles_a_single_sample() -> None:
    fold = PresenceFold()
    assert fold.average(5) == 0.0
    fold.sample(5, 3)
    assert fold.average(5) == 3.0
    assert PresenceFold.from_wire(fold.to_wire()) == fold


def test_report_folds_sessions_streams_and_moderation() -> None:
    counters = RoomCounters(
        chat_total=3,
        chat_per_minute={minute_of(60_000): 2, minute_of(125_000): 1},
        likes=42,
        unique_members=7,
    )
    counters.presence.sample(0, 2)
    counters.presence.sample(60_000, 4)
    log = [
        {"t": "stream.started", "ts": 1_000, "user": "h"},
        {"t": "cohost.joined", "ts": 2_000, "user": "c"},
        {"t": "cohost.left", "ts": 32_000, "user": "c"},
        {"t": "cohost.joined", "ts": 40_000, "user": "d"},
        {"t": "moderation", "ts": 50_000, "action": "ban", "user": "x", "by": "h"},
        {"t": "stream.ended", "ts": 61_000, "user": "h"},
    ]
    polls = [
        {
            "id": "p1",
            "question": "Q",
            "options": [{"text": "a", "votes": 2}],
            "total": 2,
            "open": False,
        }
    ]
    report = build_report("r", "Title", 0, counters, log, polls, now=120_000, ended_at=None)
    assert report["members"] == {"peak_concurrent": 4, "average_concurrent": 3.0, "unique": 7}
    assert report["chat"]["total"] == 3
    assert report["chat"]["per_minute"] == [
        {"minute_start": 60_000, "messages": 2},
        {"minute_start": 120_000, "messages": 1},
    ]
    assert report["likes"] == 42 and report["polls"][0]["total"] == 2
    assert report["cohost_sessions"] == [
        {"user": "c", "joined_at": 2_000, "left_at": 32_000, "duration_s": 30.0},
        {"user": "d", "joined_at": 40_000, "left_at": None, "duration_s": 80.0},
    ]
    assert report["streams"] == [
        {"user": "h", "started_at": 1_000, "ended_at": 61_000, "duration_s": 60.0}
    ]
    assert report["moderation"] == [{"ts": 50_000, "action": "ban", "user": "x", "by": "h"}]
    rows = list(csv.reader(io.StringIO(report_csv(report))))
    assert rows[0] == ["section", "key", "value"]
    assert ["chat", "total", "3"] in rows
    assert ["poll", "p1:0:a", "2"] in rows
    assert ["cohost_session", "c", "30.0"] in rows
