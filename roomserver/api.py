"""The operator's HTTP API, health and metrics, on the same port as the WebSocket.

``/api`` calls carry ``Authorization: Bearer <secret>``, compared in constant
time. Bodies are validated field by field; every failure is a JSON
``{"code", "message"}`` with the status the contract names.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Awaitable
from typing import Any, TypeVar

import orjson
from aiohttp import web

from roomserver.auth import mint_token
from roomserver.errors import ClientError
from roomserver.ids import Role
from roomserver.room import RoomInfo
from signaling.server import NODE_KEY

ROOM_ID = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")
MAX_TTL_S = 30 * 24 * 3600
T = TypeVar("T")


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _problem(status: int, code: str, message: str) -> web.Response:
    return _json(status, {"code": code, "message": message})


class _BadBody(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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
    except _BadBody as exc:
        return _problem(400, "bad_request", exc.message)


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
    if not await _guard(node.create_room(info)):
        return _problem(409, "conflict", f"room {room_id!r} already exists")
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


async def _guard(awaitable: Awaitable[T]) -> T:
    """Map a client error from the node (``unavailable``) to the HTTP answer."""
    try:
        return await awaitable
    except ClientError as exc:
        raise web.HTTPServiceUnavailable(
            body=orjson.dumps({"code": exc.code, "message": exc.message}),
            content_type="application/json",
        ) from None


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/rooms", create_room)
    app.router.add_get("/api/rooms/{id}", get_room)
    app.router.add_delete("/api/rooms/{id}", delete_room)
    app.router.add_post("/api/tokens", create_token)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
