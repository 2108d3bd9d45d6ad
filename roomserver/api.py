"""The operator's HTTP API, health and metrics, on the same port as the WebSocket.

``/api`` calls carry ``Authorization: Bearer <secret>``, compared in constant
time. Bodies are validated field by field; every failure is a JSON
``{"code", "message"}`` with the status the contract names.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import orjson
from aiohttp import web

from roomserver.auth import mint_token
from roomserver.errors import ClientError
from roomserver.ids import Role
from roomserver.room import RoomInfo
from roomserver.stats import report_csv
from signaling.messages import parse_request
from signaling.server import NODE_KEY

ROOM_ID = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")
MAX_TTL_S = 30 * 24 * 3600
T = TypeVar("T")


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _problem(status: int, code: str, message: str) -> web.Response:
    return _json(status, {"code": code, "message": message})


class _Problem(Exception):
    """An API error: answered as ``status`` with ``{"code", "message"}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class _BadBody(_Problem):
    def __init__(self, message: str) -> None:
        super().__init__(400, "bad_request", message)


@web.middleware
async def api_auth(request: web.Request, handler: Any) -> web.StreamResponse:
    """Check the secret on ``/api``; turn body errors into ``400``."""
    if request.path.startswith("/api/"):
        secret = request.app[NODE_KEY].settings.secret
        header = request.headers.get("Authorization", "")
        given = header[7:] if header.startswith("Bearer ") else ""
        if not given or not hmac.compare_digest(given.encode(), secret.encode()):
            return _problem(401, "unauthorized", "missing or wrong secret")
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except _Problem as exc:
        return _problem(exc.status, exc.code, exc.message)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise _BadBody("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _BadBody("body must be a JSON object")
    return body


def _text(body: dict[str, Any], key: str, low: int, high: int, *, required: bool) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise _BadBody(f"{key}: required")
        return None
    if not isinstance(value, str) or not low <= len(value.strip()) <= high:
        raise _BadBody(f"{key}: must be a string of {low}-{high} characters")
    return value.strip()


async def create_room(request: web.Request) -> web.Response:
    body = await _body(request)
    room_id = body.get("id")
    if room_id is None:
        room_id = "r-" + secrets.token_hex(6)
    elif not isinstance(room_id, str) or not ROOM_ID.match(room_id):
        raise _BadBody("id: must be 1-64 characters of letters, digits, '.', '_', '~' or '-'")
    title = _text(body, "title", 1, 200, required=True)
    welcome = _text(body, "welcome", 1, 1000, required=False)
    node = request.app[NODE_KEY]
    assert title is not None
    info = RoomInfo(id=room_id, title=title, welcome=welcome, created_at=node.clock.now_ms())
    when_live = _flag(body, "record_when_live")
    if when_live and node.media is None:
        return _problem(503, "unavailable", "media is not enabled on this node")
    if not await _guard(node.create_room(info)):
        return _problem(409, "conflict", f"room {room_id!r} already exists")
    if when_live:
        await _guard(node.operator_recording(info.id, None, True))
    return _json(201, {"id": info.id, "title": info.title})


async def get_room(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    status = await _guard(node.room_status(request.match_info["id"]))
    if status is None:
        return _problem(404, "not_found", "no such room")
    return _json(200, status)


async def delete_room(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    if not await _guard(node.end_room(request.match_info["id"])):
        return _problem(404, "not_found", "no such room")
    return web.Response(status=204)


async def create_token(request: web.Request) -> web.Response:
    body = await _body(request)
    room = _text(body, "room", 1, 64, required=True)
    user = _text(body, "user", 1, 64, required=True)
    name = _text(body, "name", 1, 64, required=True)
    role = body.get("role")
    if role not in {r.value for r in Role}:
        raise _BadBody("role: must be host, moderator or member")
    ttl = body.get("ttl_s", 6 * 3600)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= MAX_TTL_S:
        raise _BadBody(f"ttl_s: must be an integer of 1-{MAX_TTL_S}")
    assert room is not None and user is not None and name is not None
    secret = request.app[NODE_KEY].settings.secret
    token = mint_token(secret, room=room, user=user, name=name, role=role, ttl_s=ttl)
    return _json(200, {"token": token})


async def healthz(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    return _json(200, {"ok": True, "node": node.settings.node_id})


async def metrics(request: web.Request) -> web.Response:
    text = request.app[NODE_KEY].metrics.render()
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


_STATUS = {"bad_request": 400, "forbidden": 403, "not_found": 404, "unavailable": 503}


async def _guard(awaitable: Awaitable[T]) -> T:
    """Map a client error from the node to an HTTP answer with the same code."""
    try:
        return await awaitable
    except ClientError as exc:
        raise _Problem(_STATUS.get(exc.code, 409), exc.code, exc.message) from None


def _as_request(t: str, room: str, body: dict[str, Any]) -> Any:
    """Validate an API body with the protocol's own rules for request type ``t``."""
    try:
        return parse_request({**body, "t": t, "id": 0, "room": room})
    except ClientError as exc:
        raise _BadBody(exc.message) from None


async def post_message(request: web.Request) -> web.Response:
    body = await _body(request)
    room = request.match_info["id"]
    cid = body.get("cid") or "api-" + secrets.token_hex(8)
    sent = _as_request("chat.send", room, {"text": body.get("text"), "cid": cid})
    name = _text(body, "name", 1, 64, required=False) or "System"
    pin = body.get("pin", False)
    if not isinstance(pin, bool):
        raise _BadBody("pin: must be true or false")
    node = request.app[NODE_KEY]
    result = await _guard(node.post_system_message(room, sent.text, sent.cid, name, pin))
    return _json(201, result)


async def post_poll(request: web.Request) -> web.Response:
    body = await _body(request)
    room = request.match_info["id"]
    poll = _as_request("poll.create", room, body)
    result = await _guard(request.app[NODE_KEY].operator_poll(room, poll))
    return _json(201, result)


async def post_product(request: web.Request) -> web.Response:
    body = await _body(request)
    room = request.match_info["id"]
    if "product" not in body:
        raise _BadBody("product: required (an object, or null to unpin)")
    product = None
    if body["product"] is not None:
        product = _as_request("product.pin", room, {"product": body["product"]}).product.to_wire()
    await _guard(request.app[NODE_KEY].operator_product(room, product))
    return _json(200, {"product": product})


async def post_kick(request: web.Request) -> web.Response:
    body = await _body(request)
    room = request.match_info["id"]
    target = _as_request("mod.kick", room, {"user": body.get("user")})
    ban = body.get("ban", False)
    if not isinstance(ban, bool):
        raise _BadBody("ban: must be true or false")
    await _guard(request.app[NODE_KEY].operator_kick(room, target.user, ban))
    return web.Response(status=204)


def _flag(body: dict[str, Any], key: str) -> bool | None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise _BadBody(f"{key}: must be true or false")
    return value


async def post_recording(request: web.Request) -> web.Response:
    """Start or stop recording now (``on``) and set ``record_when_live``; either or both."""
    body = await _body(request)
    on, when_live = _flag(body, "on"), _flag(body, "record_when_live")
    if on is None and when_live is None:
        raise _BadBody("give on, record_when_live or both")
    node = request.app[NODE_KEY]
    result = await _guard(node.operator_recording(request.match_info["id"], on, when_live))
    return _json(200, result)


async def get_stats(request: web.Request) -> web.StreamResponse:
    report = await _guard(request.app[NODE_KEY].room_stats(request.match_info["id"]))
    if report is None:
        return _problem(404, "not_found", "no such room, and no kept report")
    if request.query.get("format") == "csv":
        return web.Response(text=report_csv(report), content_type="text/csv", charset="utf-8")
    return _json(200, report)


# -- recordings (issue 12) -------------------------------------------------------------
#
# Listing is an /api call (the secret). The files are served under /recordings with
# a signed link, so a <video> element can fetch them with range requests: the
# listing returns ``exp`` and ``sig`` (HMAC-SHA256 of the secret over room and
# expiry) that open every recording of that room until ``exp``.

RECORDING_LINK_S = 6 * 3600


def recording_signature(secret: str, room: str, expires: int) -> str:
    message = f"recordings:{room}:{expires}".encode()
    return hmac.new(secret.encode(), message, "sha256").hexdigest()


async def get_recordings(request: web.Request) -> web.Response:
    from media.record import list_recordings  # media is optional: imported when used

    settings = request.app[NODE_KEY].settings
    room = request.match_info["id"]
    expires = int(time.time()) + RECORDING_LINK_S
    sig = recording_signature(settings.secret, room, expires)
    query = f"exp={expires}&sig={sig}"
    recordings = list_recordings(Path(settings.recordings_dir), room)
    base = f"/recordings/{room}/"
    for rec in recordings:
        rec["manifest_url"] = f"{base}{rec['name']}.json?{query}"
        rec["timeline_url"] = f"{base}{rec['timeline']}?{query}"
        rec["replay_url"] = f"/replay.html?room={room}&rec={rec['name']}&{query}"
        for segment in rec["segments"]:
            segment["url"] = f"{base}{segment['file']}?{query}"
    return _json(200, {"room": room, "exp": expires, "sig": sig, "recordings": recordings})


async def get_recording_file(request: web.Request) -> web.StreamResponse:
    from media.record import room_dir  # media is optional: imported when used

    settings = request.app[NODE_KEY].settings
    room, name = request.match_info["id"], request.match_info["file"]
    header = request.headers.get("Authorization", "")
    allowed = header.startswith("Bearer ") and hmac.compare_digest(
        header[7:].encode(), settings.secret.encode()
    )
    try:
        expires = int(request.query.get("exp", "0"))
    except ValueError:
        expires = 0
    if not allowed and expires >= time.time():
        good = recording_signature(settings.secret, room, expires)
        allowed = hmac.compare_digest(request.query.get("sig", "").encode(), good.encode())
    if not allowed:
        return _problem(403, "forbidden", "missing, wrong or expired link")
    path = room_dir(Path(settings.recordings_dir), room) / name
    if "/" in name or "\\" in name or name.startswith(".") or not path.is_file():
        return _problem(404, "not_found", "no such recording file")
    return web.FileResponse(path)  # answers Range requests (206) for seeking


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/rooms/{id}/recordings", get_recordings)
    app.router.add_get("/recordings/{id}/{file}", get_recording_file)
    app.router.add_post("/api/rooms", create_room)
    app.router.add_get("/api/rooms/{id}", get_room)
    app.router.add_delete("/api/rooms/{id}", delete_room)
    app.router.add_post("/api/tokens", create_token)
    app.router.add_post("/api/rooms/{id}/messages", post_message)
    app.router.add_post("/api/rooms/{id}/polls", post_poll)
    app.router.add_post("/api/rooms/{id}/product", post_product)
    app.router.add_post("/api/rooms/{id}/kick", post_kick)
    app.router.add_post("/api/rooms/{id}/recording", post_recording)
    app.router.add_get("/api/rooms/{id}/stats", get_stats)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
