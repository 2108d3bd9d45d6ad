"""The pure room rules: permissions, membership, moderation ranks, mutes, link-mic and stage."""

from __future__ import annotations

import pytest

from roomserver.errors import Banned, CohostFull, Forbidden, Muted, NotFound, NotInvited
from roomserver.events import Envelope
from roomserver.ids import Identity, Role, UserId
from roomserver.room import RoomInfo, RoomState, authorize
from signaling.messages import REQUEST_TYPES


def ident(user: str, role: Role = Role.MEMBER, name: str | None = None) -> Identity:
    return Identity(user=UserId(user), name=name or user.capitalize(), role=role)


HOST = ident("h", Role.HOST)
MOD = ident("m", Role.MODERATOR)
MOD2 = ident("m2", Role.MODERATOR)
ANN = ident("ann")
BOB = ident("bob")
CAT = ident("cat")
DAN = ident("dan")
EVE = ident("eve")
EVERYONE = (HOST, MOD, MOD2, ANN, BOB, CAT, DAN, EVE)


def room(max_cohosts: int = 3, *present: Identity) -> RoomState:
    state = RoomState(RoomInfo(id="r1", title="Room"), max_cohosts=max_cohosts)
    for who in present or EVERYONE:
        state.admit(who)
    return state


def reached(envelope: Envelope) -> set[str]:
    """Users among EVERYONE that a connection joined as them would receive it."""
    return {who.user for who in EVERYONE if envelope.reaches(who)}


ALL = {who.user for who in EVERYONE}
STAFF = {"h", "m", "m2"}


def only(envelopes: list[Envelope]) -> Envelope:
    assert len(envelopes) == 1, [e.event for e in envelopes]
    return envelopes[0]


# --- permissions ------------------------------------------------------------------------

_ALL_ROLES = {"host", "moderator", "member"}
_STAFF_ROLES = {"host", "moderator"}
_HOST_ROLE = {"host"}

#: The contract's role table, per request type: who passes ``authorize``.
#: ``cohost.end`` (anyone but oneself) and ``rtc.publish`` are decided by RoomState.
EXPECTED: dict[str, set[str]] = {
    "join": _ALL_ROLES,
    "leave": _ALL_ROLES,
    "chat.send": _ALL_ROLES,
    "chat.history": _ALL_ROLES,
    "chat.read": _ALL_ROLES,
    "chat.readers": _ALL_ROLES,
    "poll.vote": _ALL_ROLES,
    "like": _ALL_ROLES,
    "cohost.request": _ALL_ROLES,
    "cohost.accept": _ALL_ROLES,
    "cohost.decline": _ALL_ROLES,
    "cohost.end": _ALL_ROLES,
    "rtc.subscribe": _ALL_ROLES,
    "rtc.publish": _ALL_ROLES,
    "rtc.unpublish": _ALL_ROLES,
    "rtc.unsubscribe": _ALL_ROLES,
    "ping": _ALL_ROLES,
    "poll.create": _STAFF_ROLES,
    "poll.close": _STAFF_ROLES,
    "product.pin": _STAFF_ROLES,
    "product.unpin": _STAFF_ROLES,
    "mod.mute": _STAFF_ROLES,
    "mod.kick": _STAFF_ROLES,
    "mod.ban": _STAFF_ROLES,
    "mod.delete": _STAFF_ROLES,
    "cohost.invite": _HOST_ROLE,
    "room.end": _HOST_ROLE,
    "draw.start": _STAFF_ROLES,
    "rec.start": _HOST_ROLE,
    "rec.auto": _HOST_ROLE,
    "pk.invite": _HOST_ROLE,
    "pk.accept": _HOST_ROLE,
    "pk.decline": _HOST_ROLE,
    "pk.end": _HOST_ROLE,
    "rec.stop": _HOST_ROLE,
}


def test_permission_table_covers_every_request_type() -> None:
    assert set(EXPECTED) == set(REQUEST_TYPES)


@pytest.mark.parametrize("action", sorted(EXPECTED))
@pytest.mark.parametrize("role", [Role.HOST, Role.MODERATOR, Role.MEMBER], ids=str)
def test_permission_table(action: str, role: Role) -> None:
    who = ident("x", role)
    if role.value in EXPECTED[action]:
        authorize(action, who)
    else:
        with pytest.raises(Forbidden) as info:
            authorize(action, who)
        assert info.value.code == "forbidden"
        assert action in info.value.message


# --- membership -------------------------------------------------------------------------


