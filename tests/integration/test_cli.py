"""``roomserver token`` and ``roomserver serve`` as real subprocesses.

Every process is killed in a ``finally`` block and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from roomserver.auth import verify_token
from roomserver.errors import Unauthorized
from roomserver.ids import Role
from signaling.client import RoomClient

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SECRET = "cli-test-secret-0123456789-abcdefghijkl"
START_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 30.0

LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:(\d+))\s*$")
GENERATED = re.compile(r"generated secret.*:\s*(\S+)\s*$")
LINK = re.compile(r"^(host|viewer) link:\s+(\S+)\s*$")


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any ROOMSERVER_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSERVER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "roomserver.cli", *args]


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run a short-lived command to completion: (exit code, stdout, stderr)."""
    proc = subprocess.Popen(
        cli(*args),
        cwd=ROOT,
        env=env if env is not None else clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
        return proc.returncode, out, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


@dataclass
class Served:
    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    url: str = ""
    port: int = 0

    async def read_until(
        self, pattern: re.Pattern[str], timeout: float = START_TIMEOUT_S
    ) -> re.Match[str]:
        """Read stdout lines until one matches ``pattern``; every line is kept in ``lines``."""
        for line in self.lines:
            found = pattern.search(line)
            if found:
                return found
        assert self.proc.stdout is not None
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"no line matching {pattern.pattern!r}; got {self.lines}")
            raw = await asyncio.wait_for(self.proc.stdout.readline(), remaining)
            if not raw:
                raise AssertionError(f"server exited before {pattern.pattern!r}; got {self.lines}")
            line = raw.decode().rstrip("\n")
            self.lines.append(line)
            found = pattern.search(line)
            if found:
                return found


@asynccontextmanager
async def serve(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[Served]:
    """A running ``roomserver serve``; killed on the way out if it is still running."""
    proc = await asyncio.create_subprocess_exec(
        *cli("serve", *args),
        cwd=ROOT,
        env=env if env is not None else clean_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    served = Served(proc)
    try:
        found = await served.read_until(LISTENING)
        served.url, served.port = found.group(1), int(found.group(2))
        yield served
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.communicate(), 10)


async def get_json(url: str) -> tuple[int, object]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as resp:
        return resp.status, await resp.json(content_type=None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def fragment(link: str) -> dict[str, str]:
    parts = parse_qs(urlsplit(link).fragment)
    return {key: values[0] for key, values in parts.items()}


# --- roomserver token -------------------------------------------------------------------


def test_token_command_prints_a_valid_token() -> None:
    code, out, err = run_cli(
        "token", "--room", "r", "--user", "u", "--name", "N", "--role", "host", "--secret", SECRET
    )
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1
    identity = verify_token(SECRET, lines[0], "r")
    assert (identity.user, identity.name, identity.role) == ("u", "N", Role.HOST)
    with pytest.raises(Unauthorized):
        verify_token(SECRET, lines[0], "other-room")


def test_token_command_reads_the_secret_from_the_environment() -> None:
    code, out, err = run_cli(
        "token",
        "--room",
        "r",
        "--user",
        "u",
        "--name",
        "N",
        "--role",
        "member",
        env=clean_env(ROOMSERVER_SECRET=SECRET),
    )
    assert code == 0, err
    assert verify_token(SECRET, out.strip(), "r").role is Role.MEMBER


def test_token_command_without_secret_fails() -> None:
    code, out, err = run_cli("token", "--room", "r", "--user", "u", "--name", "N", "--role", "host")
    assert code != 0
    assert out.strip() == ""
    assert "secret" in err
    assert "ROOMSERVER_SECRET" in err


def test_token_command_with_short_secret_fails() -> None:
    code, out, err = run_cli(
        "token", "--room", "r", "--user", "u", "--name", "N", "--role", "host", "--secret", "short"
    )
    assert code == 2
    assert out.strip() == ""
    assert "secret" in err


def test_token_command_refuses_an_unknown_role() -> None:
    code, out, err = run_cli(
        "token", "--room", "r", "--user", "u", "--name", "N", "--role", "admin", "--secret", SECRET
    )
    assert code == 2
    assert out == ""
    assert "--role" in err


# --- roomserver serve -------------------------------------------------------------------


async def test_serve_demo_prints_links_that_work() -> None:
    async with serve("--port", "0", "--host", "127.0.0.1", "--demo") as srv:
        assert 0 < srv.port < 65536
        secret = (await srv.read_until(GENERATED)).group(1)
        assert len(secret) >= 32
        links: dict[str, str] = {}
        while len(links) < 2:
            found = await srv.read_until(LINK)
            links[found.group(1)] = found.group(2)
            srv.lines.remove(found.string)  # so the next read finds the other link
        assert links["host"].startswith(f"{srv.url}/host.html#")
        assert links["viewer"].startswith(f"{srv.url}/viewer.html#")
        host_params, viewer_params = fragment(links["host"]), fragment(links["viewer"])
        assert host_params["room"] == viewer_params["room"] == "demo"
        assert verify_token(secret, host_params["token"], "demo").role is Role.HOST
        assert verify_token(secret, viewer_params["token"], "demo").role is Role.MEMBER

        status, body = await get_json(srv.url + "/healthz")
        assert status == 200
        assert isinstance(body, dict) and body["ok"] is True and body["node"]

        ws_url = srv.url.replace("http://", "ws://") + "/ws"
        host = await RoomClient.connect(ws_url)
        viewer = await RoomClient.connect(ws_url)
        try:
            snap = await host.request("join", room="demo", token=host_params["token"])
            assert snap["me"]["role"] == "host"
            assert snap["room"]["id"] == "demo"
            snap = await viewer.request("join", room="demo", token=viewer_params["token"])
            assert snap["me"]["role"] == "member"
            ok = await viewer.request("chat.send", room="demo", text="hello from CLI", cid="c1")
            assert ok["seq"] == 1
            event = await host.event("chat", timeout=10)
            assert event["text"] == "hello from CLI"
            assert event["user"] == snap["me"]["user"]
            assert event["seq"] == 1
        finally:
            await host.close()
            await viewer.close()


async def test_serve_listens_on_the_port_from_the_environment() -> None:
    port = free_port()
    env = clean_env(ROOMSERVER_PORT=str(port), ROOMSERVER_SECRET=SECRET)
    async with serve("--host", "127.0.0.1", env=env) as srv:
        assert srv.port == port
        assert srv.url == f"http://127.0.0.1:{port}"
        assert not any("generated secret" in line for line in srv.lines)
        status, body = await get_json(f"http://127.0.0.1:{port}/healthz")
        assert status == 200
        assert isinstance(body, dict) and body["ok"] is True


async def test_serve_freezes_start_up_objects_out_of_garbage_collection() -> None:
    env = clean_env(ROOMSERVER_SECRET=SECRET)
    async with serve("--host", "127.0.0.1", "--port", "0", env=env) as srv:
        timeout = aiohttp.ClientTimeout(total=10)
        headers = {"Authorization": f"Bearer {SECRET}"}
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(srv.url + "/metrics", headers=headers) as resp,
        ):
            assert resp.status == 200
            text = await resp.text()
    values = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("roomserver_gc_")
    }
    # aiohttp, the app and the SFU's libraries: tens of thousands of objects.
    assert values["roomserver_gc_frozen_objects"] > 10_000
    assert values["roomserver_gc_pause_seconds_total"] >= 0
    assert "roomserver_gc_full_collections_total" in values


