from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.harness import Server, make_settings, running_server
from tests.redis_server import RedisServer

_prefixes = itertools.count(1)


@pytest.fixture(params=["memory", "redis", "redis-sharded"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    """A node on the memory broker, then the same tests on one Redis and on three shards."""
    if request.param == "memory":
        async with running_server() as srv:
            yield srv
        return
    if request.param == "redis":
        url = request.getfixturevalue("redis_server").url
    else:
        url = ",".join(s.url for s in request.getfixturevalue("redis_shards"))
    settings = make_settings(redis=url, redis_prefix=f"it{next(_prefixes)}")
    async with running_server(settings) as srv:
        yield srv


@pytest.fixture(scope="session")
def redis_shards() -> Iterator[list[RedisServer]]:
    """Three redis-servers for the sharded broker."""
    shards = [RedisServer() for _ in range(3)]
    try:
        for shard in shards:
            shard.start()
        yield shards
    finally:
        for shard in shards:
            shard.cleanup()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session; tests keep apart by key prefix."""
    instance = RedisServer()
    instance.start()
    try:
        yield instance
    finally:
        instance.cleanup()