def test_admit_and_release_count_connections_per_user() -> None:
    state = room(3, HOST)
    assert state.admit(ANN) is True
    assert state.admit(ANN) is False
    assert state.admit(ANN) is False
    assert state.member_count == 2
    assert state.release("ann") == (False, [])
    assert state.release("ann") == (False, [])
    assert state.is_present("ann")
    assert state.release("ann") == (True, [])
    assert not state.is_present("ann")
    assert state.member_count == 1
    assert state.release("ann") == (False, [])  # nothing left to release
    assert state.admit(ANN) is True


def test_admit_records_the_host() -> None:
    state = room(3, ANN)
    assert state.host is None
    state.admit(HOST)
    assert state.host == "h"
    assert state.snapshot(members=2, likes=5)["host"] == "h"


def test_banned_user_cannot_be_admitted() -> None:
    state = room()
    only(state.ban(MOD, "ann"))
    with pytest.raises(Banned) as info:
        state.admit(ANN)
    assert info.value.code == "banned"
    state.admit(BOB)  # others still can


# --- moderation ranks -------------------------------------------------------------------


@pytest.mark.parametrize("action", ["mute", "kick", "ban"])
@pytest.mark.parametrize(
    ("actor", "target", "allowed"),
    [
        (MOD, "h", False),
        (MOD, "m2", False),
        (MOD, "m", False),
        (MOD, "ann", True),
        (HOST, "m", True),
        (HOST, "ann", True),
        (HOST, "h", False),
    ],
)
def test_moderation_goes_down_the_ranks(
    action: str, actor: Identity, target: str, allowed: bool
) -> None:
    state = room()

    def act() -> list[Envelope]:
        if action == "mute":
            return state.mute(actor, target, 60, now_ms=1000)
        if action == "kick":
            return state.kick(actor, target)
        return state.ban(actor, target)

    if allowed:
        envelope = only(act())
        assert reached(envelope) == {target}
    else:
        with pytest.raises(Forbidden):
            act()
        assert target not in state.mutes
        assert target not in state.bans


@pytest.mark.parametrize("actor", [HOST, MOD])
def test_moderating_an_unknown_user_is_not_found(actor: Identity) -> None:
    state = room()
    with pytest.raises(NotFound):
        state.mute(actor, "ghost", 60, now_ms=0)
    with pytest.raises(NotFound):
        state.kick(actor, "ghost")
    with pytest.raises(NotFound):
        state.ban(actor, "ghost")
    assert "ghost" not in state.bans


def test_kick_and_ban_events() -> None:
    state = room()
    kick = only(state.kick(HOST, "bob"))
    assert kick.event == {"t": "kicked", "room": "r1", "reason": "kick"}
    assert "bob" not in state.bans
    ban = only(state.ban(HOST, "m"))
    assert ban.event == {"t": "kicked", "room": "r1", "reason": "ban"}
    assert reached(ban) == {"m"}
    assert "m" in state.bans


# --- mutes ------------------------------------------------------------------------------


def test_mute_blocks_chat_until_it_expires() -> None:
    state = room()
    state.check_can_chat(ANN, 1_000)  # not muted: passes
    envelope = only(state.mute(MOD, "ann", 30, now_ms=1_000))
    assert envelope.event == {"t": "muted", "room": "r1", "until": 31_000}
    assert reached(envelope) == {"ann"}
    assert state.mutes["ann"] == 31_000
    for now in (1_000, 20_000, 30_999):
        with pytest.raises(Muted) as info:
            state.check_can_chat(ANN, now)
        assert info.value.until == 31_000
        assert info.value.to_wire(1)["until"] == 31_000
        assert info.value.code == "muted"
    state.check_can_chat(BOB, 5_000)  # others are not muted
    state.check_can_chat(ANN, 31_000)
    assert "ann" not in state.mutes
    state.check_can_chat(ANN, 31_001)


def test_automatic_mute_has_no_actor_check() -> None:
    state = room()
    only(state.mute(None, "ann", 600, now_ms=0))
    assert state.mutes["ann"] == 600_000


# --- link-mic ---------------------------------------------------------------------------


def test_request_reaches_staff_only() -> None:
    state = room()
    envelope = only(state.request_cohost(ANN))
    assert envelope.event == {"t": "cohost.requested", "room": "r1", "user": "ann", "name": "Ann"}
    assert reached(envelope) == STAFF
    assert not envelope.reaches(ANN)
    assert state.request_cohost(ANN) == []  # a raised hand stays raised


def test_invite_of_an_absent_user_is_not_found() -> None:
    state = room(3, HOST, ANN)
    with pytest.raises(NotFound):
        state.invite(HOST, "bob")
    state.admit(BOB)
    state.release("bob")
    with pytest.raises(NotFound):
        state.invite(HOST, "bob")
    assert state.invited == {}