def test_serve_with_a_bad_port_exits_2_and_names_the_option() -> None:
    code, out, err = run_cli("serve", "--port", "notanumber", "--host", "127.0.0.1")
    assert code == 2
    assert "--port" in err
    assert "notanumber" in err
    assert "listening" not in out


def test_serve_with_a_bad_env_value_names_the_variable() -> None:
    code, _, err = run_cli(
        "serve", "--host", "127.0.0.1", env=clean_env(ROOMSERVER_MAX_COHOSTS="0")
    )
    assert code == 2
    assert "ROOMSERVER_MAX_COHOSTS" in err


async def test_sigterm_stops_the_server_with_code_0() -> None:
    async with serve(
        "--port", "0", "--host", "127.0.0.1", env=clean_env(ROOMSERVER_SECRET=SECRET)
    ) as srv:
        status, _ = await get_json(srv.url + "/healthz")  # the loop is serving
        assert status == 200
        srv.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(srv.proc.wait(), 10)
        assert code == 0


async def test_sigterm_with_a_joined_client_stops_within_10_seconds() -> None:
    env = clean_env(ROOMSERVER_SECRET=SECRET)
    async with serve("--port", "0", "--host", "127.0.0.1", "--demo", env=env) as srv:
        found = await srv.read_until(re.compile(r"^viewer link:\s+(\S+)"))
        token = fragment(found.group(1))["token"]
        client = await RoomClient.connect(srv.url.replace("http://", "ws://") + "/ws")
        try:
            snapshot = await client.request("join", room="demo", token=token)
            assert snapshot["me"]["role"] == "member"
            srv.proc.send_signal(signal.SIGTERM)
            try:
                code: int | None = await asyncio.wait_for(srv.proc.wait(), 10)
            except TimeoutError:
                code = None
            assert code == 0, "the server did not exit within 10 s of SIGTERM"
            close_code, _ = await client.closed()
            assert close_code == 1001
        finally:
            await client.close()
