"""A node: owns this process's rooms and connections; the only caller of the broker.

Every request goes through :meth:`Node.dispatch`, which answers it exactly
once: ``ok`` with the handler's result, the ``ClientError``'s code, or
``internal`` (logged with the request id) for anything unexpected. Handlers
check membership and role first, then apply the pure rules of
:mod:`roomserver.room` and the limits of :mod:`roomserver.limits`, then commit
through the broker. Events reach connections only through the broker's sink
(:meth:`_on_event`), so a single node and many nodes behave alike.

Coalesced events (presence, likes, poll tallies) go out through a
:class:`~roomserver.throttle.Throttle` per room or poll: the first change is
sent at once, later ones at most once per interval, and the last state is
never left unsent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from roomserver import draws
from roomserver.auth import verify_token
from roomserver.battles import Battles
from roomserver.broker.base import Broker, ControlChange
from roomserver.clock import SYSTEM_CLOCK, Clock
from roomserver.config import Settings
from roomserver.errors import (
    BadRequest,
    Blocked,
    ClientError,
    Forbidden,
    Internal,
    Muted,
    NotFound,
    NotJoined,
    RateLimited,
    Unavailable,
)
from roomserver.events import STATE_EVENT, Envelope, to_all
from roomserver.hub import Conn, Hub
from roomserver.ids import SYSTEM_ROLE, ChatDraft, Identity, Role
from roomserver.limits import KeyedBuckets, StrikeCounter, WordFilter
from roomserver.metrics import Metrics
from roomserver.pk import Battle
from roomserver.room import RoomInfo, RoomState, authorize
from roomserver.stats import build_report
from roomserver.throttle import Throttle
from roomserver.webhooks import WebhookSender
from signaling import messages as m

if TYPE_CHECKING:
    from media.record import RoomRecording

log = logging.getLogger(__name__)

HISTORY_ON_JOIN = 50
#: Room events a recording's timeline keeps (the replay page shows them at their offsets).
TIMELINE_EVENTS = frozenset(
    {
        "chat",
        "chat.deleted",
        "poll.opened",
        "poll.tally",
        "poll.closed",
        "likes",
        "product.pinned",
        "cohost.joined",
        "cohost.left",
        "stream.started",
        "stream.ended",
        "rec.started",
    }
)
LOGGED_STAGE_EVENTS = frozenset({"cohost.joined", "cohost.left", "stream.started", "stream.ended"})
RESUME_LIMIT = 500
PRESENCE_INTERVAL_S = 1.0
LIKES_INTERVAL_S = 0.5
TALLY_INTERVAL_S = 0.2
PRESENCE_HEARTBEAT_S = 3.0
#: How long closing waits for the node's cancelled background tasks.
CLOSE_TASKS_S = 2.0
MEDIA_CALL_TIMEOUT_S = 15.0  # a forwarded rtc.* may wait for ICE gathering
DRAW_ENTRIES_INTERVAL_S = 0.5


def _retry_ms(wait_s: float) -> int:
    """``retry_after_ms`` for a bucket's wait; a bucket that can never refill says one hour."""
    return math.ceil(min(wait_s, 3600.0) * 1000)


class MediaBackend(Protocol):
    """What the node needs from the SFU (``media/``); None when media is off.

    The node owns who may publish and announces ``tracks`` and ``stream.*``;
    the SFU only moves media. When a publisher's peer connection fails or
    closes by itself, the SFU calls the ``publisher_lost`` callback it was
    given (:meth:`Node.publisher_lost`).
    """

    async def publish(self, room: str, user: str, sdp: str) -> str: ...
    async def subscribe(
        self, room: str, user: str, publisher: str, sdp: str, tab: str = ""
    ) -> str: ...
    async def unpublish(self, room: str, user: str) -> None: ...
    async def unsubscribe(self, room: str, user: str, publisher: str, tab: str = "") -> None: ...
    async def member_gone(self, room: str, user: str, tab: str = "") -> None: ...
    async def room_ended(self, room: str) -> None: ...
    async def guests_gone(self, room: str, prefix: str) -> None: ...
    async def close(self) -> None: ...


Handler = Callable[[Conn, Identity, RoomState, Any], Awaitable[dict[str, Any]]]


