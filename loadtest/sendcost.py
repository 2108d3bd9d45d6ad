"""The CPU cost of one small ``socket.send`` on this machine: the floor under fan-out.

A node delivers a chat message to each member with one send of one small frame
(when frames carry one message each). This measures that syscall alone, with no
asyncio and no WebSocket code: ``sockets`` loopback TCP connections, one frame
of ``size`` bytes sent on each, ``rounds`` times, the receivers drained between
rounds and left out of the figure. On loopback the sending call also runs the
receiving side's TCP path, as it does for a node under a local load test.

    python -m loadtest.sendcost [--sockets 2000] [--size 98] [--rounds 50]
"""

from __future__ import annotations

import argparse
import socket
import time
from array import array
from collections.abc import Iterator
from contextlib import contextmanager

from roomserver.sendring import SendRing


@contextmanager
def loopback_pairs(count: int) -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """``count`` connected loopback TCP pairs: (sender, receiver), the sender as a node's.

    The sender is the accepted side, non-blocking and with ``TCP_NODELAY``, as a
    member's socket on a node; the receiver is the connecting side, blocking.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(count)
    pairs: list[tuple[socket.socket, socket.socket]] = []
    try:
        for _ in range(count):
            receiver = socket.create_connection(listener.getsockname())
            sender, _ = listener.accept()
            sender.setblocking(False)
            sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pairs.append((sender, receiver))
        yield pairs
    finally:
        for sender, receiver in pairs:
            sender.close()
            receiver.close()
        listener.close()


def measure(sockets: int, size: int, rounds: int, ring: SendRing | None = None) -> float:
    """CPU microseconds per send, over ``rounds`` x ``sockets`` sends (through ``ring``)."""
    with loopback_pairs(sockets) as pairs:
        frame = b"\x81" + bytes([min(size - 2, 125)]) + b"x" * (size - 2)
        fds = array("i", [server.fileno() for server, _ in pairs])
        cpu = 0.0
        for _ in range(rounds):
            started = time.process_time()
            if ring is not None:
                if ring.send(fds, frame) is not None:
                    raise RuntimeError("a ring send was not taken whole")
            else:
                for server, _client in pairs:
                    server.send(frame)
            cpu += time.process_time() - started
            for _server, client in pairs:
                client.recv(65536)
        return cpu / (rounds * sockets) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--size", type=int, default=98, help="frame bytes (3-127)")
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    if not 3 <= args.size <= 127 or args.sockets < 1 or args.rounds < 1:
        parser.error("--size 3-127, --sockets and --rounds at least 1")
    ring = SendRing.open()
    for run in range(3):
        cost = measure(args.sockets, args.size, args.rounds)
        line = f"run {run + 1}: {cost:.2f} µs CPU per send; ceiling {1e6 / cost:,.0f} sends/CPU-s"
        if ring is not None:
            ringed = measure(args.sockets, args.size, args.rounds, ring)
            line += f"; send ring {ringed:.2f} µs, ceiling {1e6 / ringed:,.0f}"
        print(line)


if __name__ == "__main__":
    main()
