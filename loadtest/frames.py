"""Locating WebSocket frames that a server sent, in a byte buffer: pure, no I/O.

Why this exists: on this project's 2-core benchmark machine the load generator shares
the CPU with the server, and parsing each received frame with ``websockets``'
generator-based parser cost about a third of the client's CPU per delivery. A server
frame is simple (RFC 6455 section 5.2: never masked, and without extensions the RSV
bits are zero), so finding its payload takes a few comparisons. Everything else stays
with ``websockets``: the handshake, masking what the client sends, and every control
frame (ping, pong, close), whose bytes :class:`~loadtest.client.Connection` hands to
the library's protocol object untouched.

Invariants:

- :func:`locate` never reads past the buffer: an incomplete frame is ``None``, and
  the caller keeps the bytes until more arrive.
- A frame this module must not interpret (masked, RSV bits set, or a control frame
  longer than 125 bytes) is reported as :data:`FOREIGN`, so the caller hands it to
  ``websockets``, which fails the connection with the right close code.
"""

from __future__ import annotations

from typing import NamedTuple

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
#: Opcode reported for a frame only ``websockets`` may interpret.
FOREIGN = -1


class Located(NamedTuple):
    """Where one frame lies in the buffer."""

    opcode: int
    fin: bool
    payload_start: int
    end: int  # one past the frame's last byte: where the next frame starts


def locate(buf: bytes | bytearray, start: int = 0) -> Located | None:
    """The frame starting at ``buf[start]``, or None when it is not complete yet."""
    available = len(buf) - start
    if available < 2:
        return None
    b0 = buf[start]
    b1 = buf[start + 1]
    length = b1 & 0x7F
    header = 2
    if length == 126:
        if available < 4:
            return None
        length = (buf[start + 2] << 8) | buf[start + 3]
        header = 4
    elif length == 127:
        if available < 10:
            return None
        length = int.from_bytes(buf[start + 2 : start + 10], "big")
        header = 10
    if b1 & 0x80:
        header += 4  # a mask key: a server must not mask, websockets will say so
    end = start + header + length
    if end > len(buf):
        return None
    opcode = b0 & 0x0F
    if b1 & 0x80 or b0 & 0x70 or (opcode >= 0x8 and (length > 125 or not b0 & 0x80)):
        return Located(FOREIGN, True, start + header, end)
    return Located(opcode, bool(b0 & 0x80), start + header, end)
