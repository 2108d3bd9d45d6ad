"""hiredis packs every command into the very bytes redis-py would write."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from roomserver.broker.packing import (
    PackedConnection,
    PackedSSLConnection,
    PackedUnixConnection,
    pack_with_hiredis,
)

COMMANDS: list[tuple[Any, ...]] = [
    ("EVALSHA", "a" * 40, 2, "p:{r}:users:n1", "p:{r}:nodes", "1", "ann", b"\x92\xa3Ann", 17, 10),
    ("PUBLISH", "p:{r}:ch", b"C12 " + bytes(range(256))),
    ("CLIENT SETNAME", "node-1"),  # a name of two words: sent as two
    (b"CONFIG GET", "maxmemory"),
    ("SET", "k", "h\u00e9llo \u2603 \U0001f600", "EX", 10),
    ("ZADD", "z", -3, "m", 1.5, "n", 1e20, "o", 0.1, "p", 2**70, "q"),
    ("SET", "big", b"x" * 200_000),
    ("SET", "view", memoryview(b"0123456789")[2:7]),
    ("PING",),
]


@pytest.mark.parametrize("args", COMMANDS, ids=[str(c[0]) for c in COMMANDS])
def test_the_bytes_are_redis_pys(args: tuple[Any, ...]) -> None:
    ours = PackedConnection().pack_command(*args)
    theirs = Connection().pack_command(*args)
    assert b"".join(ours) == b"".join(bytes(chunk) for chunk in theirs)
    assert len(ours) == 1  # one buffer: hiredis packed it


@pytest.mark.parametrize("bad", [None, True, object(), {"a": 1}])
def test_other_types_fail_as_redis_py_fails(bad: Any) -> None:
    with pytest.raises(DataError):
        Connection().pack_command("SET", "k", bad)
    with pytest.raises(DataError):
        PackedConnection().pack_command("SET", "k", bad)


@pytest.mark.parametrize(
    ("url", "packed"),
    [
        ("redis://127.0.0.1:6399/0", PackedConnection),
        ("rediss://127.0.0.1:6399/0", PackedSSLConnection),
        ("unix:///tmp/redis.sock", PackedUnixConnection),
    ],
)
def test_a_pool_of_any_scheme_opens_packed_connections(url: str, packed: type) -> None:
    pool = aioredis.ConnectionPool.from_url(url)
    assert pack_with_hiredis(pool) is pool and pool.connection_class is packed
    assert isinstance(pool.make_connection(), packed)
