"""Room analytics, computed from a few counters and a log of room events. No I/O.

Counters (kept by the broker): chat messages in total and per minute, likes,
distinct members, and the presence integral: each presence sample adds
``members x elapsed`` to an area, so the average number of concurrent members
is ``area / (last sample - first sample)``, weighted by time rather than by how
often the count changed. The room log holds co-host, stream, poll and
moderation events with their times; sessions and durations are folded from it
when the report is built, so nodes only ever append.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

MINUTE_MS = 60_000


@dataclass(slots=True)
class PresenceFold:
    """Running peak and time-weighted area of the member count."""

    first_ts: int | None = None
    last_ts: int = 0
    last_n: int = 0
    peak: int = 0
    area: float = 0.0

    def sample(self, ts: int, members: int) -> None:
        if self.first_ts is None:
            self.first_ts = self.last_ts = ts
        elif ts > self.last_ts:
            self.area += self.last_n * (ts - self.last_ts)
            self.last_ts = ts
        self.last_n = members
        self.peak = max(self.peak, members)

    def average(self, now: int) -> float:
        """Time-weighted mean up to ``now`` (the last count holds until then)."""
        if self.first_ts is None:
            return 0.0
        end = max(now, self.last_ts)
        span = end - self.first_ts
        if span <= 0:
            return float(self.last_n)
        return (self.area + self.last_n * (end - self.last_ts)) / span

    def to_wire(self) -> dict[str, Any]:
        """The fields as the Redis hash holds them (no ``first_ts`` before a sample)."""
        out: dict[str, Any] = {} if self.first_ts is None else {"first_ts": self.first_ts}
        return out | {
            "last_ts": self.last_ts,
            "last_n": self.last_n,
            "peak": self.peak,
            "area": self.area,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> PresenceFold:
        first = data.get("first_ts")
        return cls(
            first_ts=None if first is None else int(first),
            last_ts=int(data.get("last_ts", 0)),
            last_n=int(data.get("last_n", 0)),
            peak=int(data.get("peak", 0)),
            area=float(data.get("area", 0.0)),
        )


@dataclass(slots=True)
class RoomCounters:
    """What the broker counts for a room's analytics."""

    chat_total: int = 0
    chat_per_minute: dict[int, int] = field(default_factory=dict)
    likes: int = 0
    unique_members: int = 0
    presence: PresenceFold = field(default_factory=PresenceFold)


def minute_of(ts_ms: int) -> int:
    """The minute bucket (minutes since the epoch) of a timestamp."""
    return ts_ms // MINUTE_MS


def build_report(
    room: str,
    title: str,
    created_at: int,
    counters: RoomCounters,
    log: list[dict[str, Any]],
    polls: list[dict[str, Any]],
    now: int,
    ended_at: int | None = None,
) -> dict[str, Any]:
    """The stats document of ``GET /api/rooms/{id}/stats``."""
    end = ended_at or now
    cohost_sessions: list[dict[str, Any]] = []
    open_cohosts: dict[str, int] = {}
    streams: list[dict[str, Any]] = []
    open_stream: dict[str, Any] | None = None
    moderation: list[dict[str, Any]] = []
    for entry in sorted(log, key=lambda e: e["ts"]):
        kind = entry["t"]
        if kind == "cohost.joined":
            open_cohosts.setdefault(entry["user"], entry["ts"])
        elif kind == "cohost.left" and entry["user"] in open_cohosts:
            start = open_cohosts.pop(entry["user"])
            cohost_sessions.append(_session(entry["user"], start, entry["ts"]))
        elif kind == "stream.started" and open_stream is None:
            open_stream = {"user": entry["user"], "started_at": entry["ts"]}
        elif kind == "stream.ended" and open_stream is not None:
            open_stream["ended_at"] = entry["ts"]
            open_stream["duration_s"] = (entry["ts"] - open_stream["started_at"]) / 1000
            streams.append(open_stream)
            open_stream = None
        elif kind == "moderation":
            moderation.append({k: v for k, v in entry.items() if k != "t"})
    for user, start in open_cohosts.items():
        cohost_sessions.append(_session(user, start, None, end))
    if open_stream is not None:
        open_stream["ended_at"] = None
        open_stream["duration_s"] = (end - open_stream["started_at"]) / 1000
        streams.append(open_stream)
    per_minute = [
        {"minute_start": minute * MINUTE_MS, "messages": count}
        for minute, count in sorted(counters.chat_per_minute.items())
    ]
    return {
        "room": room,
        "title": title,
        "created_at": created_at,
        "ended_at": ended_at,
        "members": {
            "peak_concurrent": counters.presence.peak,
            "average_concurrent": round(counters.presence.average(end), 3),
            "unique": counters.unique_members,
        },
        "chat": {"total": counters.chat_total, "per_minute": per_minute},
        "likes": counters.likes,
        "polls": [
            {
                "id": p["id"],
                "question": p["question"],
                "options": p["options"],
                "total": p["total"],
                "open": p["open"],
            }
            for p in polls
        ],
        "cohost_sessions": cohost_sessions,
        "streams": streams,
        "moderation": moderation,
    }


def _session(user: str, start: int, stop: int | None, now: int | None = None) -> dict[str, Any]:
    end = stop if stop is not None else now
    assert end is not None
    return {"user": user, "joined_at": start, "left_at": stop, "duration_s": (end - start) / 1000}


def report_csv(report: dict[str, Any]) -> str:
    """A flat ``section,key,value`` CSV of a report, for spreadsheets."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["section", "key", "value"])
    writer.writerow(["room", "id", report["room"]])
    writer.writerow(["room", "title", report["title"]])
    writer.writerow(["room", "created_at", report["created_at"]])
    writer.writerow(["room", "ended_at", report["ended_at"] or ""])
    for key, value in report["members"].items():
        writer.writerow(["members", key, value])
    writer.writerow(["chat", "total", report["chat"]["total"]])
    for bucket in report["chat"]["per_minute"]:
        writer.writerow(["chat_per_minute", bucket["minute_start"], bucket["messages"]])
    writer.writerow(["likes", "total", report["likes"]])
    for poll in report["polls"]:
        for index, option in enumerate(poll["options"]):
            writer.writerow(["poll", f"{poll['id']}:{index}:{option['text']}", option["votes"]])
    for session in report["cohost_sessions"]:
        writer.writerow(["cohost_session", session["user"], session["duration_s"]])
    for stream in report["streams"]:
        writer.writerow(["stream", stream["started_at"], stream["duration_s"]])
    for action in report["moderation"]:
        writer.writerow(["moderation", action.get("action", ""), action.get("user", "")])
    return out.getvalue()
