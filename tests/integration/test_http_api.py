"""The operator's HTTP API, /healthz and /metrics, over real sockets."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt
import orjson
import pytest

from roomserver.api import ROOM_ID
from roomserver.auth import verify_token
from roomserver.ids import Role
from signaling.client import RoomClient
from tests.harness import Server


async def raw(
    server: Server,
    method: str,
    path: str,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    """An HTTP call with exactly these bytes and headers: (status, content type, text)."""
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.url + path, data=data, headers=headers or {}) as resp,
    ):
        return resp.status, resp.content_type, await resp.text()


def auth(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.secret}", "Content-Type": "application/json"}


async def until(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.02)


def metric(text: str, line_start: str) -> float:
    """The value of the sample whose line starts with ``line_start`` (name plus labels)."""
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no sample {line_start!r} in metrics")


# --- POST /api/rooms --------------------------------------------------------------------


async def test_create_room(server: Server) -> None:
    status, body = await server.api("POST", "/api/rooms", {"id": "r1", "title": "  Robot kit  "})
    assert status == 201
    assert body == {"id": "r1", "title": "Robot kit"}


async def test_create_room_twice_is_conflict(server: Server) -> None:
    assert (await server.api("POST", "/api/rooms", {"id": "dup", "title": "A"}))[0] == 201
    status, body = await server.api("POST", "/api/rooms", {"id": "dup", "title": "B"})
    assert status == 409
    assert body["code"] == "conflict"
    status, room = await server.api("GET", "/api/rooms/dup")
    assert status == 200 and room["title"] == "A"


async def test_create_room_without_id_generates_one(server: Server) -> None:
    status, body = await server.api("POST", "/api/rooms", {"title": "Anonymous"})
    assert status == 201
    assert body["title"] == "Anonymous"
    assert isinstance(body["id"], str) and ROOM_ID.match(body["id"])
    again = await server.api("POST", "/api/rooms", {"title": "Anonymous"})
    assert again[1]["id"] != body["id"]
    status, room = await server.api("GET", f"/api/rooms/{body['id']}")
    assert status == 200 and room["id"] == body["id"]


async def test_welcome_reaches_joining_members(server: Server) -> None:
    await server.create_room("hello", welcome="Ask anything!")
    _, snapshot = await server.member("hello", "ann")
    assert snapshot["room"]["welcome"] == "Ask anything!"
    assert snapshot["room"]["title"] == "Test room"


@pytest.mark.parametrize("data", [b"{not json", b"", b"\xff\xfe", b'{"title": "x",}'])
async def test_bad_json_body_is_400(server: Server, data: bytes) -> None:
    status, ctype, text = await raw(server, "POST", "/api/rooms", data, auth(server))
    assert status == 400
    assert ctype == "application/json"
    assert '"code":"bad_request"' in text


@pytest.mark.parametrize("body", [[{"title": "x"}], "title", 42, None])
async def test_body_must_be_an_object(server: Server, body: Any) -> None:
    status, _, text = await raw(server, "POST", "/api/rooms", orjson.dumps(body), auth(server))
    assert status == 400
    assert orjson.loads(text)["code"] == "bad_request"


@pytest.mark.parametrize(
    "body",
    [
        {"id": "x"},
        {"id": "x", "title": ""},
        {"id": "x", "title": "   "},
        {"id": "x", "title": 5},
        {"id": "x", "title": "t" * 201},
    ],
)
async def test_missing_or_bad_title_is_400_naming_title(
    server: Server, body: dict[str, Any]
) -> None:
    status, answer = await server.api("POST", "/api/rooms", body)
    assert status == 400
    assert answer["code"] == "bad_request"
    assert "title" in answer["message"]
    assert (await server.api("GET", "/api/rooms/x"))[0] == 404


@pytest.mark.parametrize("room_id", ["a b", "a/b", "é", "x" * 65, "", "a?b", 7, ["a"]])
async def test_bad_room_id_is_400(server: Server, room_id: Any) -> None:
    status, answer = await server.api("POST", "/api/rooms", {"id": room_id, "title": "T"})
    assert status == 400
    assert answer["code"] == "bad_request"
    assert answer["message"].startswith("id:")


@pytest.mark.parametrize("room_id", ["a", "A-z_0.9~", "x" * 64])
async def test_good_room_ids(server: Server, room_id: str) -> None:
    status, answer = await server.api("POST", "/api/rooms", {"id": room_id, "title": "T"})
    assert (status, answer["id"]) == (201, room_id)


# --- authorisation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/rooms"),
        ("GET", "/api/rooms/r1"),
        ("DELETE", "/api/rooms/r1"),
        ("POST", "/api/tokens"),
    ],
)
async def test_no_authorization_header_is_401(server: Server, method: str, path: str) -> None:
    await server.create_room("r1")
    data = b'{"id":"new","title":"T","room":"r1","user":"u","name":"U","role":"host"}'
    status, _, text = await raw(server, method, path, data, {"Content-Type": "application/json"})
    assert status == 401
    assert '"code":"unauthorized"' in text
    assert (await server.api("GET", "/api/rooms/r1"))[0] == 200  # DELETE did nothing
    assert (await server.api("GET", "/api/rooms/new"))[0] == 404  # POST did nothing


@pytest.mark.parametrize(
    "header",
    [
        "Bearer wrong-secret-wrong-secret-wrong-secret",
        "Bearer ",
        "Basic dGVzdDp0ZXN0",
        "bearer {secret}",
        "Bearer {secret}x",
        "{secret}",
    ],
)
async def test_wrong_secret_is_401(server: Server, header: str) -> None:
    headers = {"Authorization": header.format(secret=server.secret)}
    status, _, text = await raw(server, "POST", "/api/rooms", b'{"id":"w","title":"T"}', headers)
    assert status == 401
    assert '"code":"unauthorized"' in text
    assert (await server.api("GET", "/api/rooms/w"))[0] == 404


async def test_wrong_secret_via_helper(server: Server) -> None:
    status, body = await server.api(
        "GET", "/api/rooms/r1", secret="not-the-secret-not-the-secret-not-the"
    )
    assert status == 401
    assert body["code"] == "unauthorized"


# --- GET and DELETE /api/rooms/{id} -----------------------------------------------------


async def test_get_room_status(server: Server) -> None:
    await server.create_room("st", title="Status room")
    status, body = await server.api("GET", "/api/rooms/st")
    assert status == 200
    assert body == {
        "id": "st",
        "title": "Status room",
        "live": False,
        "members": 0,
        "likes": 0,
        "host": None,
        "cohosts": [],
    }
    host, _ = await server.member("st", "h", "host")
    viewer, _ = await server.member("st", "v")
    await viewer.request("like", room="st", n=3)
    status, body = await server.api("GET", "/api/rooms/st")
    assert status == 200
    assert set(body) == {"id", "title", "live", "members", "likes", "host", "cohosts"}
    assert body["members"] == 2
    assert body["host"] == "h"
    assert body["likes"] == 3
    await host.request("cohost.invite", room="st", user="v")
    await viewer.request("cohost.accept", room="st")
    await viewer.request("leave", room="st")
    status, body = await server.api("GET", "/api/rooms/st")
    assert body["members"] == 1
    assert body["cohosts"] == []


async def test_members_count_reflects_a_joined_member(server: Server) -> None:
    await server.create_room("mc")
    assert (await server.api("GET", "/api/rooms/mc"))[1]["members"] == 0
    client, _ = await server.member("mc", "ann")
    assert (await server.api("GET", "/api/rooms/mc"))[1]["members"] == 1
    await client.close()
    # The node drops a room's local state once its last local member has left.
    await until(lambda: "mc" not in server.node.rooms or server.node.rooms["mc"].member_count == 0)
    assert (await server.api("GET", "/api/rooms/mc"))[1]["members"] == 0


async def test_get_unknown_room_is_404(server: Server) -> None:
    status, body = await server.api("GET", "/api/rooms/nope")
    assert status == 404
    assert body["code"] == "not_found"


async def test_delete_ends_the_room(server: Server) -> None:
    await server.create_room("gone")
    client, _ = await server.member("gone", "ann")
    status, body = await server.api("DELETE", "/api/rooms/gone")
    assert status == 204
    assert body is None
    await until(lambda: client.of_type("kicked"))
    relevant = [e for e in client.events if e["t"] in ("room.ended", "kicked")]
    assert relevant == [
        {"t": "room.ended", "room": "gone"},
        {"t": "kicked", "room": "gone", "reason": "room_ended"},
    ]
    status, body = await server.api("GET", "/api/rooms/gone")
    assert status == 404
    await until(lambda: "gone" not in server.node.rooms)
    reply = await client.call("chat.send", room="gone", text="hi", cid="1")
    assert reply["code"] == "not_joined"
    assert (await server.api("DELETE", "/api/rooms/gone"))[0] == 404


async def test_delete_unknown_room_is_404(server: Server) -> None:
    status, body = await server.api("DELETE", "/api/rooms/nope")
    assert status == 404
    assert body["code"] == "not_found"


# --- POST /api/tokens -------------------------------------------------------------------


async def test_token_joins(server: Server) -> None:
    await server.create_room("tk")
    status, body = await server.api(
        "POST", "/api/tokens", {"room": "tk", "user": "u9", "name": "Nine", "role": "moderator"}
    )
    assert status == 200
    assert set(body) == {"token"}
    identity = verify_token(server.secret, body["token"], "tk")
    assert (identity.user, identity.name, identity.role) == ("u9", "Nine", Role.MODERATOR)
    client: RoomClient = await server.connect()
    snapshot = await client.request("join", room="tk", token=body["token"])
    assert snapshot["me"] == {"user": "u9", "name": "Nine", "role": "moderator"}
    other = await client.call("join", room="other", token=body["token"])
    assert other["code"] == "unauthorized"


async def test_token_ttl(server: Server) -> None:
    status, body = await server.api(
        "POST",
        "/api/tokens",
        {"room": "r", "user": "u", "name": "U", "role": "member", "ttl_s": 60},
    )
    assert status == 200
    claims = jwt.decode(body["token"], server.secret, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 60


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"role": "admin"}, "role"),
        ({"role": None}, "role"),
        ({"role": "Host"}, "role"),
        ({"ttl_s": 0}, "ttl_s"),
        ({"ttl_s": -5}, "ttl_s"),
        ({"ttl_s": 1.5}, "ttl_s"),
        ({"ttl_s": True}, "ttl_s"),
        ({"ttl_s": "60"}, "ttl_s"),
        ({"user": None}, "user"),
        ({"user": ""}, "user"),
        ({"user": "u" * 65}, "user"),
        ({"name": None}, "name"),
        ({"room": None}, "room"),
    ],
)
async def test_bad_token_requests_are_400(
    server: Server, change: dict[str, Any], field: str
) -> None:
    body: dict[str, Any] = {"room": "r", "user": "u", "name": "U", "role": "member"}
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    status, answer = await server.api("POST", "/api/tokens", body)
    assert status == 400
    assert answer["code"] == "bad_request"
    assert answer["message"].startswith(field)


# --- health and metrics -----------------------------------------------------------------


async def test_healthz_needs_no_auth(server: Server) -> None:
    status, ctype, text = await raw(server, "GET", "/healthz")
    assert status == 200
    assert ctype == "application/json"
    body = orjson.loads(text)
    assert body == {"ok": True, "node": server.node.settings.node_id}
    assert isinstance(body["node"], str) and body["node"]


async def test_metrics_needs_no_auth_and_names_the_series(server: Server) -> None:
    status, ctype, text = await raw(server, "GET", "/metrics")
    assert status == 200
    assert ctype == "text/plain"
    for name in (
        "roomserver_connections",
        "roomserver_chat_messages_accepted_total",
        "roomserver_errors_total",
        "roomserver_join_seconds_bucket",
    ):
        assert re.search(rf"^# TYPE {name.removesuffix('_bucket')} ", text, re.M), name
    assert metric(text, "roomserver_connections") == 0
    assert metric(text, "roomserver_chat_messages_accepted_total") == 0
    assert metric(text, 'roomserver_join_seconds_bucket{le="+Inf"}') == 0


async def test_metrics_count_chat_errors_and_joins(server: Server) -> None:
    await server.create_room("met")
    client, _ = await server.member("met", "ann")
    await client.request("chat.send", room="met", text="hello", cid="c1")
    await client.request("chat.send", room="met", text="hello", cid="c1")  # retry: not new
    reply = await client.call("chat.send", room="elsewhere", text="x", cid="c2")
    assert reply["code"] == "not_joined"
    _, _, text = await raw(server, "GET", "/metrics")
    assert metric(text, "roomserver_chat_messages_accepted_total") == 1
    assert metric(text, 'roomserver_errors_total{code="not_joined"}') == 1
    assert metric(text, "roomserver_connections") == 1
    assert metric(text, 'roomserver_join_seconds_bucket{le="+Inf"}') == 1
    assert metric(text, "roomserver_join_seconds_count") == 1
