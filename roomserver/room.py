"""Control state of one room and every rule that changes it. No I/O.

The rules, in one place:

* Permissions follow the contract's role table (:data:`PERMISSIONS`); actions
  not listed there are open to every joined member.
* Moderation goes down the ranks only: a host may moderate moderators and
  members, a moderator only members, nobody themselves.
* A banned user cannot join; a ban also removes the user's connections. A kick
  removes them but they may join again.
* A muted user cannot chat until the mute's ``until``; nothing else is barred.
* Link-mic: any member may raise a hand; the host invites a present user; the
  invited user accepts (becoming a co-host) or declines. At most
  ``max_cohosts`` co-hosts at once: an invite or accept beyond that is
  ``cohost_full``. A co-host leaves the stage when the host ends it, when it
  ends itself, or when its last connection leaves the room.
* ``rtc.publish`` is for hosts and for accepted co-hosts.

Every transition returns the envelopes to publish; the caller publishes them
and nothing else, so the same rules serve one node or many.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from roomserver.errors import (
    Banned,
    CohostFull,
    Forbidden,
    Muted,
    NotFound,
    NotInvited,
    PkBusy,
)
from roomserver.events import HOST_ROLES, STAFF_ROLES, Envelope, to_all, to_roles, to_users
from roomserver.ids import Identity, Role
from roomserver.pk import Battle, Invite

_STAFF = frozenset({Role.HOST, Role.MODERATOR})
_HOST = frozenset({Role.HOST})

#: Request types not open to every member, and the roles that may send them.
PERMISSIONS: dict[str, frozenset[Role]] = {
    "poll.create": _STAFF,
    "poll.close": _STAFF,
    "product.pin": _STAFF,
    "product.unpin": _STAFF,
    "mod.mute": _STAFF,
    "mod.kick": _STAFF,
    "mod.ban": _STAFF,
    "mod.delete": _STAFF,
    "cohost.invite": _HOST,
    "room.end": _HOST,
    "draw.start": _STAFF,
    "rec.start": _HOST,
    "rec.stop": _HOST,
    "rec.auto": _HOST,
    "pk.invite": _HOST,
    "pk.accept": _HOST,
    "pk.decline": _HOST,
    "pk.end": _HOST,
}

_RANK = {Role.MEMBER: 0, Role.MODERATOR: 1, Role.HOST: 2}


def authorize(action: str, who: Identity) -> None:
    """Raise ``Forbidden`` unless ``who``'s role may send ``action``."""
    allowed = PERMISSIONS.get(action)
    if allowed is not None and who.role not in allowed:
        raise Forbidden(f"{action} is not allowed for role {who.role.value}")


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """What the operator said about a room when creating it."""

    id: str
    title: str
    welcome: str | None = None
    created_at: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "welcome": self.welcome}


