"""Session: one frame in, a typed request or an error answer out; 20 bad frames in a row close."""

from __future__ import annotations

from typing import Any

import msgpack
import orjson
import pytest

from signaling import messages as m
from signaling.codec import JSON_CODEC, MSGPACK_CODEC, Codec
from signaling.session import CLOSE_POLICY, MAX_BAD_FRAMES, Session

BOTH = pytest.mark.parametrize("codec", [JSON_CODEC, MSGPACK_CODEC], ids=lambda c: c.name)

#: A frame the codec cannot decode at all.
UNDECODABLE = {JSON_CODEC.name: b"{not json", MSGPACK_CODEC.name: b"\xc1"}


def frame(codec: Codec, obj: Any) -> bytes:
    """Any value (also lists and scalars) as one frame of ``codec``."""
    if codec.binary:
        packed: bytes = msgpack.packb(obj, use_bin_type=True)
        return packed
    return orjson.dumps(obj)


def good(codec: Codec, request_id: Any = 1) -> bytes:
    return frame(
        codec, {"t": "chat.send", "id": request_id, "room": "r1", "text": " hi ", "cid": "c1"}
    )


def garbage(codec: Codec) -> bytes:
    return UNDECODABLE[codec.name]


def test_constants_match_the_contract() -> None:
    assert MAX_BAD_FRAMES == 20
    assert CLOSE_POLICY == 1008


@BOTH
def test_valid_frame_returns_a_typed_request(codec: Codec) -> None:
    session = Session(codec)
    request = session.receive(good(codec, 7))
    assert isinstance(request, m.ChatSend)
    assert (request.id, request.room, request.text, request.cid) == (7, "r1", "hi", "c1")
    ping = session.receive(frame(codec, {"t": "ping", "id": "p-1"}))
    assert ping == m.Ping(id="p-1")
    assert session.bad_in_a_row == 0
    assert session.should_close is False


def test_json_session_accepts_text_frames() -> None:
    request = Session(JSON_CODEC).receive('{"t":"leave","id":2,"room":"r9"}')
    assert request == m.Leave(id=2, room="r9")


def test_msgpack_session_refuses_text_frames() -> None:
    session = Session(MSGPACK_CODEC)
    answer = session.receive('{"t":"ping","id":1}')
    assert isinstance(answer, dict)
    assert answer["code"] == "bad_request" and answer["id"] is None
    assert session.bad_in_a_row == 1


@BOTH
@pytest.mark.parametrize(
    ("obj", "code", "echo", "field"),
    [
        ("undecodable", "bad_request", None, None),
        ([1, 2, 3], "bad_request", None, None),
        ("just a string", "bad_request", None, None),
        ({"id": 3}, "bad_request", 3, "t"),
        ({"t": 5, "id": 4}, "bad_request", 4, "t"),
        ({"t": "nope", "id": 5}, "unknown_type", 5, None),
        ({"t": "nope", "id": "abc"}, "unknown_type", "abc", None),
        ({"t": "chat.send", "id": "s-1", "room": "r"}, "bad_request", "s-1", "text"),
        ({"t": "like", "id": 6, "room": "r", "n": 51}, "bad_request", 6, "n"),
        ({"t": "ping"}, "bad_request", None, "id"),
        ({"t": "ping", "id": True}, "bad_request", None, "id"),
        ({"t": "ping", "id": 1.5}, "bad_request", None, "id"),
        ({"t": "ping", "id": "x" * 65}, "bad_request", None, "id"),
        ({"t": "nope", "id": 2**53 + 1}, "bad_request", None, "id"),
    ],
)
def test_bad_frames_are_answered(
    codec: Codec, obj: Any, code: str, echo: Any, field: str | None
) -> None:
    session = Session(codec)
    data = garbage(codec) if obj == "undecodable" else frame(codec, obj)
    answer = session.receive(data)
    assert isinstance(answer, dict)
    assert answer["t"] == "error"
    assert answer["code"] == code
    assert "id" in answer and answer["id"] == echo
    assert type(answer["id"]) is type(echo)
    assert isinstance(answer["message"], str) and answer["message"]
    if field is not None:
        assert answer["message"].startswith(field + ":")
    assert session.bad_in_a_row == 1
    assert session.should_close is False


@BOTH
def test_closes_exactly_after_twenty_bad_frames_in_a_row(codec: Codec) -> None:
    session = Session(codec)
    for i in range(1, 20):
        assert isinstance(session.receive(garbage(codec)), dict)
        assert session.bad_in_a_row == i
        assert session.should_close is False, f"closed after {i} bad frames"
    session.receive(frame(codec, {"t": "nope", "id": 1}))  # unknown types count too
    assert session.bad_in_a_row == 20
    assert session.should_close is True


@BOTH
def test_a_good_frame_resets_the_count(codec: Codec) -> None:
    session = Session(codec)
    for _ in range(19):
        session.receive(garbage(codec))
    assert session.bad_in_a_row == 19
    assert isinstance(session.receive(good(codec)), m.ChatSend)
    assert session.bad_in_a_row == 0
    for _ in range(19):
        session.receive(garbage(codec))
    assert session.should_close is False
    session.receive(garbage(codec))
    assert session.should_close is True


def test_custom_limit() -> None:
    session = Session(JSON_CODEC, max_bad_frames=2)
    session.receive(b"x")
    assert not session.should_close
    session.receive(b"x")
    assert session.should_close
