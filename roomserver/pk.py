"""PK battles between two rooms: the invitation, the battle and its score, as plain data.

A host invites the host of another room; when that host accepts, both rooms
hold the same battle in their control state until it ends. Each side's score is
the likes its room received since the start plus the votes for that side in the
PK poll, which is opened in both rooms with the same two options (the inviting
room first), so a member votes once, in the room they watch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: How long an invitation waits for an answer.
INVITE_TTL_MS = 30_000
#: PK battles last 30 s to 1 h.
MIN_DURATION_S = 30
MAX_DURATION_S = 3600


@dataclass(frozen=True, slots=True)
class Invite:
    """One host asking another room's host to battle."""

    id: str
    from_room: str
    from_host: str
    from_title: str
    to_room: str
    duration_s: int
    expires_at: int

    def expired(self, now_ms: int) -> bool:
        return now_ms >= self.expires_at

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from_room": self.from_room,
            "from_host": self.from_host,
            "from_title": self.from_title,
            "to_room": self.to_room,
            "duration_s": self.duration_s,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Invite:
        return cls(
            id=data["id"],
            from_room=data["from_room"],
            from_host=data["from_host"],
            from_title=data["from_title"],
            to_room=data["to_room"],
            duration_s=int(data["duration_s"]),
            expires_at=int(data["expires_at"]),
        )


@dataclass(frozen=True, slots=True)
class Battle:
    """A running battle, the same in both rooms' state."""

    id: str
    rooms: tuple[str, str]
    hosts: tuple[str, str]
    titles: tuple[str, str]
    polls: tuple[str, str]
    likes_base: tuple[int, int]
    started_at: int
    ends_at: int

    def side(self, room: str) -> int:
        """0 for the inviting room, 1 for the invited one."""
        return self.rooms.index(room)

    def other(self, room: str) -> tuple[str, str]:
        """The other room and its host: whose stream this room's viewers also watch."""
        i = 1 - self.side(room)
        return self.rooms[i], self.hosts[i]

    def poll_of(self, room: str) -> str:
        return self.polls[self.side(room)]

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rooms": list(self.rooms),
            "hosts": list(self.hosts),
            "titles": list(self.titles),
            "polls": list(self.polls),
            "likes_base": list(self.likes_base),
            "started_at": self.started_at,
            "ends_at": self.ends_at,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Battle:
        def pair(key: str) -> Any:
            a, b = data[key]
            return (a, b)

        return cls(
            id=data["id"],
            rooms=pair("rooms"),
            hosts=pair("hosts"),
            titles=pair("titles"),
            polls=pair("polls"),
            likes_base=pair("likes_base"),
            started_at=int(data["started_at"]),
            ends_at=int(data["ends_at"]),
        )


def score(
    battle: Battle, likes: tuple[int, int], votes: tuple[list[int], list[int]]
) -> dict[str, int]:
    """Each side's points: likes its room received since the start + PK-poll votes for it.

    ``likes`` are the rooms' like totals now; ``votes`` the PK poll's per-option
    counts in each room (option 0 is the inviting room).
    """
    out: dict[str, int] = {}
    for i, room in enumerate(battle.rooms):
        received = max(0, likes[i] - battle.likes_base[i])
        out[room] = received + sum(counts[i] if i < len(counts) else 0 for counts in votes)
    return out


def outcome(battle: Battle, points: dict[str, int]) -> dict[str, Any]:
    """The result both rooms get: the score and the winning room (None for a draw)."""
    a, b = battle.rooms
    winner = a if points[a] > points[b] else b if points[b] > points[a] else None
    return {"score": dict(points), "winner": winner}