@dataclass(slots=True)
class RoomState:
    """The co-host, moderation and stage state of one room."""

    info: RoomInfo
    max_cohosts: int = 3
    host: str | None = None
    live: bool = False
    cohosts: list[str] = field(default_factory=list)
    invited: dict[str, str] = field(default_factory=dict)
    hands: dict[str, str] = field(default_factory=dict)
    publishers: list[str] = field(default_factory=list)
    pinned: dict[str, Any] | None = None
    announcement: dict[str, Any] | None = None
    draws: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_draw: dict[str, Any] | None = None
    mutes: dict[str, int] = field(default_factory=dict)
    bans: set[str] = field(default_factory=set)
    known: dict[str, Identity] = field(default_factory=dict)
    present: dict[str, int] = field(default_factory=dict)
    recording: bool = False
    record_when_live: bool = False
    pk: dict[str, Any] | None = None
    pk_invite: dict[str, Any] | None = None
    pk_outgoing: dict[str, Any] | None = None
    last_pk: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return self.info.id

    # -- membership ---------------------------------------------------------------

    def admit(self, who: Identity) -> bool:
        """Count one more connection of ``who``; True when it is the user's first."""
        if who.user in self.bans:
            raise Banned("you are banned from this room")
        self.known[who.user] = who
        if who.role is Role.HOST:
            self.host = who.user
        count = self.present.get(who.user, 0)
        self.present[who.user] = count + 1
        return count == 0

    def release(self, user: str) -> tuple[bool, list[Envelope]]:
        """Count one connection of ``user`` gone; on the last one, clear its stage state."""
        last = self.release_connection(user)
        return last, self.leave_stage(user) if last else []

    def release_connection(self, user: str) -> bool:
        """Count one connection of ``user`` gone; True when it was the user's last."""
        count = self.present.get(user, 0)
        if count > 1:
            self.present[user] = count - 1
            return False
        self.present.pop(user, None)
        return count == 1

    def on_stage(self, user: str) -> bool:
        """Whether ``user`` holds any stage state that leaving must clear."""
        return (
            user in self.hands
            or user in self.invited
            or user in self.cohosts
            or user in self.publishers
        )

    def leave_stage(self, user: str) -> list[Envelope]:
        """Clear ``user``'s raised hand, invitation, co-hosting and publishing."""
        self.hands.pop(user, None)
        self.invited.pop(user, None)
        if user in self.cohosts:
            return self._drop_cohost(user)
        if user in self.publishers:
            return self.unpublish(user)
        return []

    def set_host(self, user: str) -> list[Envelope]:
        self.host = user
        return []

    def is_present(self, user: str) -> bool:
        return user in self.present

    @property
    def member_count(self) -> int:
        return len(self.present)

    # -- chat and moderation ------------------------------------------------------

    def check_can_chat(self, who: Identity, now_ms: int) -> None:
        until = self.mutes.get(who.user)
        if until is None:
            return
        if until > now_ms:
            raise Muted(until)
        del self.mutes[who.user]

    def _target(self, actor: Identity, user: str) -> Identity:
        target = self.known.get(user)
        if target is None:
            raise NotFound(f"user {user!r} has not joined this room")
        if user == actor.user or _RANK[target.role] >= _RANK[actor.role]:
            raise Forbidden("you may only moderate users of a lower role")
        return target

    def _target_or_known(self, actor: Identity | None, user: str) -> None:
        if actor is not None:
            self._target(actor, user)
        elif user not in self.known:
            raise NotFound(f"user {user!r} has not joined this room")

    def mute(self, actor: Identity | None, user: str, seconds: int, now_ms: int) -> list[Envelope]:
        """Mute ``user``; ``actor`` None is the automatic moderator."""
        if actor is not None:
            self._target(actor, user)
        until = now_ms + seconds * 1000
        self.mutes[user] = until
        return [to_users({"t": "muted", "room": self.id, "until": until}, user)]

    def kick(self, actor: Identity | None, user: str) -> list[Envelope]:
        """Remove ``user``'s connections; ``actor`` None is the operator (HTTP API)."""
        self._target_or_known(actor, user)
        return [to_users({"t": "kicked", "room": self.id, "reason": "kick"}, user)]

    def ban(self, actor: Identity | None, user: str) -> list[Envelope]:
        self._target_or_known(actor, user)
        self.bans.add(user)
        return [to_users({"t": "kicked", "room": self.id, "reason": "ban"}, user)]

    # -- link-mic -----------------------------------------------------------------

    def request_cohost(self, who: Identity) -> list[Envelope]:
        if who.user in self.cohosts or who.user in self.hands:
            return []
        self.hands[who.user] = who.name
        event = {"t": "cohost.requested", "room": self.id, "user": who.user, "name": who.name}
        return [to_roles(event, STAFF_ROLES)]

    def invite(self, actor: Identity, user: str, present: bool | None = None) -> list[Envelope]:
        """Invite ``user``; ``present`` overrides the local presence check (other nodes)."""
        if not (self.is_present(user) if present is None else present):
            raise NotFound(f"user {user!r} is not in the room")
        if user in self.cohosts:
            return []
        if len(self.cohosts) >= self.max_cohosts:
            raise CohostFull(f"the stage already has {self.max_cohosts} co-hosts")
        self.invited[user] = actor.user
        self.hands.pop(user, None)
        return [to_users({"t": "cohost.invited", "room": self.id, "by": actor.user}, user)]

    def accept(self, who: Identity) -> list[Envelope]:
        if who.user not in self.invited:
            raise NotInvited("there is no invitation for you")
        if len(self.cohosts) >= self.max_cohosts:
            del self.invited[who.user]
            raise CohostFull(f"the stage already has {self.max_cohosts} co-hosts")
        del self.invited[who.user]
        self.cohosts.append(who.user)
        return [to_all({"t": "cohost.joined", "room": self.id, "user": who.user})]

    def decline(self, who: Identity) -> list[Envelope]:
        if self.invited.pop(who.user, None) is None:
            raise NotInvited("there is no invitation for you")
        event = {"t": "cohost.declined", "room": self.id, "user": who.user}
        return [to_roles(event, HOST_ROLES)]

    def end_cohost(self, actor: Identity, user: str) -> list[Envelope]:
        if actor.role is not Role.HOST and actor.user != user:
            raise Forbidden("only the host may end another user's co-hosting")
        if user not in self.cohosts:
            raise NotFound(f"user {user!r} is not a co-host")
        return self._drop_cohost(user)

    def _drop_cohost(self, user: str) -> list[Envelope]:
        self.cohosts.remove(user)
        out = [to_all({"t": "cohost.left", "room": self.id, "user": user})]
        if user in self.publishers:
            out += self.unpublish(user)
        return out

    def may_publish(self, who: Identity) -> bool:
        return who.role is Role.HOST or who.user in self.cohosts

    # -- stage ----------------------------------------------------------------------

    def publish(self, who: Identity) -> list[Envelope]:
        """Record ``who`` as publishing; the media layer calls this once tracks flow."""
        if not self.may_publish(who):
            raise Forbidden("only the host and accepted co-hosts may publish")
        if who.user in self.publishers:
            return []
        self.publishers.append(who.user)
        out = [self._tracks()]
        if who.role is Role.HOST and not self.live:
            self.live = True
            out.append(to_all({"t": "stream.started", "room": self.id, "user": who.user}))
            if self.record_when_live:
                out += self.set_recording(True)
        return out

    def unpublish(self, user: str) -> list[Envelope]:
        if user not in self.publishers:
            return []
        self.publishers.remove(user)
        out = [self._tracks()]
        who = self.known.get(user)
        hosts_publishing = any(
            self.known[p].role is Role.HOST for p in self.publishers if p in self.known
        )
        if who is not None and who.role is Role.HOST and self.live and not hosts_publishing:
            self.live = False
            out.append(to_all({"t": "stream.ended", "room": self.id, "user": user}))
            if self.record_when_live:
                out += self.set_recording(False)
        return out

    def _tracks(self) -> Envelope:
        return to_all({"t": "tracks", "room": self.id, "publishers": list(self.publishers)})

    def announce(self, message: dict[str, Any] | None) -> list[Envelope]:
        """Pin an operator's chat message above the chat (None unpins it)."""
        self.announcement = message
        return [to_all({"t": "announcement", "room": self.id, "message": message})]

    def open_draw(self, draw: dict[str, Any]) -> list[Envelope]:
        """A draw is running: every node learns its eligibility rule from this state."""
        self.draws[draw["id"]] = draw
        return [to_all({"t": "draw.started", "room": self.id, "draw": draw})]

    def finish_draw(self, result: dict[str, Any]) -> list[Envelope]:
        self.draws.pop(result["id"], None)
        self.last_draw = result
        return [to_all({"t": "draw.result", "room": self.id, "draw": result})]

    def pin(self, product: dict[str, Any] | None) -> list[Envelope]:
        self.pinned = product
        return [to_all({"t": "product.pinned", "room": self.id, "product": product})]

    def set_recording(self, on: bool) -> list[Envelope]:
        """Switch recording on or off; ``rec.started`` / ``rec.stopped`` when it changes."""
        if self.recording == on:
            return []
        self.recording = on
        return [to_all({"t": "rec.started" if on else "rec.stopped", "room": self.id})]

    def set_record_when_live(self, on: bool) -> list[Envelope]:
        """The room setting: record from each stream start to its end.

        Turning it on while live starts recording now; turning it off leaves a
        running recording alone (the host stops it with ``rec.stop``).
        """
        if self.record_when_live == on:
            return []
        self.record_when_live = on
        out = [to_all({"t": "rec.auto", "room": self.id, "on": on})]
        if on and self.live:
            out += self.set_recording(True)
        return out

    # -- PK battles (roomserver/pk.py) ----------------------------------------------

    @property
    def battle(self) -> Battle | None:
        return Battle.from_wire(self.pk) if self.pk is not None else None

    def _pk_free(self, now_ms: int) -> None:
        pending = [self.pk_invite, self.pk_outgoing]
        if self.pk is not None or any(
            p is not None and not Invite.from_wire(p).expired(now_ms) for p in pending
        ):
            raise PkBusy(f"room {self.id!r} is in a PK battle or has an invitation pending")

    def pk_invited(self, invite: Invite, now_ms: int) -> list[Envelope]:
        """The invited room: keep the invitation and tell its host."""
        self._pk_free(now_ms)
        self.pk_invite = invite.to_wire()
        event = {"t": "pk.invited", "room": self.id, "invite": self.pk_invite}
        return [to_roles(event, HOST_ROLES)]

    def pk_inviting(self, invite: Invite, now_ms: int) -> list[Envelope]:
        """The inviting room: remember the invitation it is waiting on."""
        self._pk_free(now_ms)
        self.pk_outgoing = invite.to_wire()
        return []

    def pk_answer(self, pk_id: str, now_ms: int) -> Invite:
        """The invitation ``pk_id`` this room's host may still accept or decline."""
        if self.pk_invite is None or self.pk_invite["id"] != pk_id:
            raise NotInvited("no such PK invitation")
        invite = Invite.from_wire(self.pk_invite)
        if invite.expired(now_ms):
            raise NotInvited("the PK invitation expired")
        return invite

    def pk_withdrawn(self, pk_id: str, declined: bool) -> list[Envelope]:
        """An invitation ended without a battle (declined, or the start failed)."""
        out: list[Envelope] = []
        if self.pk_invite is not None and self.pk_invite["id"] == pk_id:
            self.pk_invite = None
        if self.pk_outgoing is not None and self.pk_outgoing["id"] == pk_id:
            self.pk_outgoing = None
            if declined:
                event = {"t": "pk.declined", "room": self.id, "pk": pk_id}
                out.append(to_roles(event, HOST_ROLES))
        return out

    def pk_start(self, battle: Battle) -> list[Envelope]:
        """Both rooms enter the battle; the inviting room only if it still waits on it."""
        if self.pk is not None:
            raise PkBusy(f"room {self.id!r} is already in a PK battle")
        if battle.side(self.id) == 0 and (
            self.pk_outgoing is None or self.pk_outgoing["id"] != battle.id
        ):
            raise NotInvited("the inviting room withdrew the invitation")
        self.pk_invite = self.pk_outgoing = None
        self.pk = battle.to_wire()
        return [to_all({"t": "pk.started", "room": self.id, "pk": self.pk})]

    def pk_finish(self, pk_id: str, result: dict[str, Any]) -> list[Envelope]:
        """End the battle ``pk_id`` with ``result``; nothing if it already ended."""
        if self.pk is None or self.pk["id"] != pk_id:
            return []
        self.last_pk = {**self.pk, **result}
        self.pk = None
        return [to_all({"t": "pk.ended", "room": self.id, "pk": self.last_pk})]

    # -- sharing between nodes ------------------------------------------------------

    def control_to_wire(self) -> dict[str, Any]:
        """The state every node must agree on (not presence, which each node reports)."""
        return {
            "host": self.host,
            "live": self.live,
            "cohosts": list(self.cohosts),
            "invited": dict(self.invited),
            "hands": dict(self.hands),
            "publishers": list(self.publishers),
            "pinned": self.pinned,
            "announcement": self.announcement,
            "draws": dict(self.draws),
            "last_draw": self.last_draw,
            "mutes": dict(self.mutes),
            "bans": sorted(self.bans),
            "recording": self.recording,
            "record_when_live": self.record_when_live,
            "pk": self.pk,
            "pk_invite": self.pk_invite,
            "pk_outgoing": self.pk_outgoing,
            "last_pk": self.last_pk,
        }

    def load_control(self, data: dict[str, Any]) -> None:
        """Replace the shared state with ``data`` from ``control_to_wire``."""
        self.host = data["host"]
        self.live = data["live"]
        self.cohosts = list(data["cohosts"])
        self.invited = dict(data["invited"])
        self.hands = dict(data["hands"])
        self.publishers = list(data["publishers"])
        self.pinned = data["pinned"]
        self.announcement = data.get("announcement")
        self.draws = dict(data.get("draws") or {})
        self.last_draw = data.get("last_draw")
        self.mutes = dict(data["mutes"])
        self.bans = set(data["bans"])
        self.recording = bool(data.get("recording", False))
        self.record_when_live = bool(data.get("record_when_live", False))
        self.pk = data.get("pk")
        self.pk_invite = data.get("pk_invite")
        self.pk_outgoing = data.get("pk_outgoing")
        self.last_pk = data.get("last_pk")

    # -- snapshot -------------------------------------------------------------------

    def snapshot(self, members: int, likes: int) -> dict[str, Any]:
        """The ``room`` object of the join snapshot."""
        return {
            "id": self.id,
            "title": self.info.title,
            "host": self.host,
            "live": self.live,
            "cohosts": list(self.cohosts),
            "publishers": list(self.publishers),
            "pinned": self.pinned,
            "members": members,
            "likes": likes,
            "welcome": self.info.welcome,
            "announcement": self.announcement,
            "draws": list(self.draws.values()),
            "last_draw": self.last_draw,
            "recording": self.recording,
            "record_when_live": self.record_when_live,
            "pk": self.pk,
            "last_pk": self.last_pk,
        }
