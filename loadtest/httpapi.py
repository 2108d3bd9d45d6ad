"""The operator's HTTP API, as the load tool uses it: rooms, tokens, room status.

Invariants:

- Only the URLs the user gave (or the nodes the tool started) are contacted, and
  environment proxies are ignored (``trust_env=False``).
- Setup failures raise :class:`ApiError` naming the call and the status, since a run
  whose rooms or tokens could not be made must stop before it measures anything.
- Token minting is bounded in concurrency, so setting up 5,000 members does not open
  5,000 HTTP connections at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

TOKEN_CONCURRENCY = 32
HTTP_TIMEOUT_S = 30.0


class ApiError(RuntimeError):
    """An HTTP API call failed; the message names the call and the answer."""


@dataclass(frozen=True, slots=True)
class MemberId:
    """Who a simulated member is: its index, user id, display name and role."""

    index: int
    user: str
    name: str
    role: str
    room: str
    url: str  # the node's base URL (http://host:port)


class Api:
    """One HTTP session to the nodes; use as an async context manager."""

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Api:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S),
            connector=aiohttp.TCPConnector(limit=TOKEN_CONCURRENCY),
            trust_env=False,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, url: str, body: Any = None) -> tuple[int, Any]:
        assert self._session is not None, "use Api as an async context manager"
        headers = {"Authorization": f"Bearer {self._secret}"}
        async with self._session.request(method, url, json=body, headers=headers) as resp:
            data = await resp.json(content_type=None) if resp.content_length != 0 else None
            return resp.status, data

    async def create_room(self, base: str, room: str, title: str) -> None:
        status, data = await self._call("POST", f"{base}/api/rooms", {"id": room, "title": title})
        if status != 201:
            raise ApiError(f"POST /api/rooms {room!r}: {status} {data}")

    async def room_status(self, base: str, room: str) -> dict[str, Any]:
        status, data = await self._call("GET", f"{base}/api/rooms/{room}")
        if status != 200 or not isinstance(data, dict):
            raise ApiError(f"GET /api/rooms/{room}: {status} {data}")
        return data

    async def token(self, member: MemberId) -> str:
        body = {"room": member.room, "user": member.user, "name": member.name, "role": member.role}
        status, data = await self._call("POST", f"{member.url}/api/tokens", body)
        if status != 200 or not isinstance(data, dict) or "token" not in data:
            raise ApiError(f"POST /api/tokens for {member.user}: {status} {data}")
        token: str = data["token"]
        return token

    async def tokens(self, members: Sequence[MemberId]) -> list[str]:
        """A token per member, in order, at most ``TOKEN_CONCURRENCY`` calls at a time."""
        limit = asyncio.Semaphore(TOKEN_CONCURRENCY)

        async def one(member: MemberId) -> str:
            async with limit:
                return await self.token(member)

        return list(await asyncio.gather(*(one(m) for m in members)))


async def healthy(base: str, timeout_s: float) -> bool:
    """Whether ``GET /healthz`` answers 200 within ``timeout_s``."""
    try:
        async with (
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=timeout_s), trust_env=False
            ) as http,
            http.get(f"{base}/healthz") as resp,
        ):
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False
