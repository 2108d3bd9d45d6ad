"""The broker contract, run on every implementation: memory and a real Redis."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from roomserver.broker.base import Broker
from roomserver.broker.memory import MemoryBroker
from roomserver.broker.redis import RedisBroker, shard_index
from roomserver.errors import AlreadyVoted, BadRequest, NotFound, PollClosed
from roomserver.events import Envelope, to_all, to_users
from roomserver.ids import ChatDraft, Identity, Role, UserId
from roomserver.room import RoomInfo, RoomState
from tests.redis_server import RedisServer

_prefixes = itertools.count(1)


class Recorder:
    """A node's sink: every envelope delivered, per room, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Envelope]] = []

    def __call__(self, room: str, envelope: Envelope) -> None:
        self.events.append((room, envelope))

    def of(self, t: str) -> list[dict[str, object]]:
        return [e.event for _, e in self.events if e.type == t]

    async def wait_for(self, t: str, count: int, timeout: float = 5.0) -> list[dict[str, object]]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.of(t)) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{len(self.of(t))}/{count} {t} events")
            await asyncio.sleep(0.01)
        return self.of(t)


def make_broker(kind: str, redis_url: str, history: int, node: str = "n1") -> Broker:
    if kind == "memory":
        return MemoryBroker(node, history)
    return RedisBroker(redis_url, node, prefix=f"t{next(_prefixes)}", history_size=history)


