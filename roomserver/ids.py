"""Typed identifiers and the immutable records that travel between layers.

Ids are plain strings at run time; the NewTypes keep a room id from being
passed where a user id belongs. Records are frozen so that a message handed to
the broker, the history and every member's connection is the same object.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NewType

RoomId = NewType("RoomId", str)
UserId = NewType("UserId", str)
PollId = NewType("PollId", str)


class Role(StrEnum):
    """A token role. Co-host is a state inside a room, not a role."""

    HOST = "host"
    MODERATOR = "moderator"
    MEMBER = "member"

    @property
    def is_staff(self) -> bool:
        """Hosts and moderators: exempt from rate limits and the word filter."""
        return self is not Role.MEMBER


#: The chat role of messages posted by the operator through the HTTP API.
SYSTEM_ROLE = "system"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a connection is inside one room, as proven by its token."""

    user: UserId
    name: str
    role: Role

    def to_wire(self) -> dict[str, Any]:
        return {"user": self.user, "name": self.name, "role": self.role.value}


@dataclass(frozen=True, slots=True)
class ChatDraft:
    """A chat message accepted by the room rules but not yet sequenced."""

    user: str
    name: str
    role: str
    text: str
    cid: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """A sequenced chat message; ``to_event`` is exactly the wire ``chat`` event."""

    room: str
    seq: int
    ts: int
    user: str
    name: str
    role: str
    text: str
    cid: str

    def to_event(self) -> dict[str, Any]:
        return {
            "t": "chat",
            "room": self.room,
            "seq": self.seq,
            "ts": self.ts,
            "user": self.user,
            "name": self.name,
            "role": self.role,
            "text": self.text,
            "cid": self.cid,
        }

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> ChatMessage:
        return cls(
            room=event["room"],
            seq=event["seq"],
            ts=event["ts"],
            user=event["user"],
            name=event["name"],
            role=event["role"],
            text=event["text"],
            cid=event["cid"],
        )
