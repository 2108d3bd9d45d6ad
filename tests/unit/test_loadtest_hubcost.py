"""``python -m loadtest.hubcost`` measures what it says: one frame per member per event."""

from __future__ import annotations

from loadtest.hubcost import measure


async def test_every_event_is_written_to_every_member_once_per_tick() -> None:
    cost, frames = await measure(members=50, messages=20)
    assert frames == 50 * 20  # one frame each: nothing coalesced away, nothing lost
    assert cost > 0
