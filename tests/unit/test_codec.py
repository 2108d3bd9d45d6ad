"""Codecs: round trips, multi-message frames, and every malformed frame as BadRequest."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomserver.errors import BadRequest
from signaling.codec import (
    CODECS,
    JSON_CODEC,
    MSGPACK_CODEC,
    Codec,
    codec_for,
    decode_frames,
)

BOTH = pytest.mark.parametrize("codec", [JSON_CODEC, MSGPACK_CODEC], ids=lambda c: c.name)

SAMPLE: dict[str, Any] = {
    "t": "chat",
    "room": "r1",
    "seq": 4711,
    "ts": 1_700_000_000_000,
    "user": "u7",
    "name": "Änn 🎉",
    "role": "member",
    "text": 'line one\nline "two"\t\u2028',
    "cid": "c-1",
    "nested": {"list": [1, 2.5, None, True, False, ""], "empty": {}},
    "big": 2**53,
    "neg": -(2**53),
}


def _bad(codec: Codec, data: bytes | str) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        codec.decode(data)
    assert info.value.code == "bad_request"
    return info.value


# --- registry -----------------------------------------------------------------


def test_codec_names_and_frame_kinds() -> None:
    assert JSON_CODEC.name == "room.v1.json"
    assert JSON_CODEC.binary is False
    assert MSGPACK_CODEC.name == "room.v1.msgpack"
    assert MSGPACK_CODEC.binary is True
    assert CODECS == {"room.v1.json": JSON_CODEC, "room.v1.msgpack": MSGPACK_CODEC}


@pytest.mark.parametrize(
    ("subprotocol", "expected"),
    [
        (None, JSON_CODEC),
        ("room.v1.json", JSON_CODEC),
        ("room.v1.msgpack", MSGPACK_CODEC),
        ("room.v2.json", JSON_CODEC),
        ("", JSON_CODEC),
    ],
)
def test_codec_for(subprotocol: str | None, expected: Codec) -> None:
    assert codec_for(subprotocol) is expected


# --- round trips ------------------------------------------------------------------


@BOTH
def test_round_trip(codec: Codec) -> None:
    encoded = codec.encode(SAMPLE)
    assert isinstance(encoded, bytes)
    assert codec.decode(encoded) == SAMPLE


def test_json_is_utf8_text_without_raw_newlines() -> None:
    encoded = JSON_CODEC.encode(SAMPLE)
    assert b"\n" not in encoded
    assert JSON_CODEC.decode(encoded.decode("utf-8")) == SAMPLE
    assert "Änn 🎉" in encoded.decode("utf-8")


def test_json_decode_accepts_str_and_bytes() -> None:
    assert JSON_CODEC.decode('{"t":"ping","id":1}') == {"t": "ping", "id": 1}
    assert JSON_CODEC.decode(b'{"t":"ping","id":1}') == {"t": "ping", "id": 1}


@BOTH
def test_encode_accepts_any_mapping(codec: Codec) -> None:
    from types import MappingProxyType

    assert codec.decode(codec.encode(MappingProxyType({"t": "ok", "id": 3}))) == {
        "t": "ok",
        "id": 3,
    }


def test_msgpack_encodes_bytes_as_bin_and_str_as_str() -> None:
    encoded = MSGPACK_CODEC.encode({"t": "x", "b": b"\x00\xff"})
    assert MSGPACK_CODEC.decode(encoded) == {"t": "x", "b": b"\x00\xff"}


def test_msgpack_non_str_keys_are_allowed() -> None:
    data = msgpack.packb({1: "a", "t": "x"})
    assert MSGPACK_CODEC.decode(data) == {1: "a", "t": "x"}


def test_msgpack_ext_and_timestamp_pass_through() -> None:
    ext = msgpack.ExtType(5, b"ab")
    assert MSGPACK_CODEC.decode(msgpack.packb({"t": ext})) == {"t": ext}
    stamp = msgpack.Timestamp(1, 2)
    assert MSGPACK_CODEC.decode(msgpack.packb({"t": stamp})) == {"t": stamp}


# --- multi-message frames -------------------------------------------------------------


@BOTH
def test_join_and_decode_frames(codec: Codec) -> None:
    messages = [SAMPLE, {"t": "presence", "room": "r1", "members": 3}, {"t": "likes", "x": "\n"}]
    frame = codec.join([codec.encode(m) for m in messages])
    assert decode_frames(codec, frame) == messages


@BOTH
def test_single_message_frame(codec: Codec) -> None:
    frame = codec.join([codec.encode(SAMPLE)])
    assert frame == codec.encode(SAMPLE)
    assert decode_frames(codec, frame) == [SAMPLE]


def test_json_join_uses_newlines_msgpack_concatenates() -> None:
    a, b = {"t": "a"}, {"t": "b"}
    assert JSON_CODEC.join([JSON_CODEC.encode(a), JSON_CODEC.encode(b)]) == b'{"t":"a"}\n{"t":"b"}'
    assert MSGPACK_CODEC.join([MSGPACK_CODEC.encode(a), MSGPACK_CODEC.encode(b)]) == (
        msgpack.packb(a) + msgpack.packb(b)
    )


def test_json_decode_frames_accepts_text_and_skips_blank_lines() -> None:
    assert decode_frames(JSON_CODEC, '{"t":"a"}\n\n{"t":"b"}\n') == [{"t": "a"}, {"t": "b"}]


@BOTH
def test_decode_frames_empty_frame_is_no_messages(codec: Codec) -> None:
    assert decode_frames(codec, b"") == []


def test_decode_frames_bad_json_part() -> None:
    with pytest.raises(BadRequest):
        decode_frames(JSON_CODEC, b'{"t":"a"}\n{"t":')


def test_decode_frames_truncated_msgpack() -> None:
    frame = MSGPACK_CODEC.join([MSGPACK_CODEC.encode({"t": "a"}), MSGPACK_CODEC.encode({"t": "b"})])
    with pytest.raises(BadRequest):
        decode_frames(MSGPACK_CODEC, frame[:-1])
    with pytest.raises(BadRequest):
        decode_frames(MSGPACK_CODEC, frame + b"\xc1")


def test_decode_frames_msgpack_rejects_text() -> None:
    with pytest.raises(BadRequest):
        decode_frames(MSGPACK_CODEC, "text")


# --- malformed frames -----------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   ",
        b"{",
        b'{"t":"ping"',
        b'{"t":"ping"} x',
        b'{"t":"ping"}\n{"t":"ping"}',
        b"{'t':'ping'}",
        b'{"t":NaN}',
        b'{"t":Infinity}',
        b'{"t":-Infinity}',
        b"NaN",
        b"1e400",
        b'{"t":"\xff"}',
        b'{"t":"\xed\xa0\x80"}',
        b'"\\ud800"',
        b"[" * 100_000,
        b'{"a":' * 100_000,
        "",
        "{",
        '"\ud800"',
    ],
)
def test_json_rejects(data: bytes | str) -> None:
    assert _bad(JSON_CODEC, data).message == "frame is not valid JSON"


def test_json_accepts_non_object_values() -> None:
    # Shape is the business of parse_request, not of the codec.
    assert JSON_CODEC.decode(b"[1,2]") == [1, 2]
    assert JSON_CODEC.decode(b"null") is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        msgpack.packb({"t": "ping", "id": 1}) + b"\x00",
        msgpack.packb({"t": "ping"}) + msgpack.packb({"t": "ping"}),
        b"\x81\xa1t\xa1\xff",  # {"t": <invalid UTF-8 str>}
        b"\xa2\xed\xa0",
        b"\xc1",  # never used
        b"\x81\xa1t",  # truncated map
        b"\xdd\xff\xff\xff\xff",  # array claiming 4G items
        b"\x91" * 100_000,  # deep nesting
        b"\x81\x91\x01\x01",  # list as a map key
        b"\x81\x80\x01",  # map as a map key
        "{}",
    ],
)
def test_msgpack_rejects(data: bytes | str) -> None:
    assert _bad(MSGPACK_CODEC, data).message == "frame is not valid MessagePack"


def test_error_answer_shape() -> None:
    err = _bad(JSON_CODEC, b"{")
    assert err.to_wire(None) == {
        "t": "error",
        "id": None,
        "code": "bad_request",
        "message": "frame is not valid JSON",
    }


# --- properties -----------------------------------------------------------------------


@BOTH
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=512))
def test_arbitrary_bytes_decode_or_bad_request(codec: Codec, data: bytes) -> None:
    try:
        codec.decode(data)
    except BadRequest as exc:
        assert exc.code == "bad_request"


@BOTH
@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=512))
def test_arbitrary_bytes_decode_frames_or_bad_request(codec: Codec, data: bytes) -> None:
    try:
        decode_frames(codec, data)
    except BadRequest as exc:
        assert exc.code == "bad_request"


def test_arbitrary_text_json_decode_or_bad_request() -> None:
    @settings(max_examples=200, deadline=None)
    @given(text=st.text(max_size=256))
    def check(text: str) -> None:
        try:
            JSON_CODEC.decode(text)
        except BadRequest as exc:
            assert exc.code == "bad_request"

    check()


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)


@BOTH
@settings(max_examples=200, deadline=None)
@given(value=st.dictionaries(st.text(max_size=8), _json_values, max_size=6))
def test_round_trip_property(codec: Codec, value: dict[str, Any]) -> None:
    assert codec.decode(codec.encode(value)) == value
