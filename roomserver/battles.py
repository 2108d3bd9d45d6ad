"""PK battles on a node: invitations across rooms, the score, the end, the other host's stream.

The rules live in :mod:`roomserver.pk` and :class:`~roomserver.room.RoomState`;
this module does the I/O around them. Every change goes through the node's
control-state transitions, so it holds with one node or many: the battle sits
in both rooms' shared state, any node with members in either room may end it
when its time is up (the first one does; the others find it over), and the
score goes out as a coalesced ``pk.score`` event to both rooms.

During a battle a viewer of one room watches the other room's host with
``rtc.subscribe`` + ``from_room``: the request goes to the node holding the
other room's media, under a guest key (``pk/<room>/<user>``) so that leaving,
the battle ending or the room ending frees exactly those subscriptions.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import TYPE_CHECKING, Any

from roomserver import pk
from roomserver.errors import BadRequest, ClientError, NotFound
from roomserver.events import to_all
from roomserver.ids import Identity
from roomserver.pk import Battle, Invite
from roomserver.room import RoomState
from signaling import messages as m

if TYPE_CHECKING:
    from roomserver.hub import Conn
    from roomserver.node import Node

#: At most two ``pk.score`` events a second per battle.
SCORE_INTERVAL_S = 0.5


def guest_key(room: str, user: str) -> str:
    """The SFU user key of ``room``'s member ``user`` watching the other room's host."""
    return f"pk/{room}/{user}"


class Battles:
    """The ``pk.*`` requests of one node and what keeps a battle going."""

    def __init__(self, node: Node) -> None:
        self.node = node

    # -- requests ------------------------------------------------------------------------

    async def invite(
        self, conn: Conn, who: Identity, state: RoomState, req: m.PkInvite
    ) -> dict[str, Any]:
        node = self.node
        if req.to_room == state.id:
            raise BadRequest("to_room: must be another room")
        target = await node._room(req.to_room)
        now = node.clock.now_ms()
        invite = Invite(
            id="pk" + secrets.token_hex(4),
            from_room=state.id,
            from_host=who.user,
            from_title=state.info.title,
            to_room=target.id,
            duration_s=req.duration_s,
            expires_at=now + pk.INVITE_TTL_MS,
        )
        await node._change(state, lambda s: s.pk_inviting(invite, now))
        try:
            await node._change(target, lambda s: s.pk_invited(invite, now))
        except ClientError:
            await node._change(state, lambda s: s.pk_withdrawn(invite.id, declined=False))
            raise
        return {"invite": invite.to_wire()}

    async def accept(
        self, conn: Conn, who: Identity, state: RoomState, req: m.PkAccept
    ) -> dict[str, Any]:
        node = self.node
        now = node.clock.now_ms()
        await node.broker.refresh_control(state)
        invite = state.pk_answer(req.pk, now)
        inviter = await node._room(invite.from_room)
        rooms = (invite.from_room, state.id)
        battle = Battle(
            id=invite.id,
            rooms=rooms,
            hosts=(invite.from_host, who.user),
            titles=(invite.from_title, state.info.title),
            polls=(invite.id + "a", invite.id + "b"),
            likes_base=(await node.broker.likes(rooms[0]), await node.broker.likes(rooms[1])),
            started_at=now,
            ends_at=now + invite.duration_s * 1000,
        )
        try:
            await node._change(inviter, lambda s: s.pk_start(battle))
        except ClientError:
            await node._change(state, lambda s: s.pk_withdrawn(invite.id, declined=False))
            raise
        await node._change(state, lambda s: s.pk_start(battle))
        await self._open_polls(battle, invite.duration_s)
        for room in rooms:
            node.webhooks.send("pk.started", room, now, {"pk": battle.to_wire()})
        return {"pk": battle.to_wire()}

    async def decline(
        self, conn: Conn, who: Identity, state: RoomState, req: m.PkDecline
    ) -> dict[str, Any]:
        node = self.node
        await node.broker.refresh_control(state)
        invite = state.pk_answer(req.pk, node.clock.now_ms())
        await node._change(state, lambda s: s.pk_withdrawn(invite.id, declined=True))
        inviter = await node._room(invite.from_room)
        await node._change(inviter, lambda s: s.pk_withdrawn(invite.id, declined=True))
        return {}

    async def end(
        self, conn: Conn, who: Identity, state: RoomState, req: m.PkEnd
    ) -> dict[str, Any]:
        await self.node.broker.refresh_control(state)
        battle = state.battle
        if battle is None:
            raise NotFound("no PK battle in this room")
        return {"pk": await self.finish(state.id, battle.id)}

    # -- the other room's stream -----------------------------------------------------------

    def _other(self, state: RoomState, from_room: str, publisher: str) -> str:
        battle = state.battle
        if battle is None or from_room == state.id or from_room not in battle.rooms:
            raise NotFound(f"no PK battle with room {from_room!r}")
        _, host = battle.other(state.id)
        if publisher != host:
            raise NotFound(f"{publisher!r} is not the host of {from_room!r}")
        return from_room

    async def subscribe(
        self, conn: Conn, who: Identity, state: RoomState, req: m.RtcSubscribe
    ) -> Any:
        assert req.from_room is not None
        room = self._other(state, req.from_room, req.publisher)
        key = guest_key(state.id, who.user)
        tab = self.node.tab(conn)
        return await self.node._media_call(
            room, "subscribe", user=key, publisher=req.publisher, sdp=req.sdp, tab=tab
        )

    async def unsubscribe(
        self, conn: Conn, who: Identity, state: RoomState, req: m.RtcUnsubscribe
    ) -> None:
        assert req.from_room is not None
        key = guest_key(state.id, who.user)
        await self.node._media_call(
            req.from_room,
            "unsubscribe",
            user=key,
            publisher=req.publisher,
            tab=self.node.tab(conn),
        )

    async def member_gone(self, state: RoomState, user: str, tab: str) -> None:
        """A member's connection left a room in a battle: free what it watched of the other
        room (with ``tab`` "" everything the member watched there)."""
        battle = state.battle
        if battle is not None:
            other, _ = battle.other(state.id)
            await self.node._media_forget(other, "member_gone", guest_key(state.id, user), tab)

    # -- score -----------------------------------------------------------------------------

    async def score(self, battle: Battle) -> dict[str, int]:
        broker = self.node.broker
        likes = (await broker.likes(battle.rooms[0]), await broker.likes(battle.rooms[1]))
        votes: list[list[int]] = []
        for room, poll_id in zip(battle.rooms, battle.polls, strict=True):
            try:
                counts, _ = await broker.poll_tally(room, poll_id)
            except NotFound:
                counts = []
            votes.append(list(counts))
        return pk.score(battle, likes, (votes[0], votes[1]))

    def changed(self, state: RoomState) -> None:
        """Likes or PK-poll votes changed in ``state``'s room: send the score, coalesced."""
        battle = state.battle
        if battle is None:
            return
        node = self.node

        async def emit() -> None:
            points = await self.score(battle)
            for room in battle.rooms:
                event = {"t": "pk.score", "room": room, "pk": battle.id, "score": points}
                await node.broker.publish(room, to_all(event))

        node._coalesce(battle.rooms[0], "pk:" + battle.id, SCORE_INTERVAL_S, emit)

    async def snapshot_field(self, state: RoomState) -> dict[str, Any] | None:
        """``room.pk`` of a join snapshot: the battle with its score now."""
        battle = state.battle
        if battle is None:
            return None
        self.schedule_end(state.id, battle)
        return {**battle.to_wire(), "score": await self.score(battle)}

    def pending_invite(self, state: RoomState, now_ms: int) -> dict[str, Any] | None:
        """The invitation a (re)joining host may still answer: ``room.pk_invite``."""
        invite = state.pk_invite
        if invite is None or Invite.from_wire(invite).expired(now_ms):
            return None
        return invite

    # -- the end ---------------------------------------------------------------------------

    def schedule_end(self, room: str, battle: Battle) -> None:
        """End the battle when its time is up; every node with members keeps such a timer."""

        async def end() -> None:
            await self.finish(room, battle.id)

        self.node._timer_at((room, "pk:" + battle.id), battle.ends_at, end)

    async def finish(self, room: str, pk_id: str) -> dict[str, Any] | None:
        """End battle ``pk_id`` in both rooms with one result; a no-op once it has ended."""
        node = self.node
        state = await node._room(room)
        await node.broker.refresh_control(state)
        battle = state.battle
        if battle is None or battle.id != pk_id:
            return state.last_pk if state.last_pk and state.last_pk["id"] == pk_id else None
        result = pk.outcome(battle, await self.score(battle))
        first = await node._room(battle.rooms[0])
        await node._change(first, lambda s: s.pk_finish(pk_id, result))
        if first.last_pk is not None and first.last_pk["id"] == pk_id:
            result = {"score": first.last_pk["score"], "winner": first.last_pk["winner"]}
        second = await node._room(battle.rooms[1])
        await node._change(second, lambda s: s.pk_finish(pk_id, result))
        now = node.clock.now_ms()
        for side, (room_id, poll_id) in enumerate(zip(battle.rooms, battle.polls, strict=True)):
            with contextlib.suppress(ClientError):
                await node._close_poll(room_id, poll_id)
            node.webhooks.send("pk.ended", room_id, now, {"pk": {**battle.to_wire(), **result}})
            other = battle.rooms[1 - side]
            await node._media_forget(room_id, "guests_gone", guest_key(other, ""))
        final: dict[str, Any] = {**battle.to_wire(), **result}
        return final

    async def room_ending(self, room: str) -> None:
        """A room in a battle ends: the battle ends first, for both rooms."""
        with contextlib.suppress(ClientError):
            state = await self.node._room(room)
            await self.node.broker.refresh_control(state)
            if state.pk is not None:
                await self.finish(room, state.pk["id"])

    async def _open_polls(self, battle: Battle, duration_s: int) -> None:
        """The PK poll in both rooms: the same two options, the inviting room first."""
        question = f"PK: {battle.titles[0]} vs {battle.titles[1]}"[: m.MAX_QUESTION_CHARS]
        options = tuple(title[: m.MAX_OPTION_CHARS] for title in battle.titles)
        for room, poll_id in zip(battle.rooms, battle.polls, strict=True):
            await self.node._open_poll(room, question, options, duration_s, poll_id)
