"""PK battles as plain rules: invitations, one battle per room, the score and the result."""

from __future__ import annotations

import pytest

from roomserver.errors import NotInvited, PkBusy
from roomserver.ids import Identity, Role, UserId
from roomserver.pk import Battle, Invite, outcome, score
from roomserver.room import RoomInfo, RoomState

NOW = 1_000_000


def invite(pk_id: str = "pk1", to_room: str = "b", expires_at: int = NOW + 30_000) -> Invite:
    return Invite(pk_id, "a", "ha", "Room A", to_room, 60, expires_at)


def battle(pk_id: str = "pk1") -> Battle:
    return Battle(
        id=pk_id,
        rooms=("a", "b"),
        hosts=("ha", "hb"),
        titles=("Room A", "Room B"),
        polls=(pk_id + "a", pk_id + "b"),
        likes_base=(10, 0),
        started_at=NOW,
        ends_at=NOW + 60_000,
    )


def room(room_id: str) -> RoomState:
    state = RoomState(RoomInfo(room_id, f"Room {room_id.upper()}"))
    state.admit(Identity(UserId("h" + room_id), "Host", Role.HOST))
    return state


def test_wire_forms_round_trip() -> None:
    assert Invite.from_wire(invite().to_wire()) == invite()
    assert Battle.from_wire(battle().to_wire()) == battle()
    assert battle().other("a") == ("b", "hb") and battle().other("b") == ("a", "ha")
    assert battle().poll_of("b") == "pk1b"


def test_score_counts_likes_since_the_start_and_votes_from_both_rooms() -> None:
    # Room a had 10 likes before the battle and has 25 now; b went 0 -> 4.
    points = score(battle(), likes=(25, 4), votes=([3, 1], [2, 7]))
    assert points == {"a": 15 + 3 + 2, "b": 4 + 1 + 7}
    assert score(battle(), likes=(5, 0), votes=([], [])) == {"a": 0, "b": 0}
    assert outcome(battle(), points) == {"score": points, "winner": "a"}
    assert outcome(battle(), {"a": 3, "b": 3})["winner"] is None


def test_invitation_reaches_only_the_invited_host_and_blocks_other_invitations() -> None:
    a, b = room("a"), room("b")
    assert a.pk_inviting(invite(), NOW) == []
    (envelope,) = b.pk_invited(invite(), NOW)
    assert envelope.event["t"] == "pk.invited" and envelope.roles == frozenset({"host"})
    with pytest.raises(PkBusy):
        b.pk_invited(invite("pk2"), NOW)
    with pytest.raises(PkBusy):
        a.pk_inviting(invite("pk2"), NOW)
    # An expired invitation no longer blocks.
    later = NOW + 31_000
    assert b.pk_invited(invite("pk3"), later)
    with pytest.raises(NotInvited):
        b.pk_answer("pk1", later)


def test_accept_starts_the_same_battle_in_both_rooms_once() -> None:
    a, b = room("a"), room("b")
    a.pk_inviting(invite(), NOW)
    b.pk_invited(invite(), NOW)
    assert b.pk_answer("pk1", NOW).from_room == "a"
    with pytest.raises(NotInvited):
        b.pk_answer("other", NOW)
    assert [e.event["t"] for e in a.pk_start(battle())] == ["pk.started"]
    assert [e.event["t"] for e in b.pk_start(battle())] == ["pk.started"]
    assert a.pk == b.pk == battle().to_wire()
    assert a.pk_outgoing is None and b.pk_invite is None
    with pytest.raises(PkBusy):
        a.pk_start(battle("pk9"))
    with pytest.raises(PkBusy):
        a.pk_inviting(invite("pk4"), NOW)  # a room in a battle cannot invite
    with pytest.raises(PkBusy):
        b.pk_invited(invite("pk5"), NOW)  # nor be invited


def test_the_inviting_room_must_still_be_waiting() -> None:
    a = room("a")
    with pytest.raises(NotInvited):
        a.pk_start(battle())  # never invited, or withdrew


def test_decline_tells_the_inviting_host() -> None:
    a, b = room("a"), room("b")
    a.pk_inviting(invite(), NOW)
    b.pk_invited(invite(), NOW)
    assert b.pk_withdrawn("pk1", declined=True) == []
    (envelope,) = a.pk_withdrawn("pk1", declined=True)
    assert envelope.event == {"t": "pk.declined", "room": "a", "pk": "pk1"}
    assert a.pk_outgoing is None and b.pk_invite is None


def test_finish_once_keeps_the_result() -> None:
    a = room("a")
    a.pk_inviting(invite(), NOW)
    a.pk_start(battle())
    result = {"score": {"a": 2, "b": 1}, "winner": "a"}
    (envelope,) = a.pk_finish("pk1", result)
    assert envelope.event["t"] == "pk.ended" and envelope.event["pk"]["winner"] == "a"
    assert a.pk is None and a.last_pk is not None and a.last_pk["score"] == {"a": 2, "b": 1}
    assert a.pk_finish("pk1", {"score": {}, "winner": None}) == []


def test_battle_is_shared_control_state_and_in_the_snapshot() -> None:
    a = room("a")
    a.pk_inviting(invite(), NOW)
    a.pk_start(battle())
    copy = room("a")
    copy.load_control(a.control_to_wire())
    assert copy.battle == battle()
    snap = copy.snapshot(members=1, likes=0)
    assert snap["pk"]["id"] == "pk1" and snap["last_pk"] is None
