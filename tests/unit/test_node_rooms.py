"""A node reads a room from the broker once, however many joins arrive for it at once."""

from __future__ import annotations

import asyncio
from typing import Any

from roomserver.auth import mint_token
from roomserver.broker.memory import MemoryBroker
from roomserver.hub import Conn
from roomserver.node import Node
from roomserver.room import RoomInfo
from signaling import messages as m
from signaling.codec import JSON_CODEC
from tests.harness import make_settings


class SlowBroker(MemoryBroker):
    """A memory broker whose room reads take a while and are counted (as on Redis)."""

    def __init__(self, delay_s: float = 0.02, fail: Exception | None = None) -> None:
        super().__init__()
        self.reads = 0
        self.delay_s = delay_s
        self.fail = fail

    async def get_room(self, room: str) -> RoomInfo | None:
        self.reads += 1
        await asyncio.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        return await super().get_room(room)


def answers(conn: Conn) -> list[dict[str, Any]]:
    """The answers queued for ``conn`` (its events, such as member.joined, left out)."""
    decoded = [conn.codec.decode(data) for data in conn._outbox]
    return [message for message in decoded if message.get("id") == 1]


async def join_all(node: Node, room: str, count: int) -> list[Conn]:
    conns = [Conn(JSON_CODEC, peer="127.0.0.1") for _ in range(count)]
    secret = node.settings.secret
    await asyncio.gather(
        *(
            node.dispatch(
                conn,
                m.Join(id=1, room=room, token=mint_token(secret, room=room, user=f"u{i}",
                                                         name=f"U{i}", role="member")),
            )
            for i, conn in enumerate(conns)
        )
    )  # fmt: skip
    return conns


async def test_a_wave_of_joins_reads_the_room_once() -> None:
    broker = SlowBroker()
    node = Node(make_settings(), broker)
    await broker.create_room(RoomInfo("r1", "Launch"))
    conns = await join_all(node, "r1", 30)
    assert broker.reads == 1
    assert [answers(conn)[0]["t"] for conn in conns] == ["ok"] * 30
    assert node.rooms["r1"].member_count == 30
    assert node._loading == {}
    await node.close()


async def test_a_missing_room_fails_every_waiting_join_and_is_read_again_later() -> None:
    broker = SlowBroker()
    node = Node(make_settings(), broker)
    conns = await join_all(node, "nope", 5)
    assert broker.reads == 1
    assert {answers(conn)[0]["code"] for conn in conns} == {"not_found"}
    assert node._loading == {}
    await join_all(node, "nope", 1)
    assert broker.reads == 2  # a failure is not remembered
    await node.close()


async def test_a_cancelled_first_join_does_not_cancel_the_others() -> None:
    broker = SlowBroker(delay_s=0.05)
    node = Node(make_settings(), broker)
    await broker.create_room(RoomInfo("r1", "Launch"))
    loop = asyncio.get_running_loop()
    first = loop.create_task(join_all(node, "r1", 1))
    await asyncio.sleep(0.01)  # the first join is reading the room
    others = loop.create_task(join_all(node, "r1", 3))
    await asyncio.sleep(0.01)
    first.cancel()
    conns = await others
    assert broker.reads == 1
    assert [answers(conn)[0]["t"] for conn in conns] == ["ok", "ok", "ok"]
    await node.close()
