"""Over HTTPS: Chromium loads the host page from a node with its own certificate and goes live."""

from __future__ import annotations

from pathlib import Path

import pytest

from roomserver.auth import mint_token
from tests.certs import self_signed
from tests.harness import SECRET
from tests.integration.test_tls import create_room, trusting
from tests.served import serve
from tests.web.browser import chromium
from tests.web_media.test_live import MEDIA_FLAGS, playing

pytestmark = [pytest.mark.slow, pytest.mark.netns]


def page_link(base: str, page: str, user: str, role: str) -> str:
    token = mint_token(SECRET, room="tls", user=user, name=user.title(), role=role)
    return f"{base}/{page}.html?lang=en#room=tls&token={token}"


async def test_host_goes_live_over_https(tmp_path: Path) -> None:
    cert = self_signed(tmp_path)
    args = ["--secret", SECRET, "--tls-cert", str(cert.cert), "--tls-key", str(cert.key)]
    async with serve(*args, "--media", "on", "--rtc-ip", "127.0.0.1") as node:
        assert node.url.startswith("https://")
        await create_room(node, trusting(cert), "tls")
        async with chromium([*MEDIA_FLAGS, "--ignore-certificate-errors"]) as browser:
            host = await browser.new_page()
            viewer = await browser.new_page()
            errors: list[str] = []
            for page in (host, viewer):
                page.on("pageerror", lambda exc: errors.append(str(exc)))
            await host.goto(page_link(node.url, "host", "h", "host"))
            await host.wait_for_selector(".status.live", timeout=15_000)
            assert await host.evaluate("window.isSecureContext") is True
            await host.wait_for_function("document.getElementById('preview')?.videoWidth > 0")
            await host.click("#go-live")
            await host.wait_for_selector("#end-stream:not([hidden])", timeout=15_000)
            await viewer.goto(page_link(node.url, "viewer", "v", "member"))
            await viewer.wait_for_selector(".status.live", timeout=15_000)
            await playing(viewer, "h")
            assert errors == []
