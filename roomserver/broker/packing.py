"""Redis commands packed by hiredis, in C, instead of by redis-py's Python encoder.

redis-py's asyncio connection builds each command's bytes in Python: 8.9 µs for
one ``EVALSHA`` of the member script (15 arguments), against 1.2 µs for
``hiredis.pack_command``, which writes the same bytes (see
``tests/unit/test_redis_packing.py``). A join sends two such scripts and a chat
message one, so packing was about a twentieth of a join's CPU. hiredis is
already installed for reply parsing; its sync twin, redis-py's
``HiredisRespSerializer``, does the same for the blocking client.

Only arguments of the plain types are given to hiredis; anything else (``None``,
``bool``, an object) takes redis-py's own path, so its errors stay the same.
"""

from __future__ import annotations

from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)

_PLAIN = frozenset((bytes, str, int, float, memoryview))


class HiredisPacking(AbstractConnection):
    """A connection whose ``pack_command`` is ``hiredis.pack_command``."""

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        # As redis-py does: a command name may carry words ("CONFIG GET"), sent apart.
        if isinstance(first, str):
            args = (*first.encode().split(), *args[1:])
        elif isinstance(first, bytes) and b" " in first:
            args = (*first.split(), *args[1:])
        for arg in args:
            if type(arg) not in _PLAIN:
                return super().pack_command(*args)
        packed: bytes = hiredis.pack_command(args)
        return [packed]


class PackedConnection(HiredisPacking, Connection):
    """TCP (``redis://``)."""


class PackedSSLConnection(HiredisPacking, SSLConnection):
    """TLS (``rediss://``)."""


class PackedUnixConnection(HiredisPacking, UnixDomainSocketConnection):
    """A Unix socket (``unix://``)."""


_PACKED: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: PackedConnection,
    SSLConnection: PackedSSLConnection,
    UnixDomainSocketConnection: PackedUnixConnection,
}


def pack_with_hiredis(pool: aioredis.ConnectionPool) -> aioredis.ConnectionPool:
    """Make ``pool`` open connections that pack with hiredis; call before its first use."""
    packed = _PACKED.get(pool.connection_class)
    if packed is not None:
        pool.connection_class = packed
    return pool