@pytest.fixture(params=["memory", "redis", "redis-sharded"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def broker_url(kind: str, request: pytest.FixtureRequest) -> str:
    """The Redis URL(s) for ``kind``, starting the servers it needs; empty for memory."""
    if kind == "redis":
        url: str = request.getfixturevalue("redis_server").url
        return url
    if kind == "redis-sharded":
        return ",".join(s.url for s in request.getfixturevalue("redis_shards"))
    return ""


@pytest.fixture
async def broker(
    kind: str, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Broker, Recorder]]:
    b = make_broker(kind, broker_url(kind, request), history=20)
    recorder = Recorder()
    b.attach(recorder)
    await b.start()
    await b.create_room(RoomInfo("r", "Room", "hi", 1))
    await b.subscribe("r")
    try:
        yield b, recorder
    finally:
        await b.close()


def draft(user: str, cid: str, text: str = "x") -> ChatDraft:
    return ChatDraft(user, user.upper(), "member", text, cid)


async def test_rooms(broker: tuple[Broker, Recorder]) -> None:
    b, _ = broker
    assert await b.create_room(RoomInfo("other", "T", None, 5)) is True
    assert await b.create_room(RoomInfo("other", "T2", None, 6)) is False
    info = await b.get_room("other")
    assert info is not None and info.title == "T" and info.welcome is None
    assert await b.delete_room("other") is True
    assert await b.get_room("other") is None
    assert await b.delete_room("other") is False


async def test_chat_is_sequenced_published_in_order_and_idempotent(
    broker: tuple[Broker, Recorder],
) -> None:
    b, rec = broker
    results = await asyncio.gather(
        *(b.append_chat("r", draft(f"u{i}", "c"), 100 + i) for i in range(10))
    )
    assert sorted(m.seq for m, new in results) == list(range(1, 11))
    assert all(new for _, new in results)
    first, _ = results[0]
    again, new = await b.append_chat("r", draft("u0", "c", "other text"), 999)
    assert new is False and (again.seq, again.ts) == (first.seq, first.ts)
    events = await rec.wait_for("chat", 10)
    await asyncio.sleep(0.05)
    assert [e["seq"] for e in rec.of("chat")] == list(range(1, 11))
    assert events[0]["room"] == "r"
    assert await b.latest_seq("r") == 10


async def test_chat_in_a_missing_room_is_refused_and_writes_nothing(
    broker: tuple[Broker, Recorder],
) -> None:
    b, _ = broker
    with pytest.raises(NotFound):
        await b.append_chat("gone", draft("u1", "c1"), 100)
    assert await b.create_room(RoomInfo("gone", "T", None, 5)) is True
    # the refused message took no seq and no cid: the same cid is new now
    message, new = await b.append_chat("gone", draft("u1", "c1"), 101)
    assert new is True and message.seq == 1
    assert await b.delete_room("gone") is True
    with pytest.raises(NotFound):
        await b.append_chat("gone", draft("u1", "c2"), 102)


async def test_history_reads_and_gaps(broker: tuple[Broker, Recorder]) -> None:
    b, _ = broker
    for i in range(1, 31):
        await b.append_chat("r", draft("u", str(i), str(i)), i)
    latest = await b.chat_latest("r", 5)
    assert [m.seq for m in latest] == [26, 27, 28, 29, 30]
    since, gap = await b.chat_since("r", 25, 500)
    assert [m.seq for m in since] == [26, 27, 28, 29, 30] and gap is False
    dropped, gap = await b.chat_since("r", 2, 500)
    assert [m.seq for m in dropped] == list(range(11, 31)) and gap is True
    capped, gap = await b.chat_since("r", 10, 5)
    assert [m.seq for m in capped] == [11, 12, 13, 14, 15] and gap is True
    before, gap = await b.chat_before("r", 20, 3)
    assert [m.seq for m in before] == [17, 18, 19] and gap is False
    short, gap = await b.chat_before("r", 13, 5)
    assert [m.seq for m in short] == [11, 12] and gap is True
    after, gap = await b.chat_after("r", 27, 10)
    assert [m.seq for m in after] == [28, 29, 30] and gap is False
    lost, gap = await b.chat_after("r", 3, 2)
    assert [m.seq for m in lost] == [11, 12] and gap is True


async def test_deleted_messages_vanish_without_a_gap(broker: tuple[Broker, Recorder]) -> None:
    b, _ = broker
    for i in range(1, 6):
        await b.append_chat("r", draft("u", str(i)), i)
    assert await b.delete_chat("r", 3) is True
    assert await b.delete_chat("r", 3) is False
    assert await b.delete_chat("r", 99) is False
    since, gap = await b.chat_since("r", 0, 500)
    assert [m.seq for m in since] == [1, 2, 4, 5] and gap is False
    assert [m.seq for m in await b.chat_latest("r", 3)] == [2, 4, 5]
    before, _ = await b.chat_before("r", 5, 2)
    assert [m.seq for m in before] == [2, 4]


async def test_read_marks(broker: tuple[Broker, Recorder]) -> None:
    b, _ = broker
    await b.mark_read("r", "a", 5)
    await b.mark_read("r", "b", 3)
    await b.mark_read("r", "b", 1)
    assert await b.readers("r", 3) == 2
    assert await b.readers("r", 4) == 1


async def test_one_vote_per_user_even_when_concurrent(broker: tuple[Broker, Recorder]) -> None:
    b, _ = broker
    poll = await b.create_poll("r", "p1", "Q?", ["a", "b", "c"], 1000, None)
    assert poll["options"] == [{"text": t, "votes": 0} for t in "abc"] and poll["open"] is True
    outcomes = await asyncio.gather(
        *(b.vote("r", "p1", "same", i % 3) for i in range(30)), return_exceptions=True
    )
    accepted = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(accepted) == 1
    assert all(isinstance(o, AlreadyVoted) for o in outcomes if isinstance(o, BaseException))
    await b.vote("r", "p1", "other", 2)
    votes, total = await b.poll_tally("r", "p1")
    assert total == 2 and sum(votes) == 2
    with pytest.raises(BadRequest):
        await b.vote("r", "p1", "third", 3)
    with pytest.raises(NotFound):
        await b.vote("r", "nope", "third", 0)
    final, closed_now = await b.close_poll("r", "p1", 2000)
    assert closed_now is True and final["open"] is False and final["total"] == 2
    again, closed_now = await b.close_poll("r", "p1", 3000)
    assert closed_now is False and again["total"] == 2
    with pytest.raises(PollClosed):
        await b.vote("r", "p1", "late", 0)
    mine = await b.polls("r", "other", 2500)
    assert mine[0]["my_vote"] == 2


async def test_closed_polls_leave_the_snapshot_after_ten_minutes(
    broker: tuple[Broker, Recorder],
) -> None:
    b, _ = broker
    await b.create_poll("r", "old", "Q?", ["a", "b"], 1000, None)
    await b.create_poll("r", "new", "Q?", ["a", "b"], 1000, 60)
    await b.close_poll("r", "old", 2000)
    visible = await b.polls("r", None, 2000 + 599_000)
    assert [p["id"] for p in visible] == ["old", "new"]
    assert visible[1]["closes_at"] == 61_000
    later = await b.polls("r", None, 2000 + 600_000)
    assert [p["id"] for p in later] == ["new"]


async def test_join_view_is_the_separate_reads_in_one(broker: tuple[Broker, Recorder]) -> None:
    b, _ = broker
    empty = await b.join_view("r", "ann", 5, 0, 1000)
    assert (empty.seq, empty.history, empty.members, empty.likes, empty.polls) == (0, [], 0, 0, [])
    for i in range(1, 9):
        await b.append_chat("r", draft("u", str(i)), i)
    await b.delete_chat("r", 7)
    await b.add_likes("r", 4)
    await b.member_joined("r", Identity(UserId("ann"), "Ann", Role.MEMBER), 1_000)
    await b.create_poll("r", "p1", "Q?", ["a", "b"], 1000, None)
    await b.create_poll("r", "p2", "Q?", ["a", "b"], 1000, None)
    await b.vote("r", "p2", "ann", 1)
    await b.close_poll("r", "p1", 2000)
    view = await b.join_view("r", "ann", 5, 1, 3000)
    assert view.seq == await b.latest_seq("r") == 8
    assert [m.seq for m in view.history] == [3, 4, 5, 6, 8]
    assert view.history == await b.chat_latest("r", 5)
    assert view.members == await b.presence("r", 1) == 1
    assert view.likes == 4
    assert view.polls == await b.polls("r", "ann", 3000)
    assert [p["id"] for p in view.polls] == ["p1", "p2"] and view.polls[1]["my_vote"] == 1
    later = await b.join_view("r", "bob", 5, 1, 2000 + 600_000)
    assert [p["id"] for p in later.polls] == ["p2"]  # the closed poll aged out
    assert later.polls == await b.polls("r", "bob", 2000 + 600_000)


async def test_likes_add_up(broker: tuple[Broker, Recorder]) -> None:
    b, _ = broker
    totals = await asyncio.gather(*(b.add_likes("r", 3) for _ in range(10)))
    assert max(totals) == 30 and await b.likes("r") == 30


async def test_control_changes_are_published_and_kept(broker: tuple[Broker, Recorder]) -> None:
    b, rec = broker
    state = RoomState(RoomInfo("r", "Room"), max_cohosts=2)
    host = Identity(UserId("h"), "H", Role.HOST)
    state.admit(host)
    state.admit(Identity(UserId("m"), "M", Role.MEMBER))
    envelopes = await b.update_control(state, lambda s: s.invite(host, "m"))
    assert [e.type for e in envelopes] == ["cohost.invited"]
    await b.update_control(state, lambda s: s.pin({"id": "p", "title": "T"}))
    (invited,) = await rec.wait_for("cohost.invited", 1)
    assert invited["by"] == "h"
    await rec.wait_for("product.pinned", 1)
    fresh = RoomState(RoomInfo("r", "Room"))
    await b.refresh_control(fresh)
    if isinstance(b, RedisBroker):
        assert fresh.invited == {"m": "h"} and fresh.pinned == {"id": "p", "title": "T"}


async def test_members_and_presence(broker: tuple[Broker, Recorder]) -> None:
    b, _ = broker
    ann = Identity(UserId("ann"), "Ann", Role.MODERATOR)
    await b.member_joined("r", ann, 1_000)
    assert await b.find_member("r", "ann") == ann
    assert await b.find_member("r", "nobody") is None
    assert await b.presence("r", 1) == 1
    await b.member_left("r", "ann", 3_000)
    assert await b.presence("r", 0) == 0
    fold = (await b.counters("r")).presence
    assert fold.peak == 1 and fold.last_n == 0
    assert fold.average(3_000) == 1 * 2_000 / 2_000 and fold.average(5_000) == 0.5


async def test_publish_reaches_the_sink_with_audience(broker: tuple[Broker, Recorder]) -> None:
    b, rec = broker
    await b.publish("r", to_all({"t": "likes", "room": "r", "total": 1}))
    await b.publish("r", to_users({"t": "muted", "room": "r", "until": 5}, "u1"))
    await rec.wait_for("muted", 1)
    muted = next(e for _, e in rec.events if e.type == "muted")
    assert muted.users == frozenset({"u1"})
    assert [e.type for _, e in rec.events] == ["likes", "muted"]


async def test_an_event_published_as_soon_as_subscribe_returns_is_delivered(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """A node subscribes when a room's first member joins; what is published from then
    on must reach it, also on a node that has only just started (its subscription to
    Redis still opening) and on one already running."""
    url = broker_url(kind, request)
    for attempt in range(5):
        b = make_broker(kind, url, history=20)
        rec = Recorder()
        b.attach(rec)
        await b.start()
        try:
            rooms = [f"fresh{attempt}-{n}" for n in range(4)]
            for room in rooms:
                await b.create_room(RoomInfo(room, "Fresh"))
                await b.subscribe(room)
                await b.publish(room, to_all({"t": "likes", "room": room, "total": 1}))
            async with asyncio.timeout(5):
                while {r for r, e in rec.events if e.type == "likes"} != set(rooms):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
        finally:
            await b.close()


async def test_unsubscribed_rooms_are_not_delivered(broker: tuple[Broker, Recorder]) -> None:
    b, rec = broker
    await b.unsubscribe("r")
    await b.append_chat("r", draft("u", "1"), 1)
    await asyncio.sleep(0.1)
    assert rec.of("chat") == []


async def test_redis_two_nodes_see_one_order(redis_server: RedisServer) -> None:
    """Two brokers on one Redis: both deliver every chat message once, in seq order."""
    prefix = f"two{next(_prefixes)}"
    nodes = [RedisBroker(redis_server.url, f"n{i}", prefix=prefix) for i in range(2)]
    recorders = [Recorder(), Recorder()]
    for node, rec in zip(nodes, recorders, strict=True):
        node.attach(rec)
        await node.start()
    try:
        await nodes[0].create_room(RoomInfo("shared", "S"))
        for node in nodes:
            await node.subscribe("shared")
        await asyncio.gather(
            *(nodes[i % 2].append_chat("shared", draft(f"u{i}", str(i)), i) for i in range(100))
        )
        for rec in recorders:
            events = await rec.wait_for("chat", 100)
            assert [e["seq"] for e in events] == list(range(1, 101))
        # A retry to the other node returns the first result.
        first, _ = await nodes[0].append_chat("shared", draft("x", "k"), 1)
        again, new = await nodes[1].append_chat("shared", draft("x", "k"), 2)
        assert new is False and again.seq == first.seq
    finally:
        for node in nodes:
            await node.close()


async def test_redis_a_user_on_two_nodes_counts_once(redis_server: RedisServer) -> None:
    """Presence counts distinct users, also after a node dies and when the counts are lost."""
    prefix = f"pr{next(_prefixes)}"
    nodes = [RedisBroker(redis_server.url, f"n{i}", prefix=prefix) for i in range(2)]
    for node in nodes:
        await node.start()
    raw = aioredis.from_url(redis_server.url)
    try:
        await nodes[0].create_room(RoomInfo("p", "P"))
        ann, bob, cat = (Identity(UserId(u), u.title(), Role.MEMBER) for u in ("ann", "bob", "cat"))
        await nodes[0].member_joined("p", ann, 1_000)
        await nodes[0].member_joined("p", cat, 1_000)
        await nodes[1].member_joined("p", ann, 1_000)  # a second tab, on the other node
        await nodes[1].member_joined("p", bob, 1_000)
        assert await nodes[0].presence("p", 2) == await nodes[1].presence("p", 2) == 3
        assert (await nodes[1].join_view("p", "bob", 5, 2, 1_500)).members == 3
        await nodes[0].member_left("p", "ann", 2_000)  # ann is still on n1
        assert await nodes[0].presence("p", 1) == 3
        assert (await nodes[0].counters("p")).presence.peak == 3
        # The counts, lost (or never kept, by an older node), are rebuilt.
        await raw.delete(f"{prefix}:{{p}}:present")
        assert await nodes[1].presence("p", 2) == 3
        # n1 dies: its users hash expires, and its users (ann, bob) drop out.
        await raw.delete(f"{prefix}:{{p}}:users:n1")
        assert await nodes[0].presence("p", 1) == 1
        await nodes[0].member_left("p", "cat", 3_000)
        assert await nodes[0].presence("p", 0) == 0
        assert await nodes[0].present_users("p") == []
        # A node whose last user leaves is no longer one of the room's nodes.
        assert await raw.smembers(f"{prefix}:{{p}}:nodes") == set()
    finally:
        await raw.aclose()
        for node in nodes:
            await node.close()


async def test_sharded_rooms_spread_and_stay_on_their_shard(
    redis_shards: list[RedisServer],
) -> None:
    """With three Redis shards, rooms spread over all of them and each room's chat is whole."""
    urls = ",".join(s.url for s in redis_shards)
    prefix = f"sh{next(_prefixes)}"
    nodes = [RedisBroker(urls, f"n{i}", prefix=prefix) for i in range(2)]
    recorders = [Recorder(), Recorder()]
    for node, rec in zip(nodes, recorders, strict=True):
        node.attach(rec)
        await node.start()
    rooms = [f"room-{i}" for i in range(12)]
    try:
        for room in rooms:
            await nodes[0].create_room(RoomInfo(room, room))
            for node in nodes:
                await node.subscribe(room)
        used = {shard_index(room, 3) for room in rooms}
        assert used == {0, 1, 2}
        await asyncio.gather(
            *(
                nodes[i % 2].append_chat(room, draft(f"u{i}", f"{room}-{i}"), i)
                for room in rooms
                for i in range(10)
            )
        )
        for rec in recorders:
            await rec.wait_for("chat", 120)
            for room in rooms:
                seqs = [e.event["seq"] for r, e in rec.events if r == room and e.type == "chat"]
                assert seqs == list(range(1, 11)), room
        for room in rooms:
            client = nodes[0]._shards[shard_index(room, 3)].client
            assert await client.exists(f"{prefix}:{{{room}}}:info") == 1
            others = [s.client for s in nodes[0]._shards if s.client is not client]
            for other in others:
                assert await other.exists(f"{prefix}:{{{room}}}:info") == 0
    finally:
        for node in nodes:
            await node.close()
