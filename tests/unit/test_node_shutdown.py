"""Stopping a node ends its background work even when a library swallows the cancellation."""

from __future__ import annotations

import asyncio
import contextlib

from roomserver.broker.memory import MemoryBroker
from roomserver.node import Node
from tests.harness import make_settings


class SwallowingBroker(MemoryBroker):
    """A heartbeat that eats CancelledError, as the Redis client can while its pool closes."""

    def __init__(self) -> None:
        super().__init__()
        self.beats = 0

    async def heartbeat(self) -> None:
        self.beats += 1
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.05)


async def test_the_heartbeat_stops_though_its_cancellation_was_swallowed() -> None:
    broker = SwallowingBroker()
    node = Node(make_settings(), broker)
    await node.start()
    await asyncio.sleep(0.01)  # inside the first heartbeat
    (task,) = node._tasks
    task.cancel()
    await asyncio.wait({task}, timeout=2)
    assert task.done(), "the heartbeat loop went on after its cancellation was swallowed"
    assert broker.beats == 1
    await node.close()
