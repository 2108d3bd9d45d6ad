"""Arbitrary and mutated frames against a live server, in both encodings.

Every frame gets exactly one answer; errors carry a code of the contract and
never ``internal``; the connection keeps working and so does everyone else's.
The server runs in a thread with its own event loop so that hypothesis can
drive a synchronous client.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import threading
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from roomserver.errors import ERROR_CODES
from signaling.client import JSON, MSGPACK
from signaling.codec import CODECS, decode_frames
from tests.harness import Server, make_settings, running_server

pytestmark = pytest.mark.slow
ROOM = "fz"
_users = itertools.count(1)

VALID: dict[str, dict[str, Any]] = {
    "leave": {},
    "chat.send": {"text": "hello", "cid": "c1"},
    "chat.history": {"limit": 5},
    "chat.read": {"seq": 0},
    "chat.readers": {"seq": 1},
    "poll.create": {"question": "Q?", "options": ["a", "b"], "duration_s": 60},
    "poll.vote": {"poll": "p1", "option": 0},
    "poll.close": {"poll": "p1"},
    "like": {"n": 3},
    "product.pin": {"product": {"id": "p", "title": "T", "price": "1.00", "currency": "EUR"}},
    "product.unpin": {},
    "cohost.request": {},
    "cohost.invite": {"user": "someone"},
    "cohost.accept": {},
    "cohost.decline": {},
    "cohost.end": {"user": "someone"},
    "mod.mute": {"user": "someone", "seconds": 5},
    "mod.kick": {"user": "someone"},
    "mod.ban": {"user": "someone"},
    "mod.delete": {"seq": 1},
    "room.end": {},
    "rtc.publish": {"sdp": "v=0"},
    "rtc.subscribe": {"publisher": "h", "sdp": "v=0"},
    "rtc.unpublish": {},
    "rtc.unsubscribe": {"publisher": "h"},
    "ping": {},
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated_requests(draw: st.DrawFn) -> dict[str, Any]:
    t = draw(st.sampled_from(sorted(VALID)))
    request: dict[str, Any] = {"t": t, "id": draw(st.integers(0, 10**6)), "room": ROOM, **VALID[t]}
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from([*request, "extra", "id", "t", "room"]))
        action = draw(st.sampled_from(["replace", "drop", "huge"]))
        if action == "drop":
            request.pop(key, None)
        elif action == "huge":
            request[key] = draw(
                st.sampled_from([2**64, -(2**63), "x" * 5000, [[[[[]]]]], math.nan])
            )
        else:
            request[key] = draw(values)
    return request


frames = st.one_of(
    mutated_requests(),
    values,
    st.binary(max_size=200),
    st.just(b"\xff\xfe\xfd"),
    st.just("[" * 5000),
)


class LiveServer:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.context = running_server(make_settings(chat_rate=1000, chat_burst=1000))

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def __enter__(self) -> Server:
        self.thread.start()
        server: Server = self.run(self.context.__aenter__())
        self.run(server.create_room(ROOM))
        return server

    def __exit__(self, *exc: object) -> None:
        self.run(self.context.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def live() -> Iterator[Server]:
    with LiveServer() as server:
        yield server


def encode(frame: Any, subprotocol: str) -> bytes | str | None:
    """The frame on the wire; None when the encoding cannot express it (MessagePack ints
    beyond 64 bits), so no client could send it."""
    if isinstance(frame, bytes):
        return frame
    if isinstance(frame, str) and frame.startswith("["):
        return frame
    if subprotocol == MSGPACK:
        try:
            packed: bytes = msgpack.packb(frame, use_bin_type=True)
        except OverflowError:
            return None
        return packed
    return json.dumps(frame, allow_nan=True)


def send(ws: ClientConnection, frame: Any, subprotocol: str) -> None:
    data = encode(frame, subprotocol)
    assert data is not None
    ws.send(data)


def answer(ws: ClientConnection, subprotocol: str) -> dict[str, Any]:
    """The next ``ok``/``error`` answer; events in between are skipped."""
    for _ in range(1000):
        data = ws.recv(timeout=10)
        raw = data.encode() if isinstance(data, str) else data
        for message in decode_frames(CODECS[subprotocol], raw):
            if message.get("t") in ("ok", "error"):
                return message
    raise AssertionError("no answer")


def join(ws: ClientConnection, server: Server, subprotocol: str) -> None:
    token = server.token(ROOM, f"fuzz{next(_users)}")
    send(ws, {"t": "join", "id": "j", "room": ROOM, "token": token}, subprotocol)
    assert answer(ws, subprotocol)["t"] == "ok"


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    subprotocol=st.sampled_from([JSON, MSGPACK]),
    sent=st.lists(frames, min_size=1, max_size=12),
)
def test_every_frame_is_answered_with_a_contract_code(
    live: Server, subprotocol: str, sent: list[Any]
) -> None:
    with connect(live.ws_url, subprotocols=[subprotocol], max_size=None) as ws:  # type: ignore[list-item]
        join(ws, live, subprotocol)
        for frame in sent:
            data = encode(frame, subprotocol)
            if data is None:
                continue
            ws.send(data)
            try:
                reply = answer(ws, subprotocol)
            except ConnectionClosed:
                # Only a kick/ban/room end or a left room may end a member's stream of events;
                # the socket itself must stay open, so a close here is a failure.
                raise AssertionError(f"server closed the connection after {frame!r}") from None
            if reply["t"] == "error":
                assert reply["code"] in ERROR_CODES and reply["code"] != "internal", reply
                assert isinstance(reply["message"], str)
        send(ws, {"t": "ping", "id": 1}, subprotocol)
        assert answer(ws, subprotocol)["t"] == "ok"


def test_bystanders_are_unaffected(live: Server) -> None:
    """After the fuzzing, a fresh member still joins and chats normally."""
    with connect(live.ws_url, subprotocols=[JSON]) as ws:  # type: ignore[list-item]
        join(ws, live, JSON)
        ws.send(
            json.dumps({"t": "chat.send", "id": 2, "room": ROOM, "text": "still here", "cid": "x"})
        )
        reply = answer(ws, JSON)
        assert reply["t"] == "ok" and reply["seq"] >= 1
