"""Builds the one aiohttp application: pages, HTTP API, metrics and ``/ws``."""

from __future__ import annotations

import functools
import gc
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from roomserver import api, gcstats
from roomserver.broker.base import Broker
from roomserver.broker.memory import MemoryBroker
from roomserver.broker.redis import RedisBroker
from roomserver.config import Settings
from roomserver.node import MediaBackend, Node
from signaling.server import LINKS_KEY, NODE_KEY, close_all, websocket_handler

MAX_HTTP_BODY = 64 * 1024
#: A connection that has not sent a whole HTTP request (a WebSocket handshake or an
#: API call) within this time is closed, so slow or stalled handshakes cannot pile up.
#: aiohttp applies the same time to idle keep-alive connections between requests.
HANDSHAKE_TIMEOUT_S = 15.0
#: Pending TCP connections the kernel may queue: a launch-night burst of joins would
#: overflow aiohttp's default of 128, and every dropped SYN costs the client 1-3 s.
#: The kernel caps it at net.core.somaxconn (4096 on current Linux).
LISTEN_BACKLOG = 4096
log = logging.getLogger(__name__)


def make_broker(settings: Settings) -> Broker:
    """The memory broker by default; the Redis one when ``--redis`` is set."""
    if settings.redis:
        return RedisBroker(
            settings.redis,
            settings.node_id,
            prefix=settings.redis_prefix,
            history_size=settings.history_size,
        )
    return MemoryBroker(settings.node_id, settings.history_size)


def build_app(settings: Settings, broker: Broker | None = None) -> web.Application:
    node = Node(settings, broker or make_broker(settings))
    if settings.media:
        node.media = _make_media(settings, node)
    app = web.Application(client_max_size=MAX_HTTP_BODY, middlewares=[api.api_auth])
    app[NODE_KEY] = node
    app[LINKS_KEY] = set()
    app.router.add_get("/ws", websocket_handler)
    _add_gc_metrics(node)
    api.add_routes(app)
    _add_pages(app, settings.web_dir)

    async def start(_: web.Application) -> None:
        await node.start()

    async def stop(_: web.Application) -> None:
        await node.close()

    app.on_startup.append(start)
    app.on_shutdown.append(close_all)
    app.on_cleanup.append(stop)
    return app


def _add_gc_metrics(node: Node) -> None:
    gc_watch = gcstats.watch()
    node.metrics.counter(
        "roomserver_gc_pause_seconds_total",
        "time the process spent in garbage collections (all generations)",
        lambda: gc_watch.pause_seconds,
    )
    node.metrics.counter(
        "roomserver_gc_full_collections_total",
        "full (generation 2) garbage collections",
        lambda: float(gc_watch.collections[2]),
    )
    node.metrics.gauge(
        "roomserver_gc_frozen_objects",
        "objects left out of garbage collections (frozen after start-up)",
        lambda: float(gc.get_freeze_count()),
    )


def _make_media(settings: Settings, node: Node) -> MediaBackend | None:
    """The SFU, when ``media/`` provides one; media requests answer ``unavailable`` otherwise."""
    try:
        from media.sfu import SFU  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        log.warning("media disabled: %s", exc)
        return None
    sfu = SFU(settings, publisher_lost=node.publisher_lost)
    node.metrics.gauge(
        "roomserver_media_peer_connections",
        "WebRTC peer connections held by the SFU",
        lambda: float(sfu.peer_count),
    )
    snapshot = StatsSnapshot(sfu.stats)
    for key, meaning in (
        ("packets_in", "RTP packets received from publishers"),
        ("packets_out", "RTP packets sent to viewers"),
        ("retransmitted", "packets sent again to viewers that lost them (NACK)"),
        ("dropped", "packets a viewer's full socket could not take"),
        ("unanswered", "packets viewers asked for again that were no longer held"),
        ("plis_sent", "keyframe requests sent to publishers"),
    ):
        node.metrics.counter(
            f"roomserver_media_{key}_total", meaning, functools.partial(snapshot.read, key)
        )
    backend: MediaBackend = sfu
    return backend


class StatsSnapshot:
    """``stats()`` read once per scrape, not once per counter: the SFU's walks every peer."""

    def __init__(self, stats: Callable[[], dict[str, Any]], max_age_s: float = 0.5) -> None:
        self._stats = stats
        self._max_age_s = max_age_s
        self._taken: dict[str, Any] = {}
        self._taken_at: float | None = None

    def read(self, key: str) -> float:
        now = time.monotonic()
        if self._taken_at is None or now - self._taken_at > self._max_age_s:
            self._taken = self._stats()
            self._taken_at = now
        return float(self._taken[key])


def _add_pages(app: web.Application, web_dir: Path) -> None:
    if not web_dir.is_dir():
        return
    index = web_dir / "index.html"

    async def home(_: web.Request) -> web.StreamResponse:
        return web.FileResponse(index)

    app.router.add_get("/", home)
    app.router.add_static("/", web_dir, show_index=False, follow_symlinks=False)
