"""deploy/nginx.conf in front of two nodes sharing a Redis: pages, API and WebSockets pass,
both upstreams serve, per-IP limits count the client's address, and a draining node's
clients come back through nginx to the other node.

nginx runs in the foreground from its own folder (config, pid, logs, temp files), on a
free 127.0.0.1 port; the nodes trust only 127.0.0.1. All test traffic comes from
127.0.0.1, so distinct clients are simulated by setting X-Forwarded-For: nginx appends
the address it saw, and the nodes take the right-most address that is not a proxy.
Every process is stopped in a ``finally``; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import aiohttp
import pytest
import websockets

from roomserver.auth import mint_token
from signaling.client import RoomClient
from tests.harness import SECRET
from tests.nodes import NodeProcess, start_node
from tests.redis_server import RedisServer, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "nginx.conf"
NGINX_START_S = 10.0
_prefixes = itertools.count(1)

MAIN_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log info;
events { worker_connections 256; }
http {
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    include $dir/roomserver.conf;
}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    if found is None:
        pytest.fail("Debian's nginx is missing: .ci/run installs it (apt-get install nginx)")
    return found


@dataclass
class Proxied:
    url: str
    nodes: list[NodeProcess]
    folder: Path

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"

    async def connect(self, client_ip: str) -> RoomClient:
        """A WebSocket through nginx, as if from ``client_ip``."""
        return await RoomClient.connect(
            self.ws_url, additional_headers={"X-Forwarded-For": client_ip}
        )


async def get(url: str, **headers: str) -> tuple[int, str]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(url, headers=headers) as resp,
    ):
        return resp.status, await resp.text()


async def connections(node: NodeProcess) -> int:
    """The node's open WebSockets, from its own /metrics (not through nginx)."""
    status, text = await get(node.url + "/metrics")
    assert status == 200
    found = re.search(r"^roomserver_connections (\S+)$", text, re.M)
    assert found is not None, text
    return int(float(found.group(1)))


