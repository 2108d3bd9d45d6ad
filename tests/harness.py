"""An in-process server on 127.0.0.1 with real sockets, and helpers to talk to it."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from roomserver import config
from roomserver.app import HANDSHAKE_TIMEOUT_S, LISTEN_BACKLOG, build_app
from roomserver.auth import mint_token
from roomserver.broker.base import Broker
from roomserver.config import Settings
from roomserver.node import Node
from signaling.client import JSON, RoomClient
from signaling.lean import front_runner
from signaling.server import NODE_KEY

SECRET = "test-secret-0123456789-abcdefghijklmnop"
_users = itertools.count(1)


def make_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "secret": SECRET}
    base.update(overrides)
    return config.load({}, environ={}, **base)


@dataclass
class Server:
    url: str
    app: web.Application
    clients: list[RoomClient] = field(default_factory=list)

    @property
    def node(self) -> Node:
        return self.app[NODE_KEY]

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"

    @property
    def secret(self) -> str:
        return self.node.settings.secret

    def token(self, room: str, user: str | None = None, role: str = "member", **kw: Any) -> str:
        user = user or f"u{next(_users)}"
        name = kw.pop("name", user.capitalize())
        return mint_token(self.secret, room=room, user=user, name=name, role=role, **kw)

    async def create_room(self, room: str, title: str = "Test room", **fields: Any) -> None:
        status, body = await self.api("POST", "/api/rooms", {"id": room, "title": title, **fields})
        assert status == 201, body

    async def api(
        self, method: str, path: str, body: Any = None, secret: str | None = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {secret or self.secret}"}
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.url + path, json=body, headers=headers) as resp,
        ):
            text = await resp.text()
            try:
                return resp.status, await resp.json(content_type=None) if text else None
            except ValueError:
                return resp.status, text

    async def connect(self, subprotocol: str = JSON) -> RoomClient:
        client = await RoomClient.connect(self.ws_url, subprotocol)
        self.clients.append(client)
        return client

    async def member(
        self,
        room: str,
        user: str | None = None,
        role: str = "member",
        subprotocol: str = JSON,
        **join: Any,
    ) -> tuple[RoomClient, dict[str, Any]]:
        """A connection joined to ``room``; returns it with the join snapshot."""
        client = await self.connect(subprotocol)
        snapshot = await client.request(
            "join", room=room, token=self.token(room, user, role), **join
        )
        return client, snapshot


@asynccontextmanager
async def running_server(
    settings: Settings | None = None,
    broker: Broker | None = None,
    handshake_timeout: float = HANDSHAKE_TIMEOUT_S,
) -> AsyncIterator[Server]:
    settings = settings or make_settings()
    app = build_app(settings, broker)
    runner = front_runner(
        app, handle_signals=False, access_log=None, keepalive_timeout=handshake_timeout
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=LISTEN_BACKLOG)
    await site.start()
    port = runner.addresses[0][1]
    server = Server(url=f"http://127.0.0.1:{port}", app=app)
    try:
        yield server
    finally:
        for client in server.clients:
            await client.close()
        await runner.cleanup()
