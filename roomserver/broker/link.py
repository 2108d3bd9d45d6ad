"""One pipelined connection to Redis for the hot scripts, without redis-py's layers.

A redis-py pipeline of two scripts costs its caller 128-137 µs of CPU per round
trip (pool checkout, a timeout context, per-command bookkeeping, response
callbacks); the same bytes written to an asyncio protocol and read back with
hiredis's reader cost 55 µs (``python -m loadtest.rediscost``). At an even
arrival rate a join or a chat message pays one round trip alone, so that
difference is a tenth of its CPU.

:class:`RedisLink` is that connection: commands go out packed by hiredis, in the
order sent, and each gets a future resolved by its own reply, in order (Redis
answers a connection's commands in order). Error replies resolve to redis-py's
exception classes (``NoScriptError`` for ``NOSCRIPT``, else ``ResponseError``),
so callers handle them as before. A lost connection fails every pending command
with redis-py's ``ConnectionError``, and the next send connects again; a reply
that takes longer than :data:`REPLY_TIMEOUT_S` fails the pending commands with
``TimeoutError`` and drops the connection, as redis-py's socket timeout does.

Only plain ``redis://`` and ``unix://`` URLs are served (with a password, a user
and a database); for anything else (TLS) :func:`link_for` returns None and the
batcher keeps redis-py's pipeline.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.asyncio.connection import UnixDomainSocketConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

CONNECT_TIMEOUT_S = 1.0
#: As the pooled clients' ``socket_timeout``: Redis that answers nothing for this
#: long is taken for gone.
REPLY_TIMEOUT_S = 3.0


def _reply_error(message: str) -> ResponseError:
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return ResponseError(message)


class _Protocol(asyncio.Protocol):
    """Feeds replies to the pending futures, first in, first answered."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._reader = hiredis.Reader()
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        pending = self.pending
        while True:
            reply = reader.gets()
            if reply is False:
                return
            if not pending:  # a reply nobody asked for: the stream is out of step
                self.fail(RedisConnectionError("unexpected reply from Redis"))
                return
            future = pending.popleft()
            if future.done():  # its caller gave up; the reply is still consumed
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_result(_reply_error(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def fail(self, error: Exception) -> None:
        """Fail every pending command and close: later sends open a new connection."""
        self.lost = True
        while self.pending:
            future = self.pending.popleft()
            if not future.done():
                future.set_exception(error)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


def _write(protocol: _Protocol, commands: Sequence[Sequence[Any]]) -> list[asyncio.Future[Any]]:
    """Queue one future per command on ``protocol``, then write the commands at once."""
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in commands]
    protocol.pending.extend(futures)
    assert protocol.transport is not None
    protocol.transport.write(b"".join(hiredis.pack_command(tuple(c)) for c in commands))
    return futures


class RedisLink:
    """A lazily opened, pipelined connection; see the module docstring."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        self.connects = 0

    async def send(self, commands: Sequence[Sequence[Any]]) -> list[asyncio.Future[Any]]:
        """Write ``commands`` at once; one future per command, for its reply.

        A reply that is an error is a future's *result* (an exception instance),
        so that one command's error never hides the others' replies.
        """
        return _write(await self._connected(), commands)

    async def replies(self, futures: list[asyncio.Future[Any]]) -> list[Any]:
        """The replies of ``futures``; past :data:`REPLY_TIMEOUT_S` the connection is dropped."""
        if not futures:
            return []
        try:
            async with asyncio.timeout(REPLY_TIMEOUT_S):
                # Replies come in order: once the last is in, so are the others (or
                # the connection was lost, which fails them all).
                await futures[-1]
            return [future.result() for future in futures]
        except TimeoutError:
            protocol = self._protocol
            if protocol is not None:
                protocol.fail(RedisTimeoutError("Redis did not answer in time"))
            raise RedisTimeoutError("Redis did not answer in time") from None

    async def _connected(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and not protocol.lost:
            return protocol
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            protocol = self._protocol
            if protocol is None or protocol.lost:
                protocol = await self._open()
                self._protocol = protocol
            return protocol

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        options = self._options
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                if "path" in options:
                    _, protocol = await loop.create_unix_connection(_Protocol, options["path"])
                else:
                    _, protocol = await loop.create_connection(
                        _Protocol, options.get("host", "localhost"), options.get("port", 6379)
                    )
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc}") from None
        self.connects += 1
        setup: list[tuple[Any, ...]] = []
        if options.get("password") is not None:
            user = options.get("username")
            setup.append(
                ("AUTH", user, options["password"]) if user else ("AUTH", options["password"])
            )
        if options.get("db"):
            setup.append(("SELECT", options["db"]))
        if setup:
            futures = _write(protocol, setup)
            self._protocol = protocol  # so that a timeout below drops this connection
            for reply in await self.replies(futures):
                if isinstance(reply, Exception):
                    protocol.fail(RedisConnectionError(f"Redis refused the connection: {reply}"))
                    raise RedisConnectionError(f"Redis refused the connection: {reply}")
        return protocol

    def close(self) -> None:
        protocol = self._protocol
        if protocol is not None:
            protocol.fail(RedisConnectionError("the link was closed"))


def link_for(url: str) -> RedisLink | None:
    """A link for ``url``, or None where only redis-py serves it (TLS, other schemes)."""
    try:
        options = parse_url(url)
    except ValueError:
        return None
    connection_class = options.pop("connection_class", None)
    if connection_class not in (None, UnixDomainSocketConnection):
        return None
    known = {"host", "port", "db", "username", "password", "path"}
    if set(options) - known:  # options only redis-py understands (timeouts, ...)
        return None
    return RedisLink(dict(options))
