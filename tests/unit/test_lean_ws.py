"""The lean /ws path's pure parts: the upgrade it answers, the frames it reads."""

from __future__ import annotations

import os
import struct

import pytest

from signaling.lean import (
    CLOSE_PROTOCOL,
    CLOSE_TOO_BIG,
    FrameError,
    FrameReader,
    accept_key,
    choose_subprotocol,
    parse_upgrade,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
HEAD = (
    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13"
)


def masked(opcode: int, payload: bytes, fin: bool = True, mask: bytes | None = None) -> bytes:
    """A client frame as RFC 6455 section 5.2 lays it out."""
    mask = mask if mask is not None else os.urandom(4)
    size = len(payload)
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 65_536:
        head = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, size)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def test_the_accept_key_of_the_rfc_example() -> None:
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_a_plain_upgrade_is_answered_here() -> None:
    parsed = parse_upgrade(HEAD.encode())
    assert parsed is not None
    target, headers = parsed
    assert target == "/ws" and headers["sec-websocket-key"] == KEY


@pytest.mark.parametrize(
    "change",
    [
        ("GET /ws HTTP/1.1", "POST /ws HTTP/1.1"),
        ("GET /ws HTTP/1.1", "GET /ws HTTP/1.0"),
        ("Upgrade: websocket", "Upgrade: h2c"),
        ("Connection: Upgrade", "Connection: keep-alive"),
        ("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
        (KEY, "short"),
        (KEY, "not base64 at all!!"),
        ("Host: 127.0.0.1", "Host: 127.0.0.1\r\nContent-Length: 5"),
        ("Host: 127.0.0.1", "Host: 127.0.0.1\r\nHost: twice"),
        ("Host: 127.0.0.1", "Host : spaced"),
        ("Host: 127.0.0.1", "no colon here"),
    ],
)
def test_anything_unusual_goes_to_aiohttp(change: tuple[str, str]) -> None:
    assert parse_upgrade(HEAD.replace(*change).encode()) is None


def test_the_first_subprotocol_offered_that_we_speak() -> None:
    assert choose_subprotocol(None) is None
    assert choose_subprotocol("chat, room.v1.msgpack, room.v1.json") == ("room.v1.msgpack")
    assert choose_subprotocol("other") is None


def test_messages_come_out_whole_however_the_bytes_are_cut() -> None:
    stream = (
        masked(1, b'{"t":"ping"}')
        + masked(2, b"\x00" * 300)
        + masked(1, b"y" * 5000)
        + masked(9, b"hb")
        + masked(1, b"frag-", fin=False)
        + masked(10, b"pong in between")
        + masked(0, b"mented", fin=False)
        + masked(0, b"!")
    )
    for step in (1, 3, 7, 64, len(stream)):
        reader = FrameReader()
        out = []
        for i in range(0, len(stream), step):
            out += reader.feed(stream[i : i + step])
        assert out == [
            (1, b'{"t":"ping"}'),
            (2, b"\x00" * 300),
            (1, b"y" * 5000),
            (9, b"hb"),
            (10, b"pong in between"),
            (1, b"frag-mented!"),
        ]


def test_an_empty_message_and_a_zero_mask() -> None:
    assert FrameReader().feed(masked(1, b"", mask=b"\x00" * 4)) == [(1, b"")]
    assert FrameReader().feed(masked(1, b"abc", mask=b"\x00" * 4)) == [(1, b"abc")]


def test_the_size_limit_counts_the_whole_message() -> None:
    reader = FrameReader(max_message=100)
    assert reader.feed(masked(1, b"a" * 100)) == [(1, b"a" * 100)]
    with pytest.raises(FrameError) as too_big:
        reader.feed(masked(1, b"a" * 101))
    assert too_big.value.code == CLOSE_TOO_BIG
    fragmented = FrameReader(max_message=100)
    fragmented.feed(masked(1, b"a" * 60, fin=False))
    with pytest.raises(FrameError) as too_big:
        fragmented.feed(masked(0, b"a" * 41))
    assert too_big.value.code == CLOSE_TOO_BIG


def test_a_declared_length_over_the_limit_is_refused_before_it_arrives() -> None:
    header = struct.pack("!BBQ", 0x81, 0x80 | 127, 10**9)
    with pytest.raises(FrameError) as too_big:
        FrameReader().feed(header)
    assert too_big.value.code == CLOSE_TOO_BIG


@pytest.mark.parametrize(
    "frame",
    [
        bytes((0x81, 0x03)) + b"abc",  # unmasked
        masked(1, b"x")[:0] + bytes((0xC1,)) + masked(1, b"x")[1:],  # RSV1 set
        masked(3, b"x"),  # reserved data opcode
        masked(11, b"x"),  # reserved control opcode
        masked(9, b"x", fin=False),  # fragmented control frame
        masked(9, b"x" * 126),  # control frame too long
        masked(0, b"x"),  # continuation with nothing to continue
        masked(1, b"a", fin=False) + masked(1, b"b"),  # new message inside a fragmented one
    ],
)
def test_protocol_errors_close_with_1002(frame: bytes) -> None:
    with pytest.raises(FrameError) as bad:
        FrameReader().feed(frame)
    assert bad.value.code == CLOSE_PROTOCOL