class Node:
    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        *,
        clock: Clock = SYSTEM_CLOCK,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.broker = broker
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.hub = Hub(self.metrics)
        self.media: MediaBackend | None = None
        self.draining = False
        self.webhooks = WebhookSender(
            settings.webhook, settings.secret, retry_s=settings.webhook_retry_s
        )
        self.rooms: dict[str, RoomState] = {}
        #: rooms being read from the broker: the joins that arrive meanwhile share one read
        self._loading: dict[str, asyncio.Future[RoomState]] = {}
        self._chat_buckets = KeyedBuckets(settings.chat_rate, settings.chat_burst)
        self._request_buckets = KeyedBuckets(settings.request_rate, settings.request_burst)
        rate = settings.joins_per_ip_rate
        self._join_buckets = KeyedBuckets(rate, max(1.0, rate))
        self._strikes = StrikeCounter(settings.auto_mute_strikes, settings.auto_mute_window_s)
        self._filter = WordFilter(settings.words)
        self._ip_conns: Counter[str] = Counter()
        self._conn_count = 0
        self._throttles: dict[tuple[str, str], Throttle] = {}
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        #: time.monotonic() of the last join request: full collections wait for a lull.
        self.last_join_at = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._presence_sent: dict[str, int] = {}
        self.recordings: dict[str, RoomRecording] = {}
        self.battles = Battles(self)
        self._handlers: dict[str, Handler] = {
            "leave": self._leave,
            "chat.send": self._chat_send,
            "chat.history": self._chat_history,
            "chat.read": self._chat_read,
            "chat.readers": self._chat_readers,
            "poll.create": self._poll_create,
            "poll.vote": self._poll_vote,
            "poll.close": self._poll_close,
            "like": self._like,
            "product.pin": self._product_pin,
            "product.unpin": self._product_unpin,
            "cohost.request": self._cohost_request,
            "cohost.invite": self._cohost_invite,
            "cohost.accept": self._cohost_accept,
            "cohost.decline": self._cohost_decline,
            "cohost.end": self._cohost_end,
            "mod.mute": self._mod_mute,
            "mod.kick": self._mod_kick,
            "mod.ban": self._mod_ban,
            "mod.delete": self._mod_delete,
            "room.end": self._room_end,
            "rtc.publish": self._rtc_publish,
            "rtc.subscribe": self._rtc_subscribe,
            "rtc.unpublish": self._rtc_unpublish,
            "rtc.unsubscribe": self._rtc_unsubscribe,
            "draw.start": self._draw_start,
            "rec.start": self._rec_start,
            "rec.auto": self._rec_auto,
            "rec.stop": self._rec_stop,
            "pk.invite": self.battles.invite,
            "pk.accept": self.battles.accept,
            "pk.decline": self.battles.decline,
            "pk.end": self.battles.end,
        }
        broker.attach(self._on_event)
        broker.serve_calls(self._answer_node_call)
        self.metrics.gauge("roomserver_connections", "open WebSockets", lambda: self._conn_count)
        self.metrics.gauge("roomserver_rooms", "rooms with local members", self._room_gauge)
        self.metrics.gauge("roomserver_members", "distinct members present", self._member_gauge)

    def _room_gauge(self) -> float:
        return self.hub.room_count

    def _member_gauge(self) -> float:
        return sum(state.member_count for state in self.rooms.values())

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        await self.broker.start()
        await self.webhooks.start()
        self._spawn(self._heartbeat())

    async def close(self) -> None:
        for recording in list(self.recordings.values()):
            await recording.stop()  # finalise what was written: playable files
        self.recordings.clear()
        if self.media is not None:
            await self.media.close()
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            # Let them end before their broker goes; a task that will not is left behind
            # rather than holding the shutdown.
            await asyncio.wait(tasks, timeout=CLOSE_TASKS_S)
        await self.webhooks.close()
        await self.broker.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    # -- connections --------------------------------------------------------------

    def open_connection(self, conn: Conn) -> bool:
        """Admit a new connection from ``conn.peer``; False when the address has too many."""
        if self._ip_conns[conn.peer] >= self.settings.max_connections_per_ip:
            return False
        self._ip_conns[conn.peer] += 1
        self._conn_count += 1
        return True

    async def connection_closed(self, conn: Conn) -> None:
        conn.close()
        for room in list(conn.rooms):
            await self._leave_room(conn, room)
        self._conn_count -= 1
        self._ip_conns[conn.peer] -= 1
        if self._ip_conns[conn.peer] <= 0:
            del self._ip_conns[conn.peer]

    # -- requests -----------------------------------------------------------------

    async def dispatch(self, conn: Conn, req: m.Request) -> None:
        """Answer ``req`` exactly once."""
        self.metrics.requests.inc(req.t)
        started = time.perf_counter()
        try:
            result = await self._handle(conn, req)
        except ClientError as exc:
            self.metrics.errors.inc(exc.code)
            conn.answer(exc.to_wire(req.id))
            if isinstance(req, m.Join):
                conn.joining.pop(req.room, None)
            return
        except Exception:
            log.exception("request failed id=%r t=%s conn=%d", req.id, req.t, conn.id)
            self.metrics.errors.inc(Internal.code)
            conn.answer(Internal("internal error").to_wire(req.id))
            return
        conn.answer({"t": "ok", "id": req.id, **result})
        if isinstance(req, m.Join):
            self.hub.release_joining(req.room, conn, result["seq"])
            self.metrics.join_seconds.observe(time.perf_counter() - started)

    async def _handle(self, conn: Conn, req: m.Request) -> dict[str, Any]:
        if isinstance(req, m.Ping):
            return {"ts": self.clock.now_ms()}
        if isinstance(req, m.Join):
            return await self._join(conn, req)
        who = conn.rooms.get(req.room)
        state = self.rooms.get(req.room)
        if who is None or state is None:
            raise NotJoined(f"not joined to room {req.room!r}")
        authorize(req.t, who)
        if not who.role.is_staff:
            wait = self._request_buckets.take(str(conn.id), self.clock.mono())
            if wait > 0:
                raise RateLimited(_retry_ms(wait))
        return await self._handlers[req.t](conn, who, state, req)

    # -- join and leave -------------------------------------------------------------

    async def _join(self, conn: Conn, req: m.Join) -> dict[str, Any]:
        self.last_join_at = time.monotonic()
        wait = self._join_buckets.take(conn.peer, self.clock.mono())
        if wait > 0:
            raise RateLimited(_retry_ms(wait), "too many joins from this address")
        who = verify_token(self.settings.secret, req.token, req.room)
        previous = conn.rooms.get(req.room)
        if previous is not None and previous != who:
            await self._leave_room(conn, req.room)
            previous = None
        if previous is None and len(conn.rooms) >= self.settings.max_rooms_per_connection:
            raise Forbidden("this connection has joined too many rooms")
        state = await self._room(req.room)
        first = False
        if previous is None:
            new_host = who.role is Role.HOST and state.host != who.user
            first = state.admit(who)
            conn.rooms[req.room] = who
            conn.joining[req.room] = []
            if self.hub.attach(req.room, conn):
                await self.broker.subscribe(req.room)
            if new_host:
                await self._change(state, lambda s: s.set_host(who.user))
        else:
            conn.joining[req.room] = []
        try:
            if first:
                return await self._first_join(state, who, req.since)
            return await self._snapshot(state, who, req.since)
        except BaseException:
            conn.joining.pop(req.room, None)
            await self._leave_room(conn, req.room)
            raise

    async def _first_join(
        self, state: RoomState, who: Identity, since: int | None
    ) -> dict[str, Any]:
        """Register a member and build its snapshot.

        Both broker calls start in the same loop tick, registration first, so the
        Redis broker sends them in one pipeline (one round trip per join, not two) and
        Redis runs them in that order: the snapshot counts the new member. While a
        draw open to everyone present runs, the member enters it before the snapshot
        is built (the snapshot shows the entry), one call after the other.
        """
        joined_at = self.clock.now_ms()
        present_draws = [d["id"] for d in state.draws.values() if d["eligibility"] == "present"]
        if present_draws:
            await self.broker.member_joined(state.id, who, joined_at)
            for draw_id in present_draws:
                await self._enter_draw(state.id, draw_id, [who.user])
            snapshot = await self._snapshot(state, who, since)
        else:
            _, snapshot = await asyncio.gather(
                self.broker.member_joined(state.id, who, joined_at),
                self._snapshot(state, who, since),
            )
        await self._member_changed(state, who, "member.joined")
        return snapshot

    async def _room(self, room_id: str) -> RoomState:
        """This node's state of ``room_id``, read from the broker once however many
        joins ask for it at the same time (the first wave after a start would otherwise
        make a broker call, and open a Redis connection, per member)."""
        state = self.rooms.get(room_id)
        if state is not None:
            return state
        loading = self._loading.get(room_id)
        if loading is None:
            loading = self._loading[room_id] = asyncio.ensure_future(self._load_room(room_id))
            loading.add_done_callback(lambda done: self._loaded(room_id, done))
        return await asyncio.shield(loading)

    def _loaded(self, room_id: str, done: asyncio.Future[RoomState]) -> None:
        if self._loading.get(room_id) is done:
            del self._loading[room_id]
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have gone

    async def _load_room(self, room_id: str) -> RoomState:
        info = await self.broker.get_room(room_id)
        if info is None:
            raise NotFound(f"room {room_id!r} does not exist")
        state = self.rooms.get(room_id)
        if state is None:
            state = RoomState(info, max_cohosts=self.settings.max_cohosts)
            await self.broker.refresh_control(state)
            state = self.rooms.setdefault(room_id, state)
        return state

    async def _snapshot(self, state: RoomState, who: Identity, since: int | None) -> dict[str, Any]:
        room = state.id
        now = self.clock.now_ms()
        if since is None:
            view = await self.broker.join_view(
                room, who.user, HISTORY_ON_JOIN, state.member_count, now
            )
            seq, history, gap = view.seq, view.history, False
            members, likes, polls = view.members, view.likes, view.polls
        else:
            seq = await self.broker.latest_seq(room)
            history, gap = await self.broker.chat_since(room, since, RESUME_LIMIT)
            if since > seq:
                history = await self.broker.chat_latest(room, HISTORY_ON_JOIN)
            members = await self.broker.presence(room, state.member_count)
            likes = await self.broker.likes(room)
            polls = await self.broker.polls(room, who.user, now)
        if history and history[-1].seq > seq:
            seq = history[-1].seq
        self._keep_timers(room, polls, state)
        snapshot = state.snapshot(members, likes)
        if state.pk is not None:
            snapshot["pk"] = await self.battles.snapshot_field(state)
        if who.role is Role.HOST:
            snapshot["pk_invite"] = self.battles.pending_invite(state, now)
        return {
            "me": who.to_wire(),
            "room": snapshot,
            "polls": polls,
            "history": [msg.to_event() for msg in history],
            "seq": seq,
            "gap": gap,
        }

    def _keep_timers(self, room: str, polls: list[dict[str, Any]], state: RoomState) -> None:
        """Timed polls and draws close on every node with members, not only on nodes that
        saw them open: a node whose first member joins later takes its share of the timers."""
        for poll in polls:
            closes_at = poll.get("closes_at")
            if poll["open"] and closes_at is not None:
                self._schedule_close(room, poll["id"], closes_at)
        for draw in list(state.draws.values()):
            self._schedule_draw(room, draw["id"], draw["closes_at"])

    def _timer_at(
        self, key: tuple[str, str], at_ms: int, work: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        """Run ``work`` at wall-clock ``at_ms``, unless a timer under ``key`` is already set."""
        if key in self._timers:
            return
        delay = max(0.0, (at_ms - self.clock.now_ms()) / 1000)

        def fire() -> None:
            self._timers.pop(key, None)
            self._spawn(work())

        self._timers[key] = asyncio.get_running_loop().call_later(delay, fire)

    def _cancel_timer(self, key: tuple[str, str]) -> None:
        handle = self._timers.pop(key, None)
        if handle is not None:
            handle.cancel()

    def _schedule_draw(self, room: str, draw_id: str, closes_at: int) -> None:
        self._timer_at(
            (room, "draw:" + draw_id), closes_at, lambda: self._finish_draw(room, draw_id)
        )

    async def _leave(
        self, conn: Conn, who: Identity, state: RoomState, req: m.Leave
    ) -> dict[str, Any]:
        await self._leave_room(conn, req.room)
        return {}

    async def _leave_room(self, conn: Conn, room: str, *, ended: bool = False) -> None:
        """Take ``conn`` out of ``room``; announce what changed unless the room ended."""
        who = conn.rooms.pop(room, None)
        conn.joining.pop(room, None)
        if who is None:
            return
        emptied = self.hub.detach(room, conn)
        state = self.rooms.get(room)
        last = state is not None and not ended and state.release_connection(who.user)
        if state is not None and not ended:
            # The user's last connection frees everything of the user ("" for every tab);
            # another one frees only its own subscriptions, while another tab stays.
            tab = "" if last else self.tab(conn)
            if state.publishers:
                await self._media_forget(room, "member_gone", who.user, tab)
            if state.pk is not None:
                await self.battles.member_gone(state, who.user, tab)
        if state is not None and last:
            await self.broker.member_left(room, who.user, self.clock.now_ms())
            if state.on_stage(who.user):
                await self._change(state, lambda s: s.leave_stage(who.user))
            await self._member_changed(state, who, "member.left")
        if emptied:
            await self.broker.unsubscribe(room)
            self._release_room(room)

    async def _member_changed(self, state: RoomState, who: Identity, kind: str) -> None:
        if self.settings.webhook_member_events:
            self.webhooks.send(kind, state.id, self.clock.now_ms(), who.to_wire())
        if who.role.is_staff or state.member_count < self.settings.member_events_below:
            event = {"t": kind, "room": state.id, **who.to_wire()}
            await self.broker.publish(state.id, to_all(event))
        self._coalesce(state.id, "presence", PRESENCE_INTERVAL_S, self._presence_emitter(state.id))

    def _presence_emitter(self, room: str) -> Callable[[], Awaitable[None]]:
        async def emit() -> None:
            current = self.rooms.get(room)
            local = current.member_count if current is not None else 0
            total = await self.broker.presence(room, local)
            self._presence_sent[room] = total
            await self.broker.sample_presence(room, self.clock.now_ms(), total)
            event = {"t": "presence", "room": room, "members": total}
            await self.broker.publish(room, to_all(event))

        return emit

    # -- chat -----------------------------------------------------------------------

    async def _chat_send(
        self, conn: Conn, who: Identity, state: RoomState, req: m.ChatSend
    ) -> dict[str, Any]:
        state.check_can_chat(who, self.clock.now_ms())
        if not who.role.is_staff:
            if self._filter.blocks(req.text):
                raise await self._strike(
                    state, who, Blocked("the message was refused by the filter")
                )
            wait = self._chat_buckets.take(f"{state.id}\0{who.user}", self.clock.mono())
            if wait > 0:
                raise await self._strike(state, who, RateLimited(_retry_ms(wait)))
        draft = ChatDraft(who.user, who.name, who.role.value, req.text, req.cid)
        message, new = await self.broker.append_chat(state.id, draft, self.clock.now_ms())
        if new:
            self.metrics.messages_accepted.inc()
            if state.draws:
                text = req.text.casefold()
                for draw in list(state.draws.values()):
                    keyword = draw.get("keyword")
                    if keyword and keyword.casefold() in text:
                        await self._enter_draw(state.id, draw["id"], [who.user])
        return {"seq": message.seq, "ts": message.ts}

    async def _strike(self, state: RoomState, who: Identity, error: ClientError) -> ClientError:
        """Count a tripped limit; the last strike of a burst mutes the member instead."""
        if not self._strikes.strike(f"{state.id}\0{who.user}", self.clock.mono()):
            return error
        seconds, now = self.settings.auto_mute_seconds, self.clock.now_ms()
        await self._change(state, lambda s: s.mute(None, who.user, seconds, now))
        log.info("auto-mute room=%s user=%s reason=%s", state.id, who.user, error.code)
        await self._moderated(state.id, "auto_mute", who.user, "", reason=error.code)
        return Muted(state.mutes[who.user], "muted automatically for repeated violations")

    async def _chat_history(
        self, conn: Conn, who: Identity, state: RoomState, req: m.ChatHistory
    ) -> dict[str, Any]:
        if req.before is not None:
            messages, gap = await self.broker.chat_before(state.id, req.before, req.limit)
        elif req.after is not None:
            messages, gap = await self.broker.chat_after(state.id, req.after, req.limit)
        else:
            messages, gap = await self.broker.chat_latest(state.id, req.limit), False
        return {"messages": [msg.to_event() for msg in messages], "gap": gap}

    async def _chat_read(
        self, conn: Conn, who: Identity, state: RoomState, req: m.ChatRead
    ) -> dict[str, Any]:
        if req.seq > await self.broker.latest_seq(state.id):
            raise BadRequest("seq: beyond the latest message of the room")
        await self.broker.mark_read(state.id, who.user, req.seq)
        return {}

    async def _chat_readers(
        self, conn: Conn, who: Identity, state: RoomState, req: m.ChatReaders
    ) -> dict[str, Any]:
        return {"count": await self.broker.readers(state.id, req.seq)}

    # -- polls ----------------------------------------------------------------------

    async def _poll_create(
        self, conn: Conn, who: Identity, state: RoomState, req: m.PollCreate
    ) -> dict[str, Any]:
        return {"poll": await self._open_poll(state.id, req.question, req.options, req.duration_s)}

    async def _open_poll(
        self,
        room: str,
        question: str,
        options: tuple[str, ...],
        duration_s: int | None,
        poll_id: str | None = None,
    ) -> dict[str, Any]:
        """Create a poll (a fresh id unless given) and announce it: ``poll.opened``."""
        poll_id = poll_id or "p" + secrets.token_hex(4)
        poll = await self.broker.create_poll(
            room, poll_id, question, options, self.clock.now_ms(), duration_s
        )
        await self.broker.publish(room, to_all({"t": "poll.opened", "room": room, "poll": poll}))
        return poll

    def _schedule_close(self, room: str, poll_id: str, closes_at: int) -> None:
        self._timer_at(
            (room, "close:" + poll_id), closes_at, lambda: self._auto_close(room, poll_id)
        )

    async def _auto_close(self, room: str, poll_id: str) -> None:
        await self._close_poll(room, poll_id, auto=True)

    async def _close_poll(self, room: str, poll_id: str, *, auto: bool = False) -> dict[str, Any]:
        self._cancel_timer((room, "close:" + poll_id))
        try:
            poll, closed_now = await self.broker.close_poll(room, poll_id, self.clock.now_ms())
        except NotFound:
            if auto:
                return {}
            raise
        if closed_now:
            self.webhooks.send("poll.closed", room, self.clock.now_ms(), {"poll": poll})
            closed = {"t": "poll.closed", "room": room, "poll": poll}
            await self.broker.publish(room, to_all(closed))
        return poll

    async def _poll_vote(
        self, conn: Conn, who: Identity, state: RoomState, req: m.PollVote
    ) -> dict[str, Any]:
        await self.broker.vote(state.id, req.poll, who.user, req.option)
        room, poll_id = state.id, req.poll
        for draw in list(state.draws.values()):
            if draw.get("poll") == poll_id:
                await self._enter_draw(room, draw["id"], [who.user])

        async def emit() -> None:
            votes, total = await self.broker.poll_tally(room, poll_id)
            event = {
                "t": "poll.tally",
                "room": room,
                "poll": poll_id,
                "votes": votes,
                "total": total,
            }
            await self.broker.publish(room, to_all(event))

        self._coalesce(room, "tally:" + poll_id, TALLY_INTERVAL_S, emit)
        battle = state.battle
        if battle is not None and battle.poll_of(room) == poll_id:
            self.battles.changed(state)
        return {}

    async def _poll_close(
        self, conn: Conn, who: Identity, state: RoomState, req: m.PollClose
    ) -> dict[str, Any]:
        return {"poll": await self._close_poll(state.id, req.poll)}

    # -- likes and products -----------------------------------------------------------

    async def _like(
        self, conn: Conn, who: Identity, state: RoomState, req: m.Like
    ) -> dict[str, Any]:
        await self.broker.add_likes(state.id, req.n)
        room = state.id

        async def emit() -> None:
            total = await self.broker.likes(room)
            await self.broker.publish(room, to_all({"t": "likes", "room": room, "total": total}))

        self._coalesce(room, "likes", LIKES_INTERVAL_S, emit)
        if state.pk is not None:
            self.battles.changed(state)
        return {}

    async def _product_pin(
        self, conn: Conn, who: Identity, state: RoomState, req: m.ProductPin
    ) -> dict[str, Any]:
        product = req.product.to_wire()
        await self._change(state, lambda s: s.pin(product))
        return {}

    async def _product_unpin(
        self, conn: Conn, who: Identity, state: RoomState, req: m.ProductUnpin
    ) -> dict[str, Any]:
        await self._change(state, lambda s: s.pin(None))
        return {}

    # -- link-mic ---------------------------------------------------------------------

    async def _cohost_request(
        self, conn: Conn, who: Identity, state: RoomState, req: m.CohostRequest
    ) -> dict[str, Any]:
        await self._change(state, lambda s: s.request_cohost(who))
        return {}

    async def _cohost_invite(
        self, conn: Conn, who: Identity, state: RoomState, req: m.CohostInvite
    ) -> dict[str, Any]:
        present = state.is_present(req.user) or await self.broker.is_present(state.id, req.user)
        await self._change(state, lambda s: s.invite(who, req.user, present))
        return {}

    async def _cohost_accept(
        self, conn: Conn, who: Identity, state: RoomState, req: m.CohostAccept
    ) -> dict[str, Any]:
        await self._change(state, lambda s: s.accept(who))
        return {}

    async def _cohost_decline(
        self, conn: Conn, who: Identity, state: RoomState, req: m.CohostDecline
    ) -> dict[str, Any]:
        await self._change(state, lambda s: s.decline(who))
        return {}

    async def _cohost_end(
        self, conn: Conn, who: Identity, state: RoomState, req: m.CohostEnd
    ) -> dict[str, Any]:
        await self._change(state, lambda s: s.end_cohost(who, req.user))
        await self._media_forget(state.id, "unpublish", req.user)
        return {}

    # -- moderation -----------------------------------------------------------------

    async def _mod_mute(
        self, conn: Conn, who: Identity, state: RoomState, req: m.ModMute
    ) -> dict[str, Any]:
        await self._resolve(state, req.user)
        now = self.clock.now_ms()
        await self._change(state, lambda s: s.mute(who, req.user, req.seconds, now))
        await self._moderated(state.id, "mute", req.user, who.user)
        return {}

    async def _mod_kick(
        self, conn: Conn, who: Identity, state: RoomState, req: m.ModKick
    ) -> dict[str, Any]:
        await self._resolve(state, req.user)
        await self._change(state, lambda s: s.kick(who, req.user))
        await self._moderated(state.id, "kick", req.user, who.user)
        return {}

    async def _mod_ban(
        self, conn: Conn, who: Identity, state: RoomState, req: m.ModBan
    ) -> dict[str, Any]:
        await self._resolve(state, req.user)
        await self._change(state, lambda s: s.ban(who, req.user))
        await self._moderated(state.id, "ban", req.user, who.user)
        return {}

    async def _mod_delete(
        self, conn: Conn, who: Identity, state: RoomState, req: m.ModDelete
    ) -> dict[str, Any]:
        if not await self.broker.delete_chat(state.id, req.seq):
            raise NotFound(f"message {req.seq} is not in the room's history")
        event = {"t": "chat.deleted", "room": state.id, "seq": req.seq}
        await self.broker.publish(state.id, to_all(event))
        await self._moderated(state.id, "delete", "", who.user)
        return {}

    # -- lucky draws --------------------------------------------------------------------

    async def _draw_start(
        self, conn: Conn, who: Identity, state: RoomState, req: m.DrawStart
    ) -> dict[str, Any]:
        if req.eligibility == "voted":
            assert req.poll is not None
            initial = await self.broker.poll_voters(state.id, req.poll)
        elif req.eligibility == "present":
            initial = await self.broker.present_users(state.id)
        else:
            initial = []
        seed = draws.new_seed()
        now = self.clock.now_ms()
        public: dict[str, Any] = {
            "id": "d" + secrets.token_hex(4),
            "prize": req.prize,
            "winners_count": req.winners,
            "eligibility": req.eligibility,
            "commitment": draws.commitment(seed),
            "started_at": now,
            "closes_at": now + req.duration_s * 1000,
            "by": who.user,
        }
        if req.keyword is not None:
            public["keyword"] = req.keyword
        if req.poll is not None:
            public["poll"] = req.poll
        await self.broker.create_draw(state.id, {**public, "seed": seed})
        if initial:
            await self.broker.draw_enter(state.id, public["id"], initial)
        await self._change(state, lambda s: s.open_draw(public))
        if initial:
            self._announce_entries(state.id, public["id"])
        return {"draw": public}

    async def _enter_draw(self, room: str, draw_id: str, users: list[str]) -> None:
        try:
            await self.broker.draw_enter(room, draw_id, users)
        except NotFound:
            return
        self._announce_entries(room, draw_id)

    def _announce_entries(self, room: str, draw_id: str) -> None:
        async def emit() -> None:
            count = await self.broker.draw_enter(room, draw_id, [])
            event = {"t": "draw.entries", "room": room, "draw": draw_id, "count": count}
            await self.broker.publish(room, to_all(event))

        self._coalesce(room, "draw:" + draw_id, DRAW_ENTRIES_INTERVAL_S, emit)

    async def _finish_draw(self, room: str, draw_id: str) -> None:
        """Close a draw once (whichever node gets there first) and reveal everything."""
        try:
            record, entries, closed_now = await self.broker.close_draw(room, draw_id)
        except NotFound:
            return
        if not closed_now:
            return
        state = await self._room(room)
        eligible = draws.eligible_list(entries)
        seed = record.pop("seed")
        result = {
            **record,
            "seed": seed,
            "eligible": eligible,
            "entries": len(eligible),
            "winners": draws.select_winners(seed, eligible, record["winners_count"]),
        }
        await self._change(state, lambda s: s.finish_draw(result))
        now = self.clock.now_ms()
        self.webhooks.send("draw.result", room, now, {"draw": result})
        winners = result["winners"]
        await self.broker.record(room, {"t": "draw", "ts": now, "id": draw_id, "winners": winners})

    # -- room end ---------------------------------------------------------------------

    async def _room_end(
        self, conn: Conn, who: Identity, state: RoomState, req: m.RoomEnd
    ) -> dict[str, Any]:
        await self.end_room(state.id)
        return {}

    async def end_room(self, room: str) -> bool:
        """End ``room`` everywhere: ``room.ended`` then ``kicked`` to all, then forget it.

        Its analytics report is kept for ``stats_retention_s`` after the end.
        """
        info = await self.broker.get_room(room)
        if info is None:
            return False
        await self.battles.room_ending(room)
        now = self.clock.now_ms()
        report = await self._report(info, ended_at=now)
        await self.broker.keep_report(room, report, self.settings.stats_retention_s)
        self.webhooks.send("room.ended", room, now, {"stats": report})
        await self.broker.publish(room, to_all({"t": "room.ended", "room": room}))
        kicked = {"t": "kicked", "room": room, "reason": "room_ended"}
        await self.broker.publish(room, to_all(kicked))
        await self.broker.delete_room(room)
        self._forget_room(room)
        if self.media is not None:
            await self.media.room_ended(room)
        return True

    def _release_room(self, room: str) -> None:
        """Drop local state of a room with no local members; the broker keeps what counts."""
        if self.hub.conns(room):
            return
        state = self.rooms.get(room)
        if state is not None and not state.present:
            del self.rooms[room]
            self._presence_sent.pop(room, None)
            for key in [k for k in self._throttles if k[0] == room]:
                if key not in self._timers:
                    del self._throttles[key]

    def _forget_room(self, room: str) -> None:
        self.rooms.pop(room, None)
        self._presence_sent.pop(room, None)
        for key in [k for k in self._timers if k[0] == room]:
            self._timers.pop(key).cancel()
        for key in [k for k in self._throttles if k[0] == room]:
            del self._throttles[key]

    # -- media ------------------------------------------------------------------------

    def _require_media(self) -> MediaBackend:
        if self.media is None:
            raise Unavailable("media is not enabled on this node")
        return self.media

    async def _rtc_publish(
        self, conn: Conn, who: Identity, state: RoomState, req: m.RtcPublish
    ) -> dict[str, Any]:
        if not state.may_publish(who):
            raise Forbidden("only the host and accepted co-hosts may publish")
        published = await self._media_call(
            state.id, "publish", claim=True, user=who.user, sdp=req.sdp
        )
        answer = published["sdp"]
        # Negotiation takes a while: the user may have left or lost the stage meanwhile.
        if conn.rooms.get(state.id) != who or not state.may_publish(who):
            await self._media_call(state.id, "unpublish", user=who.user)
            raise Forbidden("no longer allowed to publish in this room")
        await self._change(state, lambda s: s.publish(who))
        self._recording_sync(state.id)  # a republish may bring new feeds
        return {"sdp": answer}

    async def _rtc_subscribe(
        self, conn: Conn, who: Identity, state: RoomState, req: m.RtcSubscribe
    ) -> dict[str, Any]:
        if req.from_room is not None:
            result: dict[str, Any] = await self.battles.subscribe(conn, who, state, req)
            return result
        if req.publisher not in state.publishers:
            raise NotFound(f"{req.publisher!r} is not publishing")
        return await self._media_call(
            state.id,
            "subscribe",
            user=who.user,
            publisher=req.publisher,
            sdp=req.sdp,
            tab=self.tab(conn),
        )

    async def _rtc_unpublish(
        self, conn: Conn, who: Identity, state: RoomState, req: m.RtcUnpublish
    ) -> dict[str, Any]:
        await self._media_call(state.id, "unpublish", user=who.user)
        await self._change(state, lambda s: s.unpublish(who.user))
        return {}

    async def _rtc_unsubscribe(
        self, conn: Conn, who: Identity, state: RoomState, req: m.RtcUnsubscribe
    ) -> dict[str, Any]:
        if req.from_room is not None:
            await self.battles.unsubscribe(conn, who, state, req)
            return {}
        await self._media_call(
            state.id, "unsubscribe", user=who.user, publisher=req.publisher, tab=self.tab(conn)
        )
        return {}

    async def _media_call(
        self, room: str, op: str, *, claim: bool = False, **args: str
    ) -> dict[str, Any]:
        """Run a media operation on the room's media node: here, or forwarded to it.

        Publishing claims the room's media for this node unless a live node holds
        it; the client's peer connection then goes straight to that node.
        """
        if claim:
            target: str | None = await self.broker.claim_media_node(room)
        else:
            target = await self.broker.media_node(room)
        if target is None or target == self.settings.node_id:
            return await self._media_here(op, room, **args)
        request = {"op": op, "room": room, **args}
        return await self.broker.call_node(target, room, request, MEDIA_CALL_TIMEOUT_S)

    async def _media_here(
        self,
        op: str,
        room: str,
        user: str,
        publisher: str = "",
        sdp: str = "",
        tab: str = "",
    ) -> dict[str, Any]:
        media = self._require_media()
        if op == "publish":
            return {"sdp": await media.publish(room, user, sdp)}
        if op == "subscribe":
            return {"sdp": await media.subscribe(room, user, publisher, sdp, tab)}
        if op == "unpublish":
            await media.unpublish(room, user)
        elif op == "unsubscribe":
            await media.unsubscribe(room, user, publisher, tab)
        elif op == "member_gone":
            await media.member_gone(room, user, tab)
        elif op == "guests_gone":
            await media.guests_gone(room, user)
        else:
            raise BadRequest(f"unknown media operation {op!r}")
        return {}

    async def _answer_node_call(self, request: dict[str, Any]) -> dict[str, Any]:
        """Another node forwards an rtc.* request because this node holds the room's media."""
        args = {k: str(v) for k, v in request.items() if k not in ("op", "room")}
        return await self._media_here(str(request["op"]), str(request["room"]), **args)

    async def _media_forget(self, room: str, op: str, user: str, tab: str = "") -> None:
        """Free a user's peer connections wherever the room's media is; never fails a leave."""
        with contextlib.suppress(ClientError):
            await self._media_call(room, op, user=user, tab=tab)

    def tab(self, conn: Conn) -> str:
        """A connection's name for the SFU, unique across nodes: its subscriptions' owner."""
        return f"{self.settings.node_id}:{conn.id}"

    async def publisher_lost(self, room: str, user: str) -> None:
        """The SFU lost a publisher's connection: announce that it stopped publishing."""
        state = self.rooms.get(room)
        if state is not None:
            await self._change(state, lambda s: s.unpublish(user))

    # -- HTTP API entry points ----------------------------------------------------------

    async def create_room(self, info: RoomInfo) -> bool:
        created = await self.broker.create_room(info)
        if created:
            data = {"title": info.title, "welcome": info.welcome}
            self.webhooks.send("room.started", info.id, self.clock.now_ms(), data)
        return created

    async def _report(self, info: RoomInfo, ended_at: int | None = None) -> dict[str, Any]:
        now = self.clock.now_ms()
        if ended_at is not None:
            state = self.rooms.get(info.id)
            total = await self.broker.presence(info.id, state.member_count if state else 0)
            await self.broker.sample_presence(info.id, now, total)
        return build_report(
            info.id,
            info.title,
            info.created_at,
            await self.broker.counters(info.id),
            await self.broker.room_log(info.id),
            await self.broker.all_polls(info.id),
            now,
            ended_at,
        )

    async def room_stats(self, room: str) -> dict[str, Any] | None:
        """The live report of a room, or the kept one of a room that ended."""
        info = await self.broker.get_room(room)
        if info is not None:
            return await self._report(info)
        return await self.broker.kept_report(room)

    async def post_system_message(
        self, room: str, text: str, cid: str, name: str, pin: bool
    ) -> dict[str, Any]:
        """An operator's announcement in the chat: same seq and history as any message."""
        state = await self._room(room)
        draft = ChatDraft("system", name, SYSTEM_ROLE, text, cid)
        message, new = await self.broker.append_chat(room, draft, self.clock.now_ms())
        if new:
            self.metrics.messages_accepted.inc()
        if pin:
            event = message.to_event()
            await self._change(state, lambda s: s.announce(event))
        return {"seq": message.seq, "ts": message.ts}

    async def operator_poll(self, room: str, req: m.PollCreate) -> dict[str, Any]:
        await self._room(room)  # not_found for a room that does not exist
        return {"poll": await self._open_poll(room, req.question, req.options, req.duration_s)}

    async def operator_product(self, room: str, product: dict[str, Any] | None) -> None:
        state = await self._room(room)
        await self._change(state, lambda s: s.pin(product))

    async def operator_kick(self, room: str, user: str, ban: bool) -> None:
        state = await self._room(room)
        await self._resolve(state, user)
        if ban:
            await self._change(state, lambda s: s.ban(None, user))
        else:
            await self._change(state, lambda s: s.kick(None, user))
        await self._moderated(room, "ban" if ban else "kick", user, "operator")

    async def room_status(self, room: str) -> dict[str, Any] | None:
        info = await self.broker.get_room(room)
        if info is None:
            return None
        state = self.rooms.get(room) or RoomState(info, max_cohosts=self.settings.max_cohosts)
        return {
            "id": info.id,
            "title": info.title,
            "live": state.live,
            "members": await self.broker.presence(room, state.member_count),
            "likes": await self.broker.likes(room),
            "host": state.host,
            "cohosts": list(state.cohosts),
        }

    # -- events -----------------------------------------------------------------------

    async def _change(self, state: RoomState, change: ControlChange) -> None:
        """Apply a control-state transition through the broker, which publishes its events.

        This node caused the change, so it is the one that tells the webhooks and
        the analytics log about stage events.
        """
        envelopes = await self.broker.update_control(state, change)
        for envelope in envelopes:
            if envelope.type in LOGGED_STAGE_EVENTS:
                user = envelope.event["user"]
                await self._log_event(state.id, envelope.type, {"user": user})

    async def _log_event(self, room: str, kind: str, data: dict[str, Any]) -> None:
        """Send a webhook and append to the room's analytics log."""
        now = self.clock.now_ms()
        self.webhooks.send(kind, room, now, data)
        await self.broker.record(room, {"t": kind, "ts": now, **data})

    async def _moderated(
        self, room: str, action: str, user: str, by: str, reason: str = ""
    ) -> None:
        data = {"action": action, "user": user, "by": by}
        if reason:
            data["reason"] = reason
        await self._log_event(room, "moderation", data)

    async def _resolve(self, state: RoomState, user: str) -> None:
        """Learn who ``user`` is when the user joined on another node."""
        if user not in state.known:
            who = await self.broker.find_member(state.id, user)
            if who is not None:
                state.known[user] = who

    def _on_event(self, room: str, envelope: Envelope) -> None:
        """The broker's sink: fan out, then act on events that change membership or timers."""
        kind = envelope.type
        if kind == STATE_EVENT:
            state = self.rooms.get(room)
            if state is not None:
                state.load_control(envelope.event["state"])
            return
        self.hub.deliver(room, envelope)
        self._recording_event(room, envelope)
        if kind == "poll.opened":
            closes_at = envelope.event["poll"].get("closes_at")
            if closes_at is not None:
                self._schedule_close(room, envelope.event["poll"]["id"], closes_at)
        elif kind == "draw.started":
            draw = envelope.event["draw"]
            self._schedule_draw(room, draw["id"], draw["closes_at"])
        elif kind == "pk.started":
            self.battles.schedule_end(room, Battle.from_wire(envelope.event["pk"]))
        elif kind == "pk.ended":
            self._cancel_timer((room, "pk:" + envelope.event["pk"]["id"]))
        elif kind == "poll.closed":
            self._cancel_timer((room, "close:" + envelope.event["poll"]["id"]))
        elif kind == "kicked":
            if envelope.users is None:
                targets = self.hub.conns(room)
            else:
                targets = list(self.hub.conns_of(room, envelope.users))
            ended = envelope.event.get("reason") == "room_ended"
            for conn in targets:
                self._spawn(self._leave_room(conn, room, ended=ended))
            if ended:
                self._forget_room(room)
                if self.media is not None:
                    self._spawn(self.media.room_ended(room))

    # -- recording (issue 12) --------------------------------------------------------

    async def _rec_start(
        self, conn: Conn, who: Identity, state: RoomState, req: m.RecStart
    ) -> dict[str, Any]:
        self._require_media()
        await self._change(state, lambda s: s.set_recording(True))
        return {}

    async def _rec_stop(
        self, conn: Conn, who: Identity, state: RoomState, req: m.RecStop
    ) -> dict[str, Any]:
        await self._change(state, lambda s: s.set_recording(False))
        return {}

    async def _rec_auto(
        self, conn: Conn, who: Identity, state: RoomState, req: m.RecAuto
    ) -> dict[str, Any]:
        if req.on:
            self._require_media()
        await self._change(state, lambda s: s.set_record_when_live(req.on))
        return {}

    async def operator_recording(
        self, room: str, on: bool | None, when_live: bool | None
    ) -> dict[str, bool]:
        """The HTTP API's switch: recording now, and the record-whenever-live setting."""
        state = await self._room(room)
        if on or when_live:
            self._require_media()
        if when_live is not None:
            await self._change(state, lambda s: s.set_record_when_live(when_live))
        if on is not None:
            await self._change(state, lambda s: s.set_recording(on))
        return {"recording": state.recording, "record_when_live": state.record_when_live}

    def _recording_event(self, room: str, envelope: Envelope) -> None:
        """Start/stop this node's recording of ``room``, follow publishers, note the timeline."""
        kind = envelope.type
        recording = self.recordings.get(room)
        if kind == "rec.started" and recording is None and self.media is not None:
            from media.record import RoomRecording  # media is optional: imported when used

            directory = Path(self.settings.recordings_dir)
            segment_s = self.settings.recording_segment_s
            recording = self.recordings[room] = RoomRecording(room, directory, segment_s=segment_s)
        elif kind == "rec.stopped" or envelope.event.get("reason") == "room_ended":
            if recording is not None:
                del self.recordings[room]
                recording.note(dict(envelope.event))
                self._spawn(recording.stop())
            return
        if recording is None:
            return
        if kind in TIMELINE_EVENTS and envelope.users is None:
            recording.note(dict(envelope.event))
        if kind in ("rec.started", "tracks"):
            self._recording_sync(room)

    def _recording_sync(self, room: str) -> None:
        """Record every publisher of ``room`` whose feeds are on this node, and only them."""
        recording = self.recordings.get(room)
        state = self.rooms.get(room)
        feeds_of = getattr(self.media, "feeds", None)
        if recording is None or state is None or feeds_of is None:
            return
        for user in state.publishers:
            feeds = feeds_of(room, user)
            if feeds:
                recording.add_publisher(user, feeds)
        for user in list(recording.recorders):
            if user not in state.publishers:
                self._spawn(recording.remove_publisher(user))

    def _coalesce(
        self, room: str, what: str, interval: float, emit: Callable[[], Awaitable[None]]
    ) -> None:
        key = (room, what)
        throttle = self._throttles.get(key)
        if throttle is None:
            throttle = self._throttles[key] = Throttle(interval)
        delay = throttle.changed(self.clock.mono())
        if delay is None:
            return
        if delay == 0:
            self._spawn(self._run_emit(room, what, interval, emit))
            return

        # Its own key: "draw:<id>" and "pk:<id>" also name the end timers of draws and battles.
        timer = (room, "flush:" + what)

        def flush() -> None:
            self._timers.pop(timer, None)
            if throttle.flush(self.clock.mono()):
                self._spawn(self._run_emit(room, what, interval, emit))

        self._timers[timer] = asyncio.get_running_loop().call_later(delay, flush)

    async def _run_emit(
        self, room: str, what: str, interval: float, emit: Callable[[], Awaitable[None]]
    ) -> None:
        """Send a coalesced event once this node holds the room-wide claim for it."""
        try:
            wait = await self.broker.claim(room, what, interval)
            if wait > 0:
                key = (room, "claim:" + what)
                if key not in self._timers:

                    def retry() -> None:
                        self._timers.pop(key, None)
                        self._spawn(self._run_emit(room, what, interval, emit))

                    self._timers[key] = asyncio.get_running_loop().call_later(wait, retry)
                return
            await emit()
        except NotFound:
            pass  # the room ended before the event went out
        except ClientError as exc:
            log.warning("coalesced event dropped room=%s what=%s: %s", room, what, exc.code)

    async def _heartbeat(self) -> None:
        """Refresh this node's presence report and notice counts changed by other nodes."""
        task = asyncio.current_task()
        while True:
            with contextlib.suppress(ClientError):
                await self.broker.heartbeat()
            if task is not None and task.cancelling():
                # The Redis client can swallow a cancellation that lands while it closes
                # its pool; this loop must still stop, or shutdown would wait forever.
                raise asyncio.CancelledError
            await asyncio.sleep(PRESENCE_HEARTBEAT_S)
            for room, state in list(self.rooms.items()):
                if not self.hub.conns(room):
                    continue
                try:
                    total = await self.broker.presence(room, state.member_count)
                except ClientError:
                    continue
                if total != self._presence_sent.get(room):
                    self._coalesce(
                        room, "presence", PRESENCE_INTERVAL_S, self._presence_emitter(room)
                    )
