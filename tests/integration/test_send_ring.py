"""The send ring over real loopback sockets: whole sends, full sockets, errors, short sends.

And the hub writing room events through it on real asyncio transports: every byte
arrives in order, a short send's rest is buffered, a closing transport is left alone,
and a failed ring closes what it touched and turns itself off.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from array import array
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager

import pytest

from loadtest.sendcost import loopback_pairs, measure
from roomserver.events import Envelope
from roomserver.hub import Conn, Hub, flusher
from roomserver.ids import Identity, Role, UserId
from roomserver.metrics import Metrics
from roomserver.sendring import STAGING_BYTES, RingBroken, SendRing
from signaling.codec import JSON_CODEC, MSGPACK_CODEC, Codec, decode_frames

pytestmark = pytest.mark.skipif(SendRing.open() is None, reason="no io_uring on this machine")


@contextmanager
def socket_pairs(count: int) -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """``count`` connected loopback TCP pairs: (non-blocking sender, receiver)."""
    with loopback_pairs(count) as pairs:
        for _, receiver in pairs:
            receiver.settimeout(5)
        yield pairs


def receive(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"connection ended after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


def fill(sock: socket.socket) -> None:
    """Write until the kernel takes no more."""
    try:
        for _ in range(10_000):
            sock.send(b"f" * 65_536)
    except BlockingIOError:
        return
    raise AssertionError("the socket never filled")


@pytest.fixture
def ring() -> Iterator[SendRing]:
    opened = SendRing.open()
    assert opened is not None
    yield opened
    opened.close()


def test_every_socket_gets_every_frame_in_order_across_ring_wraps(ring: SendRing) -> None:
    frames = [b"frame-%04d|" % i for i in range(400)]  # 40 x 400 sends: the ring wraps 3 times
    with socket_pairs(40) as pairs:
        fds = array("i", [sender.fileno() for sender, _ in pairs])
        for frame in frames:
            assert ring.send(fds, frame) is None  # all whole
        expected = b"".join(frames)
        for _, receiver in pairs:
            assert receive(receiver, len(expected)) == expected


def test_more_sockets_than_one_submission_holds() -> None:
    small = SendRing(entries=8)
    try:
        assert small.max_batch == 8
        with socket_pairs(21) as pairs:
            fds = array("i", [sender.fileno() for sender, _ in pairs])
            for round_ in range(3):
                assert small.send(fds, b"r%d" % round_) is None
            for _, receiver in pairs:
                assert receive(receiver, 6) == b"r0r1r2"
    finally:
        small.close()


def test_a_full_socket_answers_eagain_and_the_others_are_sent(ring: SendRing) -> None:
    with socket_pairs(5) as pairs:
        fill(pairs[2][0])
        fds = array("i", [sender.fileno() for sender, _ in pairs])
        results = ring.send(fds, b"hello")
        assert results == [5, 5, -errno.EAGAIN, 5, 5]
        for index in (0, 1, 3, 4):
            assert receive(pairs[index][1], 5) == b"hello"


def test_a_closed_peer_is_an_error_result_not_a_signal(ring: SendRing) -> None:
    with socket_pairs(3) as pairs:
        pairs[1][1].close()
        fds = array("i", [sender.fileno() for sender, _ in pairs])
        outcomes: list[int] = []
        for _ in range(20):  # the first send may still be taken before the reset is seen
            results = ring.send(fds, b"x")
            outcomes.append(0 if results is None else results[1])
            if outcomes[-1] < 0:
                break
        assert outcomes[-1] in (-errno.EPIPE, -errno.ECONNRESET)


def test_a_short_send_reports_the_bytes_taken(ring: SendRing) -> None:
    with socket_pairs(2) as pairs:
        sender = pairs[0][0]
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        pairs[0][1].setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        frame = bytes(range(256)) * 1000  # 256,000 bytes, more than both buffers hold
        results = ring.send(array("i", [sender.fileno(), pairs[1][0].fileno()]), frame)
        assert results is not None
        taken = results[0]
        assert 0 < taken < len(frame)
        assert results[1] in range(1, len(frame) + 1)
        assert receive(pairs[0][1], taken) == frame[:taken]


def test_a_frame_larger_than_the_staging_buffer_is_refused(ring: SendRing) -> None:
    with socket_pairs(1) as pairs, pytest.raises(ValueError):
        ring.send(array("i", [pairs[0][0].fileno()]), b"x" * (STAGING_BYTES + 1))


class _Recorder(asyncio.Protocol):
    def __init__(self, transports: asyncio.Queue[asyncio.Transport]) -> None:
        self.transports = transports

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transports.put_nowait(transport)


@asynccontextmanager
async def room_of(
    count: int, hub: Hub, codecs: Sequence[Codec] = (JSON_CODEC,)
) -> AsyncIterator[list[tuple[Conn, asyncio.Transport, asyncio.StreamReader]]]:
    """``count`` connections in room "r", each with the client end's reader.

    Connection ``i`` speaks ``codecs[i % len(codecs)]``.
    """
    loop = asyncio.get_running_loop()
    accepted: asyncio.Queue[asyncio.Transport] = asyncio.Queue()
    server = await loop.create_server(lambda: _Recorder(accepted), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    members: list[tuple[Conn, asyncio.Transport, asyncio.StreamReader]] = []
    writers: list[asyncio.StreamWriter] = []
    try:
        for index in range(count):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writers.append(writer)
            transport = await asyncio.wait_for(accepted.get(), 5)
            codec = codecs[index % len(codecs)]
            conn = Conn(codec)
            conn.start(transport, codec, send_ring=True)
            conn.rooms["r"] = Identity(UserId(f"u{index}"), "U", Role.MEMBER)
            hub.attach("r", conn)
            members.append((conn, transport, reader))
        yield members
    finally:
        for conn, transport, _ in members:
            conn.close()
            transport.abort()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def read_messages(
    reader: asyncio.StreamReader, count: int, codec: Codec = JSON_CODEC
) -> list[dict[str, object]]:
    """Read WebSocket frames until ``count`` messages came (a frame may carry several)."""
    messages: list[dict[str, object]] = []
    async with asyncio.timeout(10):
        while len(messages) < count:
            first, second = await reader.readexactly(2)
            assert first & 0x80 and not second & 0x80
            size = second & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", await reader.readexactly(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", await reader.readexactly(8))
            messages.extend(decode_frames(codec, await reader.readexactly(size)))
    return messages


@pytest.fixture
async def ring_sends(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many sockets each call of the loop's send ring covered."""
    ring = flusher().ring()
    assert ring is not None
    calls: list[int] = []
    real_send = ring.send

    def counting(fds: array[int], frame: bytes) -> list[int] | None:
        calls.append(len(fds))
        return real_send(fds, frame)

    monkeypatch.setattr(ring, "send", counting)
    return calls