@contextlib.asynccontextmanager
async def proxied(redis: RedisServer, *node_args: str) -> AsyncIterator[Proxied]:
    """Two nodes sharing ``redis`` and nginx in front of them, from deploy/nginx.conf."""
    folder = Path(tempfile.mkdtemp(prefix="rs-nginx-"))
    os.chmod(folder, 0o755)  # nginx workers drop root and must reach their temp folders
    started: list[NodeProcess] = []
    nginx: asyncio.subprocess.Process | None = None
    try:
        prefix = f"ngx{os.getpid()}-{next(_prefixes)}"
        for name in ("nginx-a", "nginx-b"):
            started.append(
                await start_node(
                    name,
                    "--redis",
                    redis.url,
                    "--redis-prefix",
                    prefix,
                    "--trusted-proxy",
                    "127.0.0.1",
                    *node_args,
                )
            )
        port = free_port()
        site = Template(TEMPLATE.read_text()).safe_substitute(
            NODE_A=started[0].url.removeprefix("http://"),
            NODE_B=started[1].url.removeprefix("http://"),
            LISTEN=f"127.0.0.1:{port}",
            SERVER_NAME="localhost",
            ACCESS_LOG=str(folder / "access.log"),
        )
        (folder / "roomserver.conf").write_text(site)
        (folder / "nginx.conf").write_text(Template(MAIN_CONF).substitute(dir=folder))
        nginx = await asyncio.create_subprocess_exec(
            nginx_binary(),
            "-p",
            str(folder),
            "-c",
            str(folder / "nginx.conf"),
            "-e",
            str(folder / "error.log"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        await _wait_until_serving(nginx, url, folder)
        yield Proxied(url, started, folder)
    finally:
        if nginx is not None and nginx.returncode is None:
            nginx.terminate()  # SIGTERM: fast shutdown of master and workers
            try:
                await asyncio.wait_for(nginx.wait(), 10)
            except TimeoutError:
                nginx.kill()
                await asyncio.wait_for(nginx.wait(), 10)
        for node in started:
            await node.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def _wait_until_serving(nginx: asyncio.subprocess.Process, url: str, folder: Path) -> None:
    deadline = asyncio.get_running_loop().time() + NGINX_START_S
    while True:
        if nginx.returncode is not None:
            assert nginx.stderr is not None
            err = (await nginx.stderr.read()).decode(errors="replace")
            log = (folder / "error.log").read_text(errors="replace")
            raise AssertionError(f"nginx exited: {err}\n{log}")
        with contextlib.suppress(aiohttp.ClientError, OSError):
            status, _ = await get(url + "/healthz")
            if status == 200:
                return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("nginx did not start serving")
        await asyncio.sleep(0.05)


async def api(proxy: Proxied, method: str, path: str, body: Any) -> tuple[int, Any]:
    timeout = aiohttp.ClientTimeout(total=10)
    headers = {"Authorization": f"Bearer {SECRET}"}
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.request(method, proxy.url + path, json=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


def token(room: str, user: str, role: str = "member") -> str:
    return mint_token(SECRET, room=room, user=user, name=user.capitalize(), role=role)


async def refused(connect: Any) -> int | None:
    """The HTTP status a WebSocket handshake was refused with, or None if it was accepted."""
    try:
        client: RoomClient = await connect()
    except websockets.InvalidStatus as exc:
        return exc.response.status_code
    await client.close()
    return None


async def test_join_and_chat_through_nginx_on_both_upstreams(
    redis_server: RedisServer,
) -> None:
    async with proxied(redis_server, "--max-connections-per-ip", "2") as proxy:
        node_a, node_b = proxy.nodes

        # Plain requests: both upstreams answer, the pages come through.
        seen = set()
        for _ in range(6):
            status, body = await get(proxy.url + "/healthz")
            assert status == 200
            seen.add(body)
        assert len(seen) == 2 and any(node_a.node_id in b for b in seen)
        status, page = await get(proxy.url + "/host.html")
        assert status == 200 and "<html" in page.lower()
        status, created = await api(proxy, "POST", "/api/rooms", {"id": "px", "title": "Proxied"})
        assert status == 201, created

        # Six members from three addresses: six WebSockets from nginx's one address would
        # break the limit of 2 per address on at least one node; by client address, none do.
        addresses = ["203.0.113.1", "203.0.113.2", "203.0.113.3"] * 2
        members: list[RoomClient] = []
        try:
            for index, address in enumerate(addresses):
                client = await proxy.connect(address)
                members.append(client)
                await client.request("join", room="px", token=token("px", f"m{index}"))
            assert await connections(node_a) == 3 and await connections(node_b) == 3

            # Chat crosses nodes (through Redis): every member sees it.
            ok = await members[0].request("chat.send", room="px", text="through nginx", cid="c")
            assert ok["seq"] == 1
            for member in members[1:]:
                event = await member.event("chat", timeout=10)
                assert event["text"] == "through nginx"

            # One address, many sockets: each node admits at most 2 from it.
            statuses = []
            extra: list[RoomClient] = []
            for _ in range(5):
                try:
                    extra.append(await proxy.connect("198.51.100.9"))
                    statuses.append(None)
                except websockets.InvalidStatus as exc:
                    statuses.append(exc.response.status_code)
            for client in extra:
                await client.close()
            assert statuses.count(None) <= 4 and 429 in statuses, statuses

            # Straight to a node from an untrusted peer (127.0.0.2): a forged
            # X-Forwarded-For is not believed, so the peer's own address hits the limit.
            forged: list[RoomClient] = []
            try:
                for index in range(2):
                    forged.append(
                        await RoomClient.connect(
                            node_a.ws_url,
                            additional_headers={"X-Forwarded-For": f"192.0.2.{index}"},
                            local_addr=("127.0.0.2", 0),
                        )
                    )
                status_code = await refused(
                    lambda: RoomClient.connect(
                        node_a.ws_url,
                        additional_headers={"X-Forwarded-For": "192.0.2.77"},
                        local_addr=("127.0.0.2", 0),
                    )
                )
                assert status_code == 429
            finally:
                for client in forged:
                    await client.close()
        finally:
            for client in members:
                await client.close()
        log = (proxy.folder / "access.log").read_text()
        assert "GET /ws" in log and "request_id=" in log


async def test_a_draining_node_sends_its_members_to_the_other_through_nginx(
    redis_server: RedisServer,
) -> None:
    async with proxied(redis_server) as proxy:
        node_a, node_b = proxy.nodes
        status, created = await api(proxy, "POST", "/api/rooms", {"id": "up", "title": "Upgrade"})
        assert status == 201, created
        first = await proxy.connect("203.0.113.10")
        second = await proxy.connect("203.0.113.11")
        clients = [first, second]
        try:
            await first.request("join", room="up", token=token("up", "a"))
            await second.request("join", room="up", token=token("up", "b"))
            assert await connections(node_a) == 1 and await connections(node_b) == 1
            await first.request("chat.send", room="up", text="before", cid="c1")

            # Upgrade node A: SIGTERM makes it say "reconnect" and close with 1001.
            await node_a.stop()
            moved = []
            for client in (first, second):
                if client.ws.close_code is not None or client.of_type("reconnect"):
                    moved.append(client)
            assert len(moved) == 1
            reconnect = moved[0].of_type("reconnect")
            assert reconnect and reconnect[0]["reason"] == "shutdown"
            close_code, _ = await moved[0].closed()
            assert close_code == 1001

            # The member comes back through nginx, lands on node B and resumes.
            again = await proxy.connect("203.0.113.12")
            clients.append(again)
            user = "a" if moved[0] is first else "b"
            snapshot = await again.request("join", room="up", token=token("up", user), since=0)
            assert [m["text"] for m in snapshot["history"]] == ["before"]
            assert await connections(node_b) == 2
            await again.request("chat.send", room="up", text="after", cid="c2")
            stayed = second if moved[0] is first else first
            await stayed.event("chat", timeout=10, where=lambda e: e["text"] == "after")
        finally:
            for client in clients:
                await client.close()
