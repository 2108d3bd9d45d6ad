"""The Python cost of one chat delivery in a node, with no syscall: the rest of fan-out.

:mod:`loadtest.sendcost` measures the kernel's share of a delivery (one small
``send``). This measures roomserver's own share: :meth:`roomserver.hub.Hub.deliver` of
a chat event to ``members`` connections, then the loop tick in which the hub's flusher
writes each connection's frame, to transports that count writes and keep nothing. What
a real node spends per delivery beyond the two (asyncio's ``transport.write`` around
the syscall, the event loop, receiving ``chat.send``) is what is left.

    python -m loadtest.hubcost [--members 1000] [--messages 200]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from roomserver.events import Envelope
from roomserver.hub import Conn, Hub
from roomserver.ids import Identity, Role, UserId
from roomserver.metrics import Metrics
from signaling.codec import JSON_CODEC

ROOM = "r"


class CountingTransport:
    """Takes every write and keeps only the count: the hub's side of a transport."""

    __slots__ = ("writes",)

    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


async def measure(members: int, messages: int) -> tuple[float, int]:
    """(CPU nanoseconds per delivery, frames written) for ``messages`` chat events."""
    hub = Hub(Metrics())
    transports = []
    for i in range(members):
        conn = Conn(JSON_CODEC, peer="127.0.0.1")
        transport = CountingTransport()
        conn.start(transport, JSON_CODEC)
        conn.rooms[ROOM] = Identity(UserId(f"u{i}"), f"U{i}", Role.MEMBER)
        hub.attach(ROOM, conn)
        transports.append(transport)
    event = {
        "t": "chat", "room": ROOM, "ts": 1_795_000_000_000, "user": "u0", "name": "Ann",
        "role": "member", "text": "is the battery good for a whole day?", "cid": "c1",
    }  # fmt: skip
    started = time.process_time()
    for seq in range(1, messages + 1):
        hub.deliver(ROOM, Envelope({**event, "seq": seq}))
        await asyncio.sleep(0)  # the flusher writes in this tick
    cpu = time.process_time() - started
    return cpu / (members * messages) * 1e9, sum(t.writes for t in transports)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()
    if args.members < 1 or args.messages < 1:
        parser.error("--members and --messages at least 1")
    for run in range(3):
        cost, _ = asyncio.run(measure(args.members, args.messages))
        print(f"run {run + 1}: {cost:.0f} ns CPU per delivery in the hub (no syscall)")


if __name__ == "__main__":
    main()
