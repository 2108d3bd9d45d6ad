"""ScriptBatcher against a real redis-server: one pipeline per tick, each caller its own answer."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from roomserver.broker.batch import ScriptBatcher
from roomserver.broker.link import RedisLink, link_for
from tests.redis_server import RedisServer

INCR = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
FAIL_ON_NEGATIVE = (
    "if tonumber(ARGV[1]) < 0 then return redis.error_reply('negative') end return ARGV[1]"
)


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis.from_url(redis_server.url)
    await redis.flushdb()
    yield redis
    await redis.aclose()


@pytest.fixture(params=["redis-py", "link"])
async def batcher_for(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """Builds a batcher on a client, through redis-py's pipeline or the node's own link."""
    links: list[RedisLink] = []

    def build(client: aioredis.Redis) -> ScriptBatcher:
        if request.param == "redis-py":
            return ScriptBatcher(client)
        kwargs = client.connection_pool.connection_kwargs
        link = link_for(f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}")
        assert link is not None
        links.append(link)
        return ScriptBatcher(client, link)

    yield build
    for link in links:
        link.close()
    await asyncio.sleep(0)  # the aborted transports close on the next turn


async def test_calls_made_in_one_tick_go_in_one_pipeline_in_order(
    client: aioredis.Redis, batcher_for: Any
) -> None:
    batcher = batcher_for(client)
    incr = client.register_script(INCR)
    await incr(keys=["warm"], args=[1])  # loaded: the pipeline uses EVALSHA
    results = await asyncio.gather(*(batcher.call(incr, ["n"], [1]) for _ in range(50)))
    assert results == list(range(1, 51))  # run in the order called
    assert batcher.pipelines == 1 and batcher.calls == 50
    assert await batcher.call(incr, ["n"], [5]) == 55  # a later tick: a second pipeline
    assert batcher.pipelines == 2


async def test_each_caller_gets_its_own_error(client: aioredis.Redis, batcher_for: Any) -> None:
    batcher = batcher_for(client)
    script = client.register_script(FAIL_ON_NEGATIVE)
    await script(keys=["k"], args=[1])
    outcomes = await asyncio.gather(
        batcher.call(script, ["k"], [1]),
        batcher.call(script, ["k"], [-1]),
        batcher.call(script, ["k"], [3]),
        return_exceptions=True,
    )
    assert outcomes[0] == b"1" and outcomes[2] == b"3"
    assert isinstance(outcomes[1], ResponseError) and "negative" in str(outcomes[1])


async def test_a_script_redis_does_not_know_is_loaded_and_run(
    client: aioredis.Redis, batcher_for: Any
) -> None:
    batcher = batcher_for(client)
    incr = client.register_script(INCR)
    await client.script_flush()  # as after a Redis restart
    both = await asyncio.gather(batcher.call(incr, ["m"], [2]), batcher.call(incr, ["m"], [3]))
    assert both == [2, 5]  # each loaded and run alone, in the order called
    assert await client.get("m") == b"5"
    assert await batcher.call(incr, ["m"], [1]) == 6  # loaded now: batched again


async def test_a_cancelled_caller_does_not_disturb_the_others(
    client: aioredis.Redis, batcher_for: Any
) -> None:
    batcher = batcher_for(client)
    incr = client.register_script(INCR)
    await incr(keys=["c"], args=[0])
    first = batcher.call(incr, ["c"], [1])
    second = batcher.call(incr, ["c"], [1])
    first.cancel()
    assert await second == 2  # the first still ran: it was already queued
    await batcher.close()


async def test_an_unreachable_redis_fails_every_call_of_the_pipeline(batcher_for: Any) -> None:
    redis = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    batcher = batcher_for(redis)
    script = redis.register_script(INCR)
    outcomes = await asyncio.gather(
        *(batcher.call(script, ["k"], [1]) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(o, (RedisConnectionError, OSError)) for o in outcomes)
    await redis.aclose()


async def test_a_publish_goes_in_the_same_pipeline_in_call_order(
    client: aioredis.Redis, batcher_for: Any
) -> None:
    batcher = batcher_for(client)
    incr = client.register_script(INCR)
    await incr(keys=["p"], args=[0])
    pubsub = client.pubsub()
    await pubsub.subscribe("room-ch")
    assert (await pubsub.get_message(timeout=1.0))["type"] == "subscribe"  # type: ignore[index]
    outcomes = await asyncio.gather(
        batcher.call(incr, ["p"], [1]),
        batcher.command("PUBLISH", "room-ch", b"first"),
        batcher.call(incr, ["p"], [1]),
        batcher.command("PUBLISH", "room-ch", b"second"),
    )
    assert outcomes == [1, 1, 2, 1]  # a PUBLISH answers how many subscribers got it
    assert batcher.pipelines == 1 and batcher.calls == 4
    received = []
    for _ in range(20):  # bounded: both messages are already on their way
        message = await pubsub.get_message(timeout=0.5)
        if message is not None and message["type"] == "message":
            received.append(message["data"])
        if len(received) == 2:
            break
    assert received == [b"first", b"second"]
    await pubsub.aclose()


async def test_a_started_redis_broker_opens_its_warm_connections(redis_server: RedisServer) -> None:
    from roomserver.broker.redis import WARM_CONNECTIONS, RedisBroker

    broker = RedisBroker(redis_server.url, "warm-node", prefix="warm")
    pool = broker._shards[0].client.connection_pool
    assert len(pool._available_connections) == 0  # type: ignore[attr-defined]
    await broker.start()
    try:
        for _ in range(100):  # bounded: opening 16 connections takes milliseconds
            if len(pool._available_connections) >= WARM_CONNECTIONS:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.02)
        idle = [c for c in pool._available_connections if c.is_connected]  # type: ignore[attr-defined]
        assert len(idle) == WARM_CONNECTIONS
    finally:
        await broker.close()


async def test_a_first_join_registers_and_reads_its_snapshot_in_one_pipeline(
    redis_server: RedisServer,
) -> None:
    """One round trip per join: the member script and the join snapshot share a pipeline,
    in that order, so each snapshot counts the member it is for."""
    from roomserver.auth import mint_token
    from roomserver.broker.redis import RedisBroker
    from roomserver.hub import Conn
    from roomserver.node import Node
    from roomserver.room import RoomInfo
    from signaling import messages as m
    from signaling.codec import JSON_CODEC
    from tests.harness import make_settings

    broker = RedisBroker(redis_server.url, "join-node", prefix="onetrip")
    node = Node(make_settings(), broker)
    await node.start()
    try:
        await broker.create_room(RoomInfo("r1", "Launch"))
        batcher = broker._shards[0].batcher
        pipelines: list[list[Any]] = []
        send = batcher._send

        async def recording(batch: Any) -> None:
            pipelines.append([script.sha if script else args[0] for script, _, args, _ in batch])
            await send(batch)

        batcher._send = recording  # type: ignore[method-assign]
        for count in (1, 2, 3):
            pipelines.clear()
            conn = Conn(JSON_CODEC, peer="127.0.0.1")
            token = mint_token(
                node.settings.secret, room="r1", user=f"u{count}", name="U", role="member"
            )
            await node.dispatch(conn, m.Join(id=1, room="r1", token=token))
            (answer,) = [a for a in map(conn.codec.decode, conn._outbox) if a.get("id") == 1]
            assert answer["t"] == "ok" and answer["room"]["members"] == count
            # The presence task of the join before may put its own calls in a pipeline
            # of this loop (on a busy machine): look for the one carrying the snapshot.
            (joined,) = [p for p in pipelines if broker._join_view.sha in p]
            assert broker._member.sha in joined
            assert joined.index(broker._member.sha) < joined.index(broker._join_view.sha)
    finally:
        await node.close()
        await broker.close()


async def test_the_link_authenticates_and_selects_its_database(
    client: aioredis.Redis, redis_server: RedisServer
) -> None:
    await client.acl_setuser(
        "linker", enabled=True, passwords=["+s3cret"], keys=["*"], commands=["+@all"]
    )
    try:
        port = redis_server.url.rsplit(":", 1)[1].split("/")[0]
        link = link_for(f"redis://linker:s3cret@127.0.0.1:{port}/3")
        assert link is not None
        replies = await link.replies(await link.send([("SET", "in3", "yes"), ("ACL", "WHOAMI")]))
        assert replies == [b"OK", b"linker"]
        other = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/3")
        assert await other.get("in3") == b"yes" and await client.get("in3") is None
        await other.delete("in3")
        await other.aclose()
        link.close()
        refused = link_for(f"redis://linker:wrong@127.0.0.1:{port}/0")
        assert refused is not None
        with pytest.raises(RedisConnectionError):
            await refused.send([("PING",)])
    finally:
        await client.acl_deluser("linker")


async def test_a_killed_link_fails_what_is_pending_and_connects_again(
    client: aioredis.Redis, redis_server: RedisServer
) -> None:
    link = link_for(redis_server.url)
    assert link is not None
    (link_id,) = await link.replies(await link.send([("CLIENT", "ID")]))
    waiting = await link.send([("BLPOP", "nothing-comes", 0)])  # pending until the kill
    for _ in range(100):  # bounded: Redis shows the link blocked within milliseconds
        if b"cmd=blpop" in await client.execute_command("CLIENT", "LIST", "ID", link_id):
            break
        await asyncio.sleep(0.01)
    await client.execute_command("CLIENT", "KILL", "ID", link_id)
    with pytest.raises(RedisConnectionError):
        await link.replies(waiting)
    assert await link.replies(await link.send([("PING",), ("INCR", "after")])) == [b"PONG", 1]
    assert link.connects == 2
    link.close()


async def test_a_silent_server_times_out_and_drops_the_link(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not Redis: a socket that never answers (the real-Redis paths are tested above)."""
    import roomserver.broker.link as link_module

    monkeypatch.setattr(link_module, "REPLY_TIMEOUT_S", 0.2)
    accepted: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda r, w: accepted.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        link = link_for(f"redis://127.0.0.1:{port}/0")
        assert link is not None
        futures = await link.send([("PING",), ("PING",)])
        with pytest.raises(RedisTimeoutError):
            await link.replies(futures)
        assert all(f.done() for f in futures)
        await asyncio.sleep(0)
        assert link._protocol is not None and link._protocol.lost
        link.close()
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("url", "linked"),
    [
        ("redis://127.0.0.1:6399/0", True),
        ("redis://:pw@127.0.0.1:6399/2", True),
        ("unix:///tmp/redis.sock?db=1", True),
        ("rediss://127.0.0.1:6399/0", False),  # TLS: redis-py's pipeline
        ("redis://127.0.0.1:6399/0?socket_timeout=1", False),  # options only redis-py reads
    ],
)
def test_which_urls_get_a_link(url: str, linked: bool) -> None:
    assert (link_for(url) is not None) is linked


async def test_rediscost_measures_both_ways(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from loadtest.rediscost import run

    await run(redis_server.url, rounds=50, repeat=1)
    line = capsys.readouterr().out.strip()
    assert line.startswith("run 1: redis-py pipeline ") and " µs (" in line, line
    costs = [float(n) for n in re.findall(r"([\d.]+) µs", line)]
    ratio = re.search(r"\(([\d.]+)x\)", line)
    assert len(costs) == 2 and all(c > 0 for c in costs) and ratio is not None, line
    assert float(ratio.group(1)) == pytest.approx(costs[0] / costs[1], abs=0.01)