def test_invite_reaches_the_invited_user_only() -> None:
    state = room()
    state.request_cohost(ANN)
    envelope = only(state.invite(HOST, "ann"))
    assert envelope.event == {"t": "cohost.invited", "room": "r1", "by": "h"}
    assert reached(envelope) == {"ann"}
    assert "ann" not in state.hands


def test_accept_without_invite_is_not_invited() -> None:
    state = room()
    with pytest.raises(NotInvited) as info:
        state.accept(ANN)
    assert info.value.code == "not_invited"
    state.invite(HOST, "bob")
    with pytest.raises(NotInvited):
        state.accept(ANN)
    assert state.cohosts == []


def test_accept_joins_and_reaches_everyone() -> None:
    state = room()
    state.invite(HOST, "ann")
    envelope = only(state.accept(ANN))
    assert envelope.event == {"t": "cohost.joined", "room": "r1", "user": "ann"}
    assert envelope.broadcast
    assert reached(envelope) == ALL
    assert state.cohosts == ["ann"]
    assert state.invited == {}
    with pytest.raises(NotInvited):
        state.accept(ANN)  # the invitation was used
    assert state.invite(HOST, "ann") == []  # already on stage


def test_decline_reaches_the_host_only() -> None:
    state = room()
    state.invite(HOST, "ann")
    envelope = only(state.decline(ANN))
    assert envelope.event == {"t": "cohost.declined", "room": "r1", "user": "ann"}
    assert reached(envelope) == {"h"}
    assert state.cohosts == []
    with pytest.raises(NotInvited):
        state.decline(ANN)
    with pytest.raises(NotInvited):
        state.accept(ANN)


def test_stage_full_refuses_invite() -> None:
    state = room(2)
    for who in (ANN, BOB):
        state.invite(HOST, who.user)
        state.accept(who)
    with pytest.raises(CohostFull) as info:
        state.invite(HOST, "cat")
    assert info.value.code == "cohost_full"
    assert "cat" not in state.invited
    assert state.cohosts == ["ann", "bob"]


def test_stage_full_refuses_accept() -> None:
    state = room(2)
    for who in (ANN, BOB, CAT):
        state.invite(HOST, who.user)
    state.accept(ANN)
    state.accept(BOB)
    with pytest.raises(CohostFull):
        state.accept(CAT)
    assert state.cohosts == ["ann", "bob"]
    assert "cat" not in state.invited


def test_a_member_cannot_end_another_cohost() -> None:
    state = room()
    for who in (ANN, BOB):
        state.invite(HOST, who.user)
        state.accept(who)
    with pytest.raises(Forbidden):
        state.end_cohost(BOB, "ann")
    with pytest.raises(Forbidden):
        state.end_cohost(MOD, "ann")
    assert state.cohosts == ["ann", "bob"]


def test_a_cohost_ends_itself() -> None:
    state = room()
    state.invite(HOST, "ann")
    state.accept(ANN)
    envelope = only(state.end_cohost(ANN, "ann"))
    assert envelope.event == {"t": "cohost.left", "room": "r1", "user": "ann"}
    assert reached(envelope) == ALL
    assert state.cohosts == []
    with pytest.raises(NotFound):
        state.end_cohost(ANN, "ann")


def test_host_ends_a_cohost_and_its_publishing() -> None:
    state = room()
    state.invite(HOST, "ann")
    state.accept(ANN)
    state.publish(ANN)
    out = state.end_cohost(HOST, "ann")
    assert [e.event for e in out] == [
        {"t": "cohost.left", "room": "r1", "user": "ann"},
        {"t": "tracks", "room": "r1", "publishers": []},
    ]
    with pytest.raises(NotFound):
        state.end_cohost(HOST, "bob")


def test_cohost_leaves_the_stage_with_its_last_connection() -> None:
    state = room()
    state.admit(ANN)  # a second connection of ann
    state.invite(HOST, "ann")
    state.accept(ANN)
    assert state.release("ann") == (False, [])
    assert state.cohosts == ["ann"]
    last, out = state.release("ann")
    assert last is True
    envelope = only(out)
    assert envelope.event == {"t": "cohost.left", "room": "r1", "user": "ann"}
    assert reached(envelope) == ALL
    assert state.cohosts == []


def test_leaving_drops_hands_and_invitations() -> None:
    state = room()
    state.request_cohost(ANN)
    state.invite(HOST, "bob")
    assert state.release("ann") == (True, [])
    assert state.release("bob") == (True, [])
    assert state.hands == {} and state.invited == {}


# --- stage ------------------------------------------------------------------------------


