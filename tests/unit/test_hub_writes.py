"""The hub's write path with a fake transport: frames, batching, backpressure, overflow."""

from __future__ import annotations

import asyncio
import struct

from roomserver.events import Envelope
from roomserver.hub import HIGH_WATER, Conn, Hub, ws_frame
from roomserver.ids import Identity, Role, UserId
from roomserver.metrics import Metrics
from signaling.codec import JSON_CODEC, MSGPACK_CODEC, decode_frames


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.buffered = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closing


def parse(frame: bytes) -> tuple[int, bytes]:
    """(opcode, payload) of one unmasked frame."""
    first, second = frame[0], frame[1]
    assert first & 0x80  # FIN
    assert not second & 0x80  # servers never mask
    size, offset = second & 0x7F, 2
    if size == 126:
        (size,) = struct.unpack("!H", frame[2:4])
        offset = 4
    elif size == 127:
        (size,) = struct.unpack("!Q", frame[2:10])
        offset = 10
    payload = frame[offset:]
    assert len(payload) == size
    return first & 0x0F, payload


def test_frame_lengths_at_every_boundary() -> None:
    for size in (0, 125, 126, 65_535, 65_536, 200_000):
        opcode, payload = parse(ws_frame(0x1, b"x" * size))
        assert opcode == 0x1 and len(payload) == size


async def test_one_event_is_one_shared_frame_for_every_connection() -> None:
    hub = Hub(Metrics())
    transports, conns = [], []
    for i in range(3):
        conn, transport = Conn(JSON_CODEC), FakeTransport()
        conn.start(transport, JSON_CODEC)
        conn.rooms["r"] = Identity(UserId(f"u{i}"), "U", Role.MEMBER)
        hub.attach("r", conn)
        conns.append(conn)
        transports.append(transport)
    hub.deliver("r", Envelope({"t": "likes", "room": "r", "total": 5}))
    await asyncio.sleep(0)
    frames = [t.writes[0] for t in transports]
    assert all(len(t.writes) == 1 for t in transports)
    assert frames[0] is frames[1] is frames[2]  # built once, the same bytes object
    assert decode_frames(JSON_CODEC, parse(frames[0])[1]) == [
        {"t": "likes", "room": "r", "total": 5}
    ]


async def test_events_held_during_joins_are_encoded_once_for_all_joiners() -> None:
    hub = Hub(Metrics())
    live, live_transport = Conn(JSON_CODEC), FakeTransport()
    live.start(live_transport, JSON_CODEC)
    live.rooms["r"] = Identity(UserId("u0"), "U", Role.MEMBER)
    hub.attach("r", live)
    joiners = []
    for i in (1, 2):
        conn, transport = Conn(JSON_CODEC), FakeTransport()
        conn.start(transport, JSON_CODEC)
        conn.rooms["r"] = Identity(UserId(f"u{i}"), "U", Role.MEMBER)
        conn.joining["r"] = []
        hub.attach("r", conn)
        joiners.append((conn, transport))
    presence = Envelope({"t": "presence", "room": "r", "members": 3})
    old_chat = Envelope({"t": "chat", "room": "r", "seq": 7, "text": "in the snapshot"})
    hub.deliver("r", presence)
    hub.deliver("r", old_chat)
    await asyncio.sleep(0)
    assert len(live_transport.writes) == 1  # both events, one frame
    for conn, _ in joiners:
        hub.release_joining("r", conn, after_seq=7)
    await asyncio.sleep(0)
    released = [transport.writes for _, transport in joiners]
    assert released[0] == released[1] and len(released[0]) == 1
    assert released[0][0] is released[1][0]  # the presence frame, built once
    assert decode_frames(JSON_CODEC, parse(released[0][0])[1]) == [presence.event]
    assert presence.encoded[JSON_CODEC.name][0] == JSON_CODEC.encode(presence.event)


async def test_messages_queued_in_one_tick_share_a_frame_in_order() -> None:
    conn, transport = Conn(MSGPACK_CODEC), FakeTransport()
    conn.start(transport, MSGPACK_CODEC)
    for i in range(5):
        conn.answer({"t": "ok", "id": i})
    await asyncio.sleep(0)
    assert len(transport.writes) == 1
    opcode, payload = parse(transport.writes[0])
    assert opcode == 0x2
    assert [m["id"] for m in decode_frames(MSGPACK_CODEC, payload)] == [0, 1, 2, 3, 4]


async def test_a_backed_up_transport_pauses_then_overflows() -> None:
    dropped: list[int] = []
    conn, transport = Conn(JSON_CODEC, limit=10), FakeTransport()
    conn.on_overflow = lambda: dropped.append(conn.id)
    conn.start(transport, JSON_CODEC)
    conn.answer({"t": "ok", "id": 0})
    transport.buffered = HIGH_WATER + 1  # the kernel stopped taking data
    await asyncio.sleep(0)
    assert len(transport.writes) == 1
    for i in range(1, 11):
        conn.answer({"t": "ok", "id": i})
    await asyncio.sleep(0.05)
    assert len(transport.writes) == 1 and conn.queued == 10  # waiting, not written
    assert not conn.overflowed
    conn.answer({"t": "ok", "id": 11})  # the eleventh waiting message passes the limit
    assert conn.overflowed and dropped == [conn.id]


async def test_a_paused_connection_resumes_when_its_buffer_drains() -> None:
    conn, transport = Conn(JSON_CODEC), FakeTransport()
    conn.start(transport, JSON_CODEC)
    conn.answer({"t": "ok", "id": 0})
    transport.buffered = HIGH_WATER + 1
    await asyncio.sleep(0)
    conn.answer({"t": "ok", "id": 1})
    await asyncio.sleep(0.05)
    assert len(transport.writes) == 1
    transport.buffered = 0
    await asyncio.sleep(0.1)
    assert len(transport.writes) == 2
    assert decode_frames(JSON_CODEC, parse(transport.writes[1])[1]) == [{"t": "ok", "id": 1}]


async def test_nothing_is_written_after_close() -> None:
    conn, transport = Conn(JSON_CODEC), FakeTransport()
    conn.start(transport, JSON_CODEC)
    conn.answer({"t": "ok", "id": 1})
    conn.close()
    conn.answer({"t": "ok", "id": 2})
    await asyncio.sleep(0.01)
    assert transport.writes == []
