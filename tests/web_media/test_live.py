"""Go live from the host page; viewers watch; link-mic puts a viewer's camera on stage."""

from __future__ import annotations

import pytest
from playwright.async_api import Page

from tests.harness import Server, make_settings, running_server
from tests.web.browser import chromium, screenshot_path

pytestmark = [pytest.mark.slow, pytest.mark.netns]
#: Chromium hides local addresses behind mDNS names unless told not to; the SFU
#: needs the real 127.0.0.1 candidates.
MEDIA_FLAGS = ["--disable-features=WebRtcHideLocalIpsWithMdns"]


def link(server: Server, page: str, user: str, role: str, name: str) -> str:
    token = server.token("live", user, role, name=name)
    return f"{server.url}/{page}.html?lang=en#room=live&token={token}"


async def playing(page: Page, publisher: str, timeout: float = 15_000) -> None:
    """Wait until the tile of ``publisher`` shows frames that keep advancing."""
    selector = f"video[data-publisher='{publisher}']"
    await page.wait_for_selector(selector, timeout=timeout)
    await page.wait_for_function(
        f"""() => {{
          const v = document.querySelector("{selector}");
          if (!v || v.videoWidth === 0) return false;
          if (v._seen === undefined) {{ v._seen = v.currentTime; return false; }}
          return v.currentTime > v._seen + 0.3;
        }}""",
        timeout=timeout,
        polling=200,
    )


async def test_go_live_watch_and_link_mic() -> None:
    settings = make_settings(rtc_ip=("127.0.0.1",))
    async with running_server(settings) as server:
        await server.create_room("live", title="Live review")
        async with chromium(MEDIA_FLAGS) as browser:
            host = await browser.new_page(viewport={"width": 1200, "height": 900})
            ann = await browser.new_page(viewport={"width": 360, "height": 800})
            bob = await browser.new_page(viewport={"width": 360, "height": 800})
            errors: list[str] = []
            for page in (host, ann, bob):
                page.on("pageerror", lambda exc: errors.append(str(exc)))
            await host.goto(link(server, "host", "h", "host", "Host"))
            await host.wait_for_selector(".status.live")
            await host.wait_for_function("document.getElementById('preview')?.videoWidth > 0")
            await host.click("#go-live")
            await host.wait_for_selector("#end-stream:not([hidden])", timeout=15_000)
            for viewer, user in ((ann, "ann"), (bob, "bob")):
                await viewer.goto(link(server, "viewer", user, "member", user.title()))
                await viewer.wait_for_selector(".status.live")
            await playing(ann, "h")
            await playing(bob, "h")

            # Link-mic: Ann raises her hand, the host invites, Ann accepts.
            ann.on("dialog", lambda dialog: dialog.accept())
            await ann.click("#hand")
            await host.wait_for_selector("#hands li button")
            await host.click("#hands li button")
            await ann.wait_for_selector("#stage-controls:not([hidden])", timeout=15_000)
            assert await bob.is_hidden("#stage-controls")  # only the co-host may leave the stage
            await playing(bob, "ann")  # the other viewer sees the co-host's camera
            await playing(host, "ann")
            await host.screenshot(path=screenshot_path("live-host.png"))
            await bob.screenshot(path=screenshot_path("live-viewer.png"))

            # Bob's socket drops: the page reconnects by itself and watches again.
            await bob.evaluate("window.roomConnection.ws.close()")
            await bob.wait_for_selector(".status.away", timeout=5_000)
            await bob.wait_for_selector(".status.live", timeout=10_000)
            await playing(bob, "h")
            await playing(bob, "ann")

            # The host ends the stream: the viewers' host tile goes away.
            await host.click("#end-stream")
            await bob.wait_for_selector(
                "video[data-publisher='h']", state="detached", timeout=10_000
            )
            assert errors == []