def test_may_publish() -> None:
    state = room()
    assert state.may_publish(HOST)
    assert not state.may_publish(MOD)
    assert not state.may_publish(ANN)
    state.invite(HOST, "ann")
    state.accept(ANN)
    assert state.may_publish(ANN)
    with pytest.raises(Forbidden):
        state.publish(BOB)
    with pytest.raises(Forbidden):
        state.publish(MOD)
    assert state.publishers == []


def test_host_publish_starts_and_unpublish_ends_the_stream() -> None:
    state = room()
    out = state.publish(HOST)
    assert [e.event for e in out] == [
        {"t": "tracks", "room": "r1", "publishers": ["h"]},
        {"t": "stream.started", "room": "r1", "user": "h"},
    ]
    assert all(reached(e) == ALL for e in out)
    assert state.live is True
    assert state.publish(HOST) == []

    state.invite(HOST, "ann")
    state.accept(ANN)
    cohost = state.publish(ANN)
    assert [e.event for e in cohost] == [{"t": "tracks", "room": "r1", "publishers": ["h", "ann"]}]

    out = state.unpublish("h")
    assert [e.event for e in out] == [
        {"t": "tracks", "room": "r1", "publishers": ["ann"]},
        {"t": "stream.ended", "room": "r1", "user": "h"},
    ]
    assert state.live is False
    assert state.unpublish("h") == []
    assert [e.event for e in state.unpublish("ann")] == [
        {"t": "tracks", "room": "r1", "publishers": []}
    ]
    assert state.live is False


def test_cohost_publishing_alone_does_not_start_the_stream() -> None:
    state = room()
    state.invite(HOST, "ann")
    state.accept(ANN)
    out = state.publish(ANN)
    assert [e.type for e in out] == ["tracks"]
    assert state.live is False
    assert [e.type for e in state.unpublish("ann")] == ["tracks"]


def test_record_when_live_follows_the_hosts_stream() -> None:
    state = room()
    assert [e.event for e in state.set_record_when_live(True)] == [
        {"t": "rec.auto", "room": "r1", "on": True}
    ]
    assert state.set_record_when_live(True) == []
    assert state.recording is False  # not live yet: nothing to record
    assert [e.type for e in state.publish(HOST)] == ["tracks", "stream.started", "rec.started"]
    assert state.recording is True
    assert [e.type for e in state.unpublish("h")] == ["tracks", "stream.ended", "rec.stopped"]
    assert state.recording is False


def test_record_when_live_set_while_live_starts_now_and_unset_leaves_it_running() -> None:
    state = room()
    state.publish(HOST)
    assert [e.type for e in state.set_record_when_live(True)] == ["rec.auto", "rec.started"]
    assert [e.event for e in state.set_record_when_live(False)] == [
        {"t": "rec.auto", "room": "r1", "on": False}
    ]
    assert state.recording is True  # the host stops it with rec.stop
    assert [e.type for e in state.unpublish("h")] == ["tracks", "stream.ended"]
    assert state.recording is True


def test_manual_recording_is_not_stopped_by_the_stream_ending() -> None:
    state = room()
    state.publish(HOST)
    assert [e.type for e in state.set_recording(True)] == ["rec.started"]
    state.unpublish("h")
    assert state.recording is True


def test_record_setting_is_shared_control_state() -> None:
    state = room()
    state.set_record_when_live(True)
    other = room()
    other.load_control(state.control_to_wire())
    assert other.record_when_live is True


def test_pin_and_unpin() -> None:
    state = room()
    product = {"id": "p9", "title": "Robot kit", "price": "39.90", "currency": "EUR"}
    envelope = only(state.pin(product))
    assert envelope.event == {"t": "product.pinned", "room": "r1", "product": product}
    assert reached(envelope) == ALL
    assert state.snapshot(1, 0)["pinned"] == product
    envelope = only(state.pin(None))
    assert envelope.event == {"t": "product.pinned", "room": "r1", "product": None}
    assert state.pinned is None


def test_snapshot_shape() -> None:
    state = RoomState(RoomInfo(id="r1", title="T", welcome="Hi"))
    state.admit(HOST)
    state.publish(HOST)
    assert state.snapshot(members=7, likes=3) == {
        "id": "r1",
        "title": "T",
        "host": "h",
        "live": True,
        "cohosts": [],
        "publishers": ["h"],
        "pinned": None,
        "members": 7,
        "likes": 3,
        "welcome": "Hi",
        "announcement": None,
        "draws": [],
        "last_draw": None,
        "recording": False,
        "record_when_live": False,
        "pk": None,
        "last_pk": None,
    }
