"""Events on their way to members: the wire event plus who may receive it.

An :class:`Envelope` is what the broker carries between nodes and what the hub
fans out. The event dict is exactly what goes on the wire; the audience is
routing data that never reaches a client. Envelopes are immutable so one
object can be encoded once and shared by every recipient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from roomserver.ids import Identity, Role

#: Carries a room's shared control state between nodes; never sent to clients.
STATE_EVENT = "_state"
STAFF_ROLES = frozenset({Role.HOST.value, Role.MODERATOR.value})
HOST_ROLES = frozenset({Role.HOST.value})


@dataclass(frozen=True, slots=True)
class Envelope:
    """One event for one room. No audience fields set means every member."""

    event: dict[str, Any]
    users: frozenset[str] | None = None
    roles: frozenset[str] | None = None
    #: the hub's encodings of ``event`` by codec name: (payload, whole frame); filled
    #: on first use, so every recipient of this envelope shares the same bytes
    encoded: dict[str, tuple[bytes, bytes]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    @property
    def type(self) -> str:
        t: str = self.event["t"]
        return t

    @property
    def broadcast(self) -> bool:
        return self.users is None and self.roles is None

    def reaches(self, who: Identity) -> bool:
        """Whether a connection joined as ``who`` receives this event."""
        if self.broadcast:
            return True
        if self.users is not None and who.user in self.users:
            return True
        return self.roles is not None and who.role.value in self.roles

    def to_wire(self) -> dict[str, Any]:
        """A plain mapping for the bus between nodes."""
        out: dict[str, Any] = {"e": self.event}
        if self.users is not None:
            out["u"] = sorted(self.users)
        if self.roles is not None:
            out["r"] = sorted(self.roles)
        return out

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Envelope:
        users = data.get("u")
        roles = data.get("r")
        return cls(
            event=data["e"],
            users=frozenset(users) if users is not None else None,
            roles=frozenset(roles) if roles is not None else None,
        )


def to_all(event: dict[str, Any]) -> Envelope:
    return Envelope(event)


def to_users(event: dict[str, Any], *users: str) -> Envelope:
    return Envelope(event, users=frozenset(users))


def to_roles(event: dict[str, Any], roles: frozenset[str]) -> Envelope:
    return Envelope(event, roles=roles)
