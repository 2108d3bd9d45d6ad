"""Signed webhook deliveries to the store's systems, never in a room's way.

Invariants:

* Enqueueing never waits: each endpoint has a bounded queue; when it is full
  the oldest delivery is dropped (and counted), so a dead endpoint can only
  lose its own backlog, never slow a room.
* Each delivery carries a unique ``id``; a delivery is retried with
  exponential backoff until it gets a 2xx or ``retry_s`` has passed, so it
  arrives at least once, and a receiver drops repeats by ``id``.
* The body is signed with HMAC-SHA256 under the server secret; the signature
  header is ``X-Roomserver-Signature: sha256=<hex>`` over the exact body bytes.
* The node that caused an event enqueues it, so with several nodes each event
  is delivered by one node.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Roomserver-Signature"
ID_HEADER = "X-Roomserver-Delivery"
EVENT_HEADER = "X-Roomserver-Event"
QUEUE_LIMIT = 10_000
REQUEST_TIMEOUT_S = 10.0

#: Every event a webhook may carry.
EVENTS = (
    "room.started",
    "room.ended",
    "stream.started",
    "stream.ended",
    "member.joined",
    "member.left",
    "cohost.joined",
    "cohost.left",
    "poll.closed",
    "moderation",
)


def sign(secret: str, body: bytes) -> str:
    """The signature header value for ``body``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does: recompute and compare in constant time."""
    return hmac.compare_digest(sign(secret, body), header)


def payload(event: str, room: str, ts: int, data: dict[str, Any]) -> bytes:
    """The JSON body of one delivery."""
    return orjson.dumps(
        {"id": "wh_" + secrets.token_hex(12), "event": event, "room": room, "ts": ts, "data": data}
    )


def backoff(first_s: float = 0.5, cap_s: float = 30.0) -> Iterator[float]:
    """Delays between attempts: doubling from ``first_s`` up to ``cap_s``."""
    delay = first_s
    while True:
        yield delay
        delay = min(delay * 2, cap_s)


@dataclass(slots=True)
class _Endpoint:
    url: str
    queue: deque[bytes] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: int = 0
    delivered: int = 0
    failed_attempts: int = 0


class WebhookSender:
    """One bounded queue and one worker per endpoint URL."""

    def __init__(
        self,
        urls: Sequence[str],
        secret: str,
        *,
        retry_s: float = 300.0,
        queue_limit: int = QUEUE_LIMIT,
        first_backoff_s: float = 0.5,
    ) -> None:
        self._secret = secret
        self._retry_s = retry_s
        self._queue_limit = queue_limit
        self._first_backoff_s = first_backoff_s
        self._endpoints = [_Endpoint(url) for url in urls]
        self._workers: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._endpoints)

    def stats(self) -> dict[str, dict[str, int]]:
        return {
            e.url: {
                "queued": len(e.queue),
                "delivered": e.delivered,
                "dropped": e.dropped,
                "failed_attempts": e.failed_attempts,
            }
            for e in self._endpoints
        }

    async def start(self) -> None:
        if not self._endpoints:
            return
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        self._session = aiohttp.ClientSession(timeout=timeout)
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._work(e)) for e in self._endpoints]

    async def close(self) -> None:
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        if self._session is not None:
            await self._session.close()

    def send(self, event: str, room: str, ts: int, data: dict[str, Any]) -> None:
        """Queue one event for every endpoint; never waits."""
        if not self._endpoints:
            return
        body = payload(event, room, ts, data)
        for endpoint in self._endpoints:
            if len(endpoint.queue) >= self._queue_limit:
                endpoint.queue.popleft()
                endpoint.dropped += 1
            endpoint.queue.append(body)
            endpoint.wake.set()

    async def _work(self, endpoint: _Endpoint) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not endpoint.queue:
                endpoint.wake.clear()
                await endpoint.wake.wait()
            body = endpoint.queue[0]
            give_up_at = loop.time() + self._retry_s
            for delay in backoff(self._first_backoff_s):
                if await self._post(endpoint, body):
                    endpoint.delivered += 1
                    break
                endpoint.failed_attempts += 1
                if loop.time() + delay > give_up_at:
                    log.warning("webhook given up url=%s", endpoint.url)
                    break
                await asyncio.sleep(delay)
            if endpoint.queue and endpoint.queue[0] is body:
                endpoint.queue.popleft()

    async def _post(self, endpoint: _Endpoint, body: bytes) -> bool:
        assert self._session is not None
        event = orjson.loads(body)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, body),
            ID_HEADER: event["id"],
            EVENT_HEADER: event["event"],
        }
        try:
            async with self._session.post(endpoint.url, data=body, headers=headers) as response:
                return 200 <= response.status < 300
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.debug("webhook attempt failed url=%s: %s", endpoint.url, exc)
            return False
