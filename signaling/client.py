"""A small protocol client on ``websockets``, for tests, the load tool and scripts.

It speaks both encodings, splits multi-message server frames, matches answers
to requests by ``id``, and keeps every event it receives in arrival order so a
caller can wait for one without losing the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from signaling.codec import CODECS, decode_frames

JSON = "room.v1.json"
MSGPACK = "room.v1.msgpack"


class RequestFailed(Exception):
    """The server answered a request with ``error``."""

    def __init__(self, reply: dict[str, Any]) -> None:
        super().__init__(f"{reply.get('code')}: {reply.get('message')}")
        self.reply = reply
        self.code: str = reply.get("code", "")


class RoomClient:
    def __init__(self, ws: ClientConnection, subprotocol: str) -> None:
        self.ws = ws
        self.codec = CODECS[subprotocol]
        self.events: list[dict[str, Any]] = []
        self.frames = 0
        self._ids = itertools.count(1)
        self._waiting: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self._arrived = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, url: str, subprotocol: str = JSON, **kwargs: Any) -> RoomClient:
        ws = await websockets.connect(
            url,
            subprotocols=[websockets.Subprotocol(subprotocol)],
            max_size=None,
            compression=None,
            open_timeout=10,
            **kwargs,
        )
        return cls(ws, subprotocol)

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for frame in self.ws:
                self.frames += 1
                data = frame.encode() if isinstance(frame, str) else frame
                for message in decode_frames(self.codec, data):
                    self._route(message)
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("connection closed"))
        self._arrived.set()

    def _route(self, message: dict[str, Any]) -> None:
        if message.get("t") in ("ok", "error") and "id" in message:
            future = self._waiting.pop(message["id"], None)
            if future is not None and not future.done():
                future.set_result(message)
                return
        self.events.append(message)
        self._arrived.set()

    async def send_raw(self, data: bytes | str) -> None:
        await self.ws.send(data)

    async def call(self, t: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Send one request; return the answer, ``ok`` or ``error``."""
        request_id = fields.pop("id", None) or next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        body = self.codec.encode({"t": t, "id": request_id, **fields})
        try:
            await self.ws.send(body if self.codec.binary else body.decode())
        except websockets.ConnectionClosed as exc:
            self._waiting.pop(request_id, None)
            raise ConnectionError(f"connection closed: {exc}") from None
        return await asyncio.wait_for(future, timeout)

    async def request(self, t: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Send one request; return the ``ok`` answer or raise ``RequestFailed``."""
        reply = await self.call(t, timeout, **fields)
        if reply["t"] == "error":
            raise RequestFailed(reply)
        return reply

    async def event(
        self,
        t: str | None = None,
        timeout: float = 5.0,
        where: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """The first not yet taken event matching ``t`` and ``where``, waiting for it."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for index in range(len(self.events)):
                event = self.events[index]
                if (t is None or event.get("t") == t) and (where is None or where(event)):
                    self.events.pop(index)
                    return event
            if self._reader.done():
                raise ConnectionError(f"connection closed while waiting for {t}")
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                seen = [e.get("t") for e in self.events]
                raise TimeoutError(f"no {t} event within {timeout}s; have {seen}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def of_type(self, t: str) -> list[dict[str, Any]]:
        """Every received, not yet taken event of type ``t``."""
        return [e for e in self.events if e.get("t") == t]

    async def closed(self, timeout: float = 5.0) -> tuple[int | None, str]:
        """Wait for the server to close; returns its close code and reason."""
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        rcvd = self.ws.protocol.close_rcvd
        return (rcvd.code, rcvd.reason) if rcvd is not None else (None, "")

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
