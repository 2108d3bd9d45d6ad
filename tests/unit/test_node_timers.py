"""A node's timers: the end of a draw or battle and coalesced events never share a slot."""

from __future__ import annotations

from roomserver.broker.memory import MemoryBroker
from roomserver.node import Node
from tests.harness import make_settings


async def test_a_pending_coalesced_flush_leaves_the_draws_end_timer_alone() -> None:
    node = Node(make_settings(), MemoryBroker())
    far = node.clock.now_ms() + 60_000
    ended: list[str] = []

    async def emit() -> None:
        return None

    async def finish() -> None:
        ended.append("d1")

    node._timer_at(("r", "draw:d1"), far, finish)
    end_timer = node._timers[("r", "draw:d1")]
    node._coalesce("r", "draw:d1", 10.0, emit)  # sent at once
    node._coalesce("r", "draw:d1", 10.0, emit)  # held back: a flush timer
    assert node._timers[("r", "draw:d1")] is end_timer
    assert ("r", "flush:draw:d1") in node._timers
    node._timer_at(("r", "draw:d1"), far, finish)  # a later join: still one end timer
    assert node._timers[("r", "draw:d1")] is end_timer
    await node.close()
