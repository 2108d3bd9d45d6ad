from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.harness import Server, make_settings, running_server
from tests.redis_server import RedisServer

_prefixes = itertools.count(1)


@pytest.fixture(params=["memory", "redis"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    """A node on the memory broker, and the same tests again on a real Redis."""
    if request.param == "memory":
        async with running_server() as srv:
            yield srv
        return
    redis = request.getfixturevalue("redis_server")
    settings = make_settings(redis=redis.url, redis_prefix=f"it{next(_prefixes)}")
    async with running_server(settings) as srv:
        yield srv


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session; tests keep apart by key prefix."""
    instance = RedisServer()
    instance.start()
    try:
        yield instance
    finally:
        instance.cleanup()
