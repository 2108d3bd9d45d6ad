"""Locating server frames in a buffer, checked against websockets' own serializer."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode

from loadtest.frames import FOREIGN, OP_BINARY, OP_CONT, OP_TEXT, locate


def wire(opcode: Opcode, payload: bytes, fin: bool = True, mask: bool = False) -> bytes:
    return Frame(opcode, payload, fin=fin).serialize(mask=mask)


@given(st.binary(max_size=70000), st.booleans())
def test_a_data_frame_of_any_length_is_located(payload: bytes, fin: bool) -> None:
    data = b"xx" + wire(Opcode.BINARY, payload, fin) + b"next"
    found = locate(data, 2)
    assert found is not None
    assert (found.opcode, found.fin) == (OP_BINARY, fin)
    assert data[found.payload_start : found.end] == payload
    assert data[found.end :] == b"next"


@given(st.binary(min_size=1, max_size=300), st.data())
def test_an_incomplete_frame_is_none(payload: bytes, data: st.DataObject) -> None:
    frame = wire(Opcode.TEXT, payload)
    cut = data.draw(st.integers(min_value=0, max_value=len(frame) - 1))
    assert locate(frame[:cut]) is None
    assert locate(frame) is not None


def test_back_to_back_frames() -> None:
    data = wire(Opcode.TEXT, b"a", fin=False) + wire(Opcode.CONT, b"b") + wire(Opcode.PING, b"")
    first = locate(data)
    assert first is not None and (first.opcode, first.fin) == (OP_TEXT, False)
    second = locate(data, first.end)
    assert second is not None and (second.opcode, second.fin) == (OP_CONT, True)
    third = locate(data, second.end)
    assert third is not None and third.opcode == Opcode.PING.value and third.end == len(data)


def test_frames_only_websockets_may_judge_are_foreign() -> None:
    masked = wire(Opcode.TEXT, b"hello", mask=True)
    found = locate(masked)
    assert found is not None and found.opcode == FOREIGN and found.end == len(masked)
    rsv = bytearray(wire(Opcode.TEXT, b"hi"))
    rsv[0] |= 0x40
    assert (f := locate(bytes(rsv))) is not None and f.opcode == FOREIGN
    fragmented_ping = bytearray(wire(Opcode.PING, b"p"))
    fragmented_ping[0] &= 0x7F
    assert (f := locate(bytes(fragmented_ping))) is not None and f.opcode == FOREIGN
