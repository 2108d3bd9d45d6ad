"""The CPU a node spends per Redis round trip of two scripts: redis-py's pipeline or the link.

At an even arrival rate a join sends its two scripts (member, snapshot) alone,
in one pipeline, and a chat message one script: what the node's side of one such
round trip costs is paid per join or message. This sends the same two
``EVALSHA`` calls ``rounds`` times, one round trip after the other, through a
redis-py pipeline on a pool like the broker's (commands packed by hiredis) and
through :class:`~roomserver.broker.link.RedisLink`, alternating, and prints the
process CPU (user + system) per round trip of each. Redis's own CPU is not in it.

    python -m loadtest.rediscost --redis redis://127.0.0.1:6379/0 [--rounds 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import redis.asyncio as aioredis

from roomserver.broker.link import link_for
from roomserver.broker.packing import pack_with_hiredis
from roomserver.broker.redis import POOL_SIZE, POOL_WAIT_S

SCRIPT = "return {KEYS[1], ARGV[1]}"


async def through_redis_py(url: str, sha: str, rounds: int) -> float:
    """CPU microseconds per round trip through a redis-py pipeline."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=POOL_SIZE, timeout=POOL_WAIT_S, socket_timeout=3.0
    )
    client = aioredis.Redis.from_pool(pack_with_hiredis(pool))
    try:

        async def once() -> None:
            pipe = client.pipeline(transaction=False)
            pipe.evalsha(sha, 1, "rediscost:a", "1")
            pipe.evalsha(sha, 1, "rediscost:b", "2")
            await pipe.execute(raise_on_error=False)

        return await _timed(once, rounds)
    finally:
        await client.aclose()


async def through_link(url: str, sha: str, rounds: int) -> float:
    """CPU microseconds per round trip through the broker's link."""
    link = link_for(url)
    if link is None:
        raise SystemExit(f"{url}: the link serves plain redis:// and unix:// URLs only")
    commands = [("EVALSHA", sha, 1, "rediscost:a", "1"), ("EVALSHA", sha, 1, "rediscost:b", "2")]
    try:

        async def once() -> None:
            await link.replies(await link.send(commands))

        return await _timed(once, rounds)
    finally:
        link.close()


async def _timed(once: object, rounds: int) -> float:
    assert callable(once)
    for _ in range(200):  # connections open, code warm
        await once()
    started = time.process_time()
    for _ in range(rounds):
        await once()
    return (time.process_time() - started) / rounds * 1e6


async def run(url: str, rounds: int, repeat: int) -> None:
    client = aioredis.Redis.from_url(url)
    sha = await client.script_load(SCRIPT)
    await client.aclose()
    for n in range(1, repeat + 1):
        pipeline = await through_redis_py(url, sha, rounds)
        link = await through_link(url, sha, rounds)
        print(
            f"run {n}: redis-py pipeline {pipeline:.1f} µs CPU per round trip of 2 scripts; "
            f"link {link:.1f} µs ({pipeline / link:.2f}x)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", required=True, help="a Redis URL (its server is only read)")
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(run(args.redis, args.rounds, args.repeat))


if __name__ == "__main__":
    main()
