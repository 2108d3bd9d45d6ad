"""Janus (the C SFU) as a baseline for ``python -m media.bench``, driven over its HTTP API.

The media hot path issue measures our SFU against Janus 1.1's VideoRoom
plugin on the same machine. Measuring it in the same run as ours keeps the
comparison honest: this VM's CPU figures drift by a factor of two between
days. Debian's ``janus`` package is enough (``apt-get install janus``); the
bench skips this mode when the binary is missing.

Janus gathers ICE candidates on its interfaces but not on loopback, so inside
the bench's private network namespace it is given a veth carrying
127.0.0.1/32 (:func:`loopback_veth`) and told to use only that interface:
every packet still goes over ``lo`` (the address is local), nothing can leave
the namespace.

The VideoRoom flow differs from ours in one way that matters to a client: a
subscriber gets an *offer* from Janus and answers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp

JANUS = "janus"
LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
VETH = "vjanus"
ROOM_ID = 1234
PUBLISHER_ID = 1

_CORE_CONFIG = """general: {{
    configs_folder = "{folder}"
    plugins_folder = "{lib}/plugins"
    transports_folder = "{lib}/transports"
    events_folder = "{lib}/events"
    loggers_folder = "{lib}/loggers"
    debug_level = 3
    protected_folders = []
}}
certificates: {{
}}
media: {{
}}
nat: {{
    ice_enforce_list = "{veth}"
}}
plugins: {{
    disable = "{disabled_plugins}"
}}
transports: {{
    disable = "{disabled_transports}"
}}
loggers: {{
    disable = "libjanus_jsonlog.so"
}}
events: {{
    broadcast = false
}}
"""

_HTTP_CONFIG = """general: {{
    json = "plain"
    base_path = "/janus"
    http = true
    ip = "127.0.0.1"
    port = {port}
    https = false
}}
admin: {{
    admin_http = false
}}
"""

_OTHER_PLUGINS = (
    "audiobridge duktape echotest lua nosip recordplay sip streaming textroom videocall voicemail"
)
_OTHER_TRANSPORTS = "mqtt nanomsg pfunix rabbitmq websockets"


class JanusError(RuntimeError):
    """Janus answered a request with an error."""


def available() -> bool:
    return shutil.which(JANUS) is not None and (LIB / "plugins" / "libjanus_videoroom.so").exists()


@contextlib.contextmanager
def loopback_veth() -> Iterator[None]:
    """A veth in this (private) namespace carrying 127.0.0.1/32, for Janus to gather on;
    removed afterwards if it was made here."""
    if subprocess.run(["ip", "link", "show", VETH], capture_output=True).returncode == 0:
        yield
        return
    try:
        for command in (
            ["ip", "link", "add", VETH, "type", "veth", "peer", "name", VETH + "p"],
            ["ip", "addr", "add", "127.0.0.1/32", "dev", VETH],
            ["ip", "link", "set", VETH, "up"],
            ["ip", "link", "set", VETH + "p", "up"],
        ):
            subprocess.run(command, check=True, capture_output=True, timeout=10)
        yield
    finally:
        subprocess.run(["ip", "link", "del", VETH], capture_output=True, timeout=10)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for Janus's HTTP API."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _libraries(names: str) -> str:
    return ",".join(f"libjanus_{name}.so" for name in names.split())


def write_config(folder: Path, port: int) -> Path:
    """Janus's core and HTTP transport configuration, VideoRoom the only plugin."""
    core = folder / "janus.jcfg"
    core.write_text(
        _CORE_CONFIG.format(
            folder=folder,
            lib=LIB,
            veth=VETH,
            disabled_plugins=_libraries(_OTHER_PLUGINS),
            disabled_transports=_libraries(_OTHER_TRANSPORTS),
        )
    )
    (folder / "janus.transport.http.jcfg").write_text(_HTTP_CONFIG.format(port=port))
    (folder / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
    return core


@contextlib.asynccontextmanager
async def running(port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    """Janus listening on 127.0.0.1:``port`` until the block ends."""
    with loopback_veth(), tempfile.TemporaryDirectory(prefix="janus-") as folder:
        core = write_config(Path(folder), port)
        process = await asyncio.create_subprocess_exec(
            JANUS,
            "-C",
            str(core),
            "-F",
            folder,
            "-s",
            "0",  # no session timeout: the bench's sessions idle between phases
            "-o",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}/janus"
            async with aiohttp.ClientSession() as http:
                for _ in range(200):  # bounded: Janus serves within a second or two
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(url + "/info") as reply:
                            if reply.status == 200:
                                break
                    await asyncio.sleep(0.05)
                else:
                    raise RuntimeError("janus did not start")
            yield process
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 10)
                except TimeoutError:
                    process.kill()
                    await process.wait()


class JanusSession:
    """One Janus API session: requests, and the events its long poll brings back."""

    def __init__(self, http: aiohttp.ClientSession, url: str, session_id: int) -> None:
        self._http = http
        self._url = url
        self.id = session_id
        self._transactions = itertools.count()
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._poll = asyncio.ensure_future(self._long_poll())

    @classmethod
    async def create(cls, http: aiohttp.ClientSession, url: str) -> JanusSession:
        reply = await _post(http, url, {"janus": "create", "transaction": "create"})
        return cls(http, url, reply["data"]["id"])

    def _transaction(self) -> str:
        return f"t{os.getpid()}-{next(self._transactions)}"

    async def _send(
        self, message: dict[str, Any], handle: int | None = None, transaction: str | None = None
    ) -> dict[str, Any]:
        """POST ``message`` to this session (or its ``handle``) under a new transaction."""
        path = f"{self._url}/{self.id}" if handle is None else f"{self._url}/{self.id}/{handle}"
        return await _post(
            self._http, path, {**message, "transaction": transaction or self._transaction()}
        )

    async def attach(self) -> int:
        reply = await self._send({"janus": "attach", "plugin": "janus.plugin.videoroom"})
        handle: int = reply["data"]["id"]
        return handle

    async def request(self, handle: int, body: dict[str, Any]) -> dict[str, Any]:
        """A synchronous VideoRoom request (``create``, ...): its plugin data."""
        reply = await self._send({"janus": "message", "body": body}, handle)
        data: dict[str, Any] = reply["plugindata"]["data"]
        if "error" in data:
            raise JanusError(data["error"])
        return data

    async def message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """An asynchronous VideoRoom request (``join``, ``publish``, ``start``): its event."""
        transaction = self._transaction()
        waiting: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[transaction] = waiting
        message: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            message["jsep"] = jsep
        try:
            await self._send(message, handle, transaction)
            event = await asyncio.wait_for(waiting, 30)
        finally:
            self._waiting.pop(transaction, None)
        data = event["plugindata"]["data"]
        if "error" in data:
            raise JanusError(data["error"])
        return event

    async def _long_poll(self) -> None:
        url = f"{self._url}/{self.id}?maxev=20"
        while True:
            try:
                async with self._http.get(url) as reply:
                    events = await reply.json(content_type=None)
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
                continue
            for event in events if isinstance(events, list) else [events]:
                waiting = self._waiting.get(event.get("transaction", ""))
                if waiting is not None and not waiting.done() and event.get("janus") == "event":
                    waiting.set_result(event)

    async def close(self) -> None:
        self._poll.cancel()
        await asyncio.gather(self._poll, return_exceptions=True)
        with contextlib.suppress(aiohttp.ClientError, JanusError):
            await self._send({"janus": "destroy"})


async def _post(http: aiohttp.ClientSession, url: str, message: dict[str, Any]) -> dict[str, Any]:
    async with http.post(url, json=message) as reply:
        answer: dict[str, Any] = await reply.json(content_type=None)
    if answer.get("janus") == "error":
        raise JanusError(answer["error"])
    return answer


async def create_room(session: JanusSession, bitrate: int) -> None:
    """The VideoRoom the bench publishes to: VP8 and Opus, ``bitrate`` in REMB to publishers."""
    handle = await session.attach()
    await session.request(
        handle,
        {
            "request": "create",
            "room": ROOM_ID,
            "publishers": 1,
            "bitrate": bitrate,
            "videocodec": "vp8",
            "audiocodec": "opus",
        },
    )


async def publish(session: JanusSession, offer: str) -> str:
    """Join as the room's publisher with ``offer``; Janus's answer."""
    handle = await session.attach()
    await session.message(
        handle, {"request": "join", "ptype": "publisher", "room": ROOM_ID, "id": PUBLISHER_ID}
    )
    event = await session.message(handle, {"request": "publish"}, {"type": "offer", "sdp": offer})
    answer: str = event["jsep"]["sdp"]
    return answer


async def subscribe_offer(session: JanusSession) -> tuple[int, str]:
    """Join as a subscriber of the publisher: the handle, and Janus's offer."""
    handle = await session.attach()
    event = await session.message(
        handle,
        {
            "request": "join",
            "ptype": "subscriber",
            "room": ROOM_ID,
            "streams": [{"feed": PUBLISHER_ID}],
        },
    )
    offer: str = event["jsep"]["sdp"]
    return handle, offer


async def start(session: JanusSession, handle: int, answer: str) -> None:
    """Hand Janus the subscriber's answer; media flows."""
    await session.message(handle, {"request": "start"}, {"type": "answer", "sdp": answer})
