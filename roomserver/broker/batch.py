"""Script calls (and publishes) made in one event-loop tick go to Redis as one pipeline.

A join burst makes hundreds of script calls a second on a node. Alone, each
costs the node about 70-90 µs of redis-py (a pooled connection, a timeout, a
round trip, a parse); in a pipeline of a few dozen, about 15 µs. So the hot
scripts (a member joining, the join snapshot) are queued and sent together
once per loop tick, on one connection, in the order they were called. Plain
commands (``PUBLISH`` of member events) may join the same pipeline: alone, each
would also take a pooled connection, and in a burst open new ones.

With a :class:`~roomserver.broker.link.RedisLink` (plain ``redis://`` and
``unix://`` URLs), the pipeline is written straight to that link's one
connection instead of through redis-py (a third of the CPU per round trip); ticks
whose replies are still out simply follow on the same connection, in order.

Each caller still gets its own result or its own error. A script Redis does
not know (``NOSCRIPT``: Redis restarted or its scripts were flushed) is sent
again alone through redis-py's script object, which loads it. A failure of
the whole pipeline (Redis unreachable) fails every call in it with that error,
as a lone call would have failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from roomserver.broker.link import RedisLink

#: (script, keys, args, future); a plain command has no script and its words as args.
_Call = tuple[AsyncScript | None, Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]


class ScriptBatcher:
    """Queues script calls for one Redis client and sends each tick's as one pipeline."""

    def __init__(self, client: aioredis.Redis, link: RedisLink | None = None) -> None:
        self._client = client
        self._link = link
        self._queue: list[_Call] = []
        self._tasks: set[asyncio.Task[None]] = set()
        #: pipelines sent, and calls sent in them (for tests and tuning)
        self.pipelines = 0
        self.calls = 0

    def call(
        self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]
    ) -> asyncio.Future[Any]:
        """Run ``script`` with ``keys`` and ``args`` in this tick's pipeline."""
        return self._queued(script, keys, args)

    def command(self, *words: Any) -> asyncio.Future[Any]:
        """Run a plain command (e.g. ``PUBLISH channel data``) in this tick's pipeline."""
        return self._queued(None, (), words)

    def _queued(
        self, script: AsyncScript | None, keys: Sequence[Any], args: Sequence[Any]
    ) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queue:
            loop.call_soon(self._send_queued)
        self._queue.append((script, keys, args, future))
        return future

    def _send_queued(self) -> None:
        batch, self._queue = self._queue, []
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[_Call]) -> None:
        self.pipelines += 1
        self.calls += len(batch)
        try:
            results = await self._pipeline(batch)
        except Exception as exc:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # cancelled (the broker is closing): so are the calls
            for *_, future in batch:
                future.cancel()
            raise
        for (script, keys, args, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller gave up (cancelled)
                continue
            if isinstance(result, NoScriptError) and script is not None:
                await self._alone(script, keys, args, future)
            elif isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _pipeline(self, batch: list[_Call]) -> list[Any]:
        """Every call's reply or error reply, in order, through the link or redis-py."""
        link = self._link
        if link is not None:
            commands = [
                args if script is None else ("EVALSHA", script.sha, len(keys), *keys, *args)
                for script, keys, args, _ in batch
            ]
            return await link.replies(await link.send(commands))
        pipe = self._client.pipeline(transaction=False)
        for script, keys, args, _ in batch:
            if script is None:
                pipe.execute_command(*args)
            else:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        return results

    async def _alone(
        self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any], future: Any
    ) -> None:
        try:
            result = await script(keys=keys, args=args, client=self._client)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(result)

    async def close(self) -> None:
        """Wait for the pipelines in flight (their callers are waiting for them)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._link is not None:
            self._link.close()