async def test_room_events_go_out_through_the_ring_whole_and_in_order(
    ring_sends: list[int],
) -> None:
    hub = Hub(Metrics())
    async with room_of(20, hub) as members:
        for seq in range(1, 31):
            hub.deliver("r", Envelope({"t": "chat", "room": "r", "seq": seq}))
            await asyncio.sleep(0)
        for _, _, reader in members:
            got = await read_messages(reader, 30)
            assert [m["seq"] for m in got] == list(range(1, 31))
    assert sum(ring_sends) == 20 * 30  # every delivery was a ring send
    assert set(ring_sends) == {20}


async def test_members_of_two_encodings_each_get_their_own_frame_in_one_send_each(
    ring_sends: list[int],
) -> None:
    hub = Hub(Metrics())
    async with room_of(20, hub, (JSON_CODEC, MSGPACK_CODEC)) as members:
        for seq in (1, 2):
            hub.deliver("r", Envelope({"t": "chat", "room": "r", "seq": seq}))
            await asyncio.sleep(0)
        for conn, _, reader in members:
            assert [m["seq"] for m in await read_messages(reader, 2, conn.codec)] == [1, 2]
    assert ring_sends == [10, 10, 10, 10]  # one submission per encoding per event


async def test_a_short_send_is_finished_by_the_transport_and_order_holds(
    ring_sends: list[int],
) -> None:
    hub = Hub(Metrics())
    async with room_of(10, hub) as members:
        slow_transport = members[0][1]
        slow_socket = slow_transport.get_extra_info("socket")
        slow_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        blob = "b" * 60_000
        for seq in range(1, 9):  # ~480 KB to a client that is not reading yet
            hub.deliver("r", Envelope({"t": "chat", "room": "r", "seq": seq, "text": blob}))
            await asyncio.sleep(0)
        assert slow_transport.get_write_buffer_size() > 0  # the rest waits in asyncio
        for _, _, reader in members:
            got = await read_messages(reader, 8)
            assert [m["seq"] for m in got] == list(range(1, 9))
            assert all(m["text"] == blob for m in got)
    assert ring_sends  # the first events went through the ring


async def test_an_answer_and_an_event_in_one_tick_keep_their_order() -> None:
    hub = Hub(Metrics())
    async with room_of(12, hub) as members:
        talker = members[3][0]
        hub.deliver("r", Envelope({"t": "chat", "room": "r", "seq": 1}))
        talker.answer({"t": "ok", "id": 7})
        hub.deliver("r", Envelope({"t": "chat", "room": "r", "seq": 2}))
        await asyncio.sleep(0.01)
        got = await read_messages(members[3][2], 3)
        assert [m.get("seq", m.get("id")) for m in got] == [1, 7, 2]
        for index, (_, _, reader) in enumerate(members):
            if index != 3:
                assert [m["seq"] for m in await read_messages(reader, 2)] == [1, 2]


async def test_a_closing_transport_is_not_written_by_the_ring(ring_sends: list[int]) -> None:
    hub = Hub(Metrics())
    async with room_of(10, hub) as members:
        closing = members[0][1]
        closing.close()  # closing: the socket closes on a later tick
        hub.deliver("r", Envelope({"t": "chat", "room": "r", "seq": 1}))
        await asyncio.sleep(0.01)
        assert ring_sends == [9]
        assert await members[0][2].read() == b""  # nothing, then the end
        for _, _, reader in members[1:]:
            assert (await read_messages(reader, 1))[0]["seq"] == 1


async def test_a_broken_ring_closes_what_it_touched_and_turns_itself_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub = Hub(Metrics())
    loop_flusher = flusher()
    ring = loop_flusher.ring()
    assert ring is not None

    def broken(fds: array[int], frame: bytes) -> list[int] | None:
        raise RingBroken("completions missing")

    monkeypatch.setattr(ring, "send", broken)
    async with room_of(10, hub) as members:
        hub.deliver("r", Envelope({"t": "chat", "room": "r", "seq": 1}))
        await asyncio.sleep(0.01)
        assert all(conn.closed for conn, _, _ in members)
        for _, _, reader in members:
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                await read_messages(reader, 1)
    assert loop_flusher.ring() is None


def test_sendcost_measures_one_by_one_and_through_the_ring(ring: SendRing) -> None:
    assert measure(sockets=20, size=98, rounds=3) > 0
    assert measure(sockets=20, size=98, rounds=3, ring=ring) > 0
