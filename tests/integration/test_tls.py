"""HTTPS and WSS on the node's one port, with a self-signed certificate made by the test.

Every node is a real ``roomserver serve`` process, stopped in a ``finally``;
every wait is bounded.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import websockets
from playwright.async_api import async_playwright

from roomserver.auth import mint_token
from signaling.client import RoomClient
from tests.certs import CertFiles, self_signed
from tests.harness import SECRET
from tests.served import ROOT, Served, serve
from tests.web.browser import CHROMIUM, FLAGS, require_chromium

pytestmark = pytest.mark.slow


@pytest.fixture
def cert(tmp_path: Path) -> CertFiles:
    return self_signed(tmp_path)


def trusting(cert: CertFiles) -> ssl.SSLContext:
    """A client context that trusts only the test's certificate."""
    return ssl.create_default_context(cafile=str(cert.cert))


def tls_args(cert: CertFiles) -> list[str]:
    return ["--secret", SECRET, "--tls-cert", str(cert.cert), "--tls-key", str(cert.key)]


async def create_room(node: Served, context: ssl.SSLContext, room: str) -> None:
    timeout = aiohttp.ClientTimeout(total=10)
    headers = {"Authorization": f"Bearer {SECRET}"}
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.post(
            node.url + "/api/rooms",
            json={"id": room, "title": "Over TLS"},
            headers=headers,
            ssl=context,
        ) as resp,
    ):
        assert resp.status == 201, await resp.text()


def token(room: str, user: str, role: str = "member") -> str:
    return mint_token(SECRET, room=room, user=user, name=user.capitalize(), role=role)


async def test_wss_clients_join_and_chat(cert: CertFiles) -> None:
    async with serve(*tls_args(cert)) as node:
        assert node.url.startswith("https://127.0.0.1:")
        assert node.ws_url.startswith("wss://127.0.0.1:")
        context = trusting(cert)
        await create_room(node, context, "tls")
        host = await RoomClient.connect(node.ws_url, ssl=context)
        viewer = await RoomClient.connect(node.ws_url, ssl=context)
        try:
            await host.request("join", room="tls", token=token("tls", "h", "host"))
            await viewer.request("join", room="tls", token=token("tls", "v"))
            ok = await viewer.request("chat.send", room="tls", text="hello over wss", cid="c1")
            assert ok["seq"] == 1
            event = await host.event("chat", timeout=10)
            assert event["text"] == "hello over wss"
        finally:
            await host.close()
            await viewer.close()

        # The certificate is really checked: a client that does not trust it is refused,
        # and plain HTTP on the TLS port gets no page.
        with pytest.raises(ssl.SSLCertVerificationError):
            await RoomClient.connect(node.ws_url, ssl=ssl.create_default_context())
        with pytest.raises((websockets.InvalidMessage, OSError, EOFError)):
            await RoomClient.connect(node.ws_url.replace("wss://", "ws://"))


async def test_chromium_loads_the_host_page_over_https(cert: CertFiles) -> None:
    require_chromium()
    async with serve(*tls_args(cert)) as node:
        context = trusting(cert)
        await create_room(node, context, "demo")
        viewer = await RoomClient.connect(node.ws_url, ssl=context)
        try:
            await viewer.request("join", room="demo", token=token("demo", "v"))
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=CHROMIUM, args=[*FLAGS, "--ignore-certificate-errors"]
                )
                try:
                    page = await browser.new_page()
                    errors: list[str] = []
                    page.on("pageerror", lambda exc: errors.append(str(exc)))
                    link = f"{node.url}/host.html#room=demo&token={token('demo', 'h', 'host')}"
                    await page.goto(link, timeout=15_000)
                    await page.wait_for_selector(".status.live", timeout=15_000)
                    # A secure context: the page may ask for the camera, and talks WSS.
                    assert await page.evaluate("window.isSecureContext") is True
                    ws_url = await page.evaluate("window.roomConnection.url")
                    assert ws_url.startswith("wss://127.0.0.1:")
                    await page.fill("#chat-input", "hello from https")
                    await page.press("#chat-input", "Enter")
                    event = await viewer.event("chat", timeout=10)
                    assert event["text"] == "hello from https"
                    assert errors == []
                finally:
                    await browser.close()
        finally:
            await viewer.close()


def run_serve(*args: str) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "roomserver.cli", "serve", "--host", "127.0.0.1", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    return proc.returncode, proc.stderr


def test_serve_refuses_bad_tls_settings(cert: CertFiles, tmp_path: Path) -> None:
    code, err = run_serve("--tls-cert", str(cert.cert))
    assert code == 2 and "set both" in err and "only tls-cert is set" in err
    missing = tmp_path / "missing.key"
    code, err = run_serve("--tls-cert", str(cert.cert), "--tls-key", str(missing))
    assert code == 2 and f"--tls-key: cannot read {missing}" in err
    other = self_signed(tmp_path, "other")
    code, err = run_serve("--tls-cert", str(cert.cert), "--tls-key", str(other.key))
    assert code == 2 and "tls-cert, tls-key: cannot use" in err
