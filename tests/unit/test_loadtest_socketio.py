"""The load tool's Socket.IO packet codec (Engine.IO v4 / Socket.IO v5 text packets),
and the CLI's refusals for the Socket.IO target, which happen before anything starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loadtest import cli
from loadtest.client import Connection
from loadtest.plan import ws_url
from loadtest.socketio import (
    Packet,
    SocketIOConnection,
    ack_message,
    connection_class,
    decode_packet,
    event_message,
    request_frame,
)

SCALARS = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
DATA = st.dictionaries(st.text(min_size=1, max_size=10), SCALARS, max_size=6)


def test_engine_io_packets() -> None:
    opened = decode_packet(b'0{"sid":"abc","upgrades":[],"pingInterval":25000}')
    assert opened.kind == "open" and opened.data["sid"] == "abc"
    assert decode_packet(b"2") == Packet("ping", data="")
    assert decode_packet(b"3probe") == Packet("pong", data="probe")
    assert decode_packet(b"1").kind == "close"
    assert decode_packet(b"6").kind == "noop"


def test_socket_io_connect_disconnect_and_refusal() -> None:
    assert decode_packet(b'40{"sid":"xyz"}') == Packet("connect", None, {"sid": "xyz"})
    assert decode_packet(b"41") == Packet("disconnect")
    refused = decode_packet(b'44{"message":"Not authorized"}')
    assert refused.kind == "connect_error" and refused.data == {"message": "Not authorized"}


def test_an_event_becomes_the_message_the_scenarios_read() -> None:
    chat = {"t": "chat", "room": "r", "seq": 7, "text": "hi", "cid": "1-2-3"}
    packet = decode_packet(b"42" + orjson.dumps(["chat", chat]))
    assert packet == Packet("event", None, ["chat", chat])
    assert event_message(packet.data) == chat
    # an event without "t" is named after the event; a non-object payload is wrapped
    assert event_message(["member.joined", {"user": "u"}]) == {"t": "member.joined", "user": "u"}
    assert event_message(["tick", 5]) == {"t": "tick", "data": 5}
    assert event_message(["bare"]) == {"t": "bare", "data": None}


def test_acks_become_ok_or_error_answers() -> None:
    packet = decode_packet(b'4312[{"seq":5,"ts":99}]')
    assert packet == Packet("ack", 12, [{"seq": 5, "ts": 99}])
    assert ack_message(packet) == {"t": "ok", "id": 12, "seq": 5, "ts": 99}
    error = decode_packet(b'433[{"error":"not_joined","message":"join first"}]')
    assert ack_message(error) == {
        "t": "error",
        "id": 3,
        "code": "not_joined",
        "message": "join first",
    }
    # an answer field named "t" or "id" cannot shadow what the tool matches on
    assert ack_message(Packet("ack", 4, [{"t": "x", "id": 9}])) == {"t": "ok", "id": 4}
    assert ack_message(Packet("ack", 5, [])) == {"t": "ok", "id": 5}
    assert ack_message(Packet("ack", 6, ["text"])) == {"t": "ok", "id": 6, "data": "text"}


def test_a_namespace_is_read_and_kept_apart_from_the_ack_id() -> None:
    packet = decode_packet(b'43/admin,17[{"ok":true}]')
    assert packet == Packet("ack", 17, [{"ok": True}], "/admin")
    assert decode_packet(b"40/admin,") == Packet("connect", None, None, "/admin")


def test_requests_are_written_with_their_ack_id() -> None:
    frame = request_frame({"t": "join", "id": 3, "room": "r1", "token": "tok"})
    assert frame == b'423["join",{"room":"r1","token":"tok"}]'
    assert request_frame({"t": "chat.send", "room": "r"}) == b'42["chat.send",{"room":"r"}]'


@given(st.text(min_size=1, max_size=20), st.integers(0, 10**9), DATA)
def test_a_request_decodes_back_to_what_was_sent(
    name: str, ack_id: int, data: dict[str, Any]
) -> None:
    message = {"t": name, "id": ack_id, **{k: v for k, v in data.items() if k not in ("t", "id")}}
    packet = decode_packet(request_frame(dict(message)))
    assert packet.kind == "event" and packet.ack_id == ack_id
    assert packet.data == [name, {k: v for k, v in message.items() if k not in ("t", "id")}]


@given(st.integers(0, 10**9), DATA)
def test_an_ack_of_any_object_keeps_its_fields(ack_id: int, data: dict[str, Any]) -> None:
    answer = ack_message(decode_packet(b"43%d" % ack_id + orjson.dumps([data])))
    if "error" in data:
        assert answer["t"] == "error" and answer["code"] == str(data["error"])
    else:
        assert answer == {**data, "t": "ok", "id": ack_id}


@pytest.mark.parametrize(
    "raw",
    [b"", b"9", b"4", b"49[]", b"42[broken", b"0not json", b"43x"],
)
def test_what_is_not_a_packet_is_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        packet = decode_packet(raw)
        if packet.kind == "event":
            event_message(packet.data)


def test_event_payload_must_be_a_named_list() -> None:
    for data in (None, [], [1, {}], {"t": "chat"}):
        with pytest.raises(ValueError):
            event_message(data)


def test_each_target_has_its_dialect_and_endpoint() -> None:
    assert connection_class("socketio") is SocketIOConnection
    assert connection_class("roomserver") is Connection
    assert ws_url("http://127.0.0.1:8080/") == "ws://127.0.0.1:8080/ws"
    assert (
        ws_url("http://127.0.0.1:8080", "socketio")
        == "ws://127.0.0.1:8080/socket.io/?EIO=4&transport=websocket"
    )
    assert ws_url("https://h:1", "socketio").startswith("wss://h:1/socket.io/?EIO=4")


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["votes", "--members", "10"], "join and chat only"),
        (["launch", "--members", "10"], "join and chat only"),
        (["chat", "--members", "10", "--encoding", "msgpack"], "JSON only"),
    ],
)
def test_the_cli_refuses_what_the_baseline_cannot_serve(
    argv: list[str], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*argv, "--target", "socketio", "--spawn", "1", "--out", str(tmp_path)]
    assert cli.main(args) == 2
    assert said in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing was started, nothing written
