"""The only WebSocket code: shuttles frames between a socket, the session and the node.

One reader loop per connection handles requests in order; one writer task
drains the connection's outbox, packing everything queued into one frame (the
contract lets a server frame carry several messages). A connection whose
outbox overflows has its TCP connection aborted, so a client that stops
reading costs the room nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from roomserver.hub import Conn
from roomserver.netaddr import client_address, networks
from roomserver.node import Node
from signaling.codec import CODECS, codec_for
from signaling.session import CLOSE_POLICY, MAX_FRAME_BYTES, Session

log = logging.getLogger(__name__)

NODE_KEY = web.AppKey("node", Node)
LINKS_KEY: web.AppKey[set[Any]] = web.AppKey("links", set)
CLOSE_GOING_AWAY = 1001
SUBPROTOCOLS = tuple(CODECS)
CLOSE_TIMEOUT_S = 2.0
DRAIN_TIMEOUT_S = 5.0


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE_KEY]
    if node.draining:
        raise web.HTTPServiceUnavailable(text="this node is shutting down; connect to another")
    peer = client_address(
        request.remote or "",
        request.headers.getall("X-Forwarded-For", ()),
        networks(node.settings.trusted_proxy),
    )
    conn = Conn(codec_for(None), peer=peer, limit=node.settings.send_queue_limit)
    if not node.open_connection(conn):
        raise web.HTTPTooManyRequests(text="too many connections from this address")
    ws = web.WebSocketResponse(
        protocols=SUBPROTOCOLS,
        max_msg_size=MAX_FRAME_BYTES + 1,  # aiohttp refuses sizes >= its limit
        compress=False,
        heartbeat=30.0,
        decode_text=False,
    )
    try:
        await ws.prepare(request)
    except BaseException:
        await node.connection_closed(conn)
        raise
    conn.start(request.transport, codec_for(ws.ws_protocol), node.settings.send_ring)
    session = Session(conn.codec)
    link = _Link(ws, request, conn, node)
    conn.on_overflow = link.drop_slow
    links: set[_Link] = request.app[LINKS_KEY]
    links.add(link)
    try:
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            if not await handle_frame(node, conn, session, link, msg.data):
                break
    finally:
        links.discard(link)
        link.finished.set()
        await node.connection_closed(conn)
        await link.stop()
    return ws


class ReadingLink(Protocol):
    """What :func:`handle_frame` needs of a connection's link (either WebSocket path)."""

    busy: bool

    async def flush_then_close(self, code: int, reason: bytes) -> None: ...


async def handle_frame(
    node: Node, conn: Conn, session: Session, link: ReadingLink, data: bytes
) -> bool:
    """One client message: an error answer, or a request dispatched and answered.
    False when the connection must stop reading (too many bad frames, overflowed)."""
    outcome = session.receive(data)
    if isinstance(outcome, dict):
        node.metrics.errors.inc(outcome["code"])
        conn.answer(outcome)
        if session.should_close:
            await link.flush_then_close(CLOSE_POLICY, b"too many bad frames")
            return False
        return True
    link.busy = True
    try:
        await node.dispatch(conn, outcome)
    finally:
        link.busy = False
    return not conn.overflowed


async def close_all(app: web.Application) -> None:
    """Graceful shutdown: refuse new sockets, tell clients to reconnect, finish, close.

    Every connection gets a ``reconnect`` event, requests already being handled
    are answered (waiting at most ``DRAIN_TIMEOUT_S``), queued messages are
    written, and then each socket is closed with 1001 ("going away").
    """
    node = app[NODE_KEY]
    node.draining = True
    live: set[_Link] = app[LINKS_KEY]
    links = list(live)
    for link in links:
        link.conn.answer({"t": "reconnect", "reason": "shutdown", "retry_after_ms": 500})
    deadline = asyncio.get_running_loop().time() + DRAIN_TIMEOUT_S
    while any(link.busy for link in links):
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.02)
    await asyncio.gather(
        *(link.close(CLOSE_GOING_AWAY, b"server shutting down") for link in links),
        return_exceptions=True,
    )


class _Link:
    """How one connection ends. Writing is the hub's: see :mod:`roomserver.hub`."""

    def __init__(
        self, ws: web.WebSocketResponse, request: web.Request, conn: Conn, node: Node
    ) -> None:
        self.ws = ws
        self.request = request
        self.conn = conn
        self.node = node
        self.finished = asyncio.Event()
        self.busy = False

    def drop_slow(self) -> None:
        """The outbox overflowed: drop the TCP connection at once.

        A close frame would queue behind the data the client is not reading, so
        the connection is aborted; the client sees it drop, reconnects and
        resumes with ``since``.
        """
        self.node.metrics.slow_disconnects.inc()
        log.info("slow client dropped conn=%d peer=%s", self.conn.id, self.conn.peer)
        self.conn.close()
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    async def flush_then_close(self, code: int, reason: bytes) -> None:
        """Send what is queued (the last error answer), then close."""
        await self.close(code, reason, from_reader=True)

    async def close(self, code: int, reason: bytes, *, from_reader: bool = False) -> None:
        """Write what is queued, then a close frame; drop the TCP connection if the
        peer does not finish closing."""
        await self.conn.wait_empty(CLOSE_TIMEOUT_S)
        self.conn.close()
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason), CLOSE_TIMEOUT_S)
            if not from_reader:
                await asyncio.wait_for(self.finished.wait(), CLOSE_TIMEOUT_S)
        except (TimeoutError, ConnectionError, RuntimeError):
            transport = self.request.transport
            if transport is not None:
                transport.abort()

    async def stop(self) -> None:
        self.finished.set()
        self.conn.close()
