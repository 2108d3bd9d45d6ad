"""One PK battle in the browser: two host pages, a viewer sees both hosts and the score."""

from __future__ import annotations

import pytest

from tests.harness import Server, make_settings, running_server
from tests.web.browser import chromium, screenshot_path
from tests.web_media.test_live import MEDIA_FLAGS, playing

pytestmark = [pytest.mark.slow, pytest.mark.netns]


def link(server: Server, room: str, page: str, user: str, role: str, name: str) -> str:
    token = server.token(room, user, role, name=name)
    return f"{server.url}/{page}.html?lang=en#room={room}&token={token}"


async def test_pk_battle_split_stage_score_and_result() -> None:
    async with running_server(make_settings(rtc_ip=("127.0.0.1",))) as server:
        await server.create_room("pa", title="Alpha store")
        await server.create_room("pb", title="Beta store")
        async with chromium(MEDIA_FLAGS) as browser:
            host_a = await browser.new_page(viewport={"width": 1200, "height": 900})
            host_b = await browser.new_page(viewport={"width": 1200, "height": 900})
            fan = await browser.new_page(viewport={"width": 360, "height": 800})
            errors: list[str] = []
            for page in (host_a, host_b, fan):
                page.on("pageerror", lambda exc: errors.append(str(exc)))
            for page, room, user in ((host_a, "pa", "ha"), (host_b, "pb", "hb")):
                await page.goto(link(server, room, "host", user, "host", user.upper()))
                await page.wait_for_selector(".status.live")
                await page.wait_for_function("document.getElementById('preview')?.videoWidth > 0")
                await page.click("#go-live")
                await page.wait_for_selector("#end-stream:not([hidden])", timeout=15_000)
            await fan.goto(link(server, "pa", "viewer", "fan", "member", "Fan"))
            await fan.wait_for_selector(".status.live")
            await playing(fan, "ha")
            assert await fan.is_hidden("#pk-bar")

            # Host A invites room pb; host B accepts on its page.
            await host_a.fill("#pk-room", "pb")
            await host_a.fill("#pk-duration", "120")
            await host_a.click("#pk-form button[type=submit]")
            await host_b.wait_for_selector("#pk-invites li button.accept", timeout=10_000)
            assert "Alpha store" in await host_b.inner_text("#pk-invites li")
            await host_b.click("#pk-invites li button.accept")

            # The fan's stage splits: room pb's host plays beside room pa's.
            await fan.wait_for_selector("#pk-bar:not([hidden])", timeout=10_000)
            await playing(fan, "hb")
            assert await fan.get_attribute("video[data-publisher='hb']", "data-room") == "pb"
            names = await fan.inner_text("#pk-bar .pk-names")
            assert "Alpha store" in names and "Beta store" in names and "left" in names
            await host_a.wait_for_selector("#pk-end:not([hidden])")
            await playing(host_a, "hb")  # the host sees the other host too

            # Likes in room pa and a vote for pb in the PK poll move the score bar.
            for _ in range(3):
                await fan.click("#like")
            await fan.wait_for_selector("#pk-bar[data-score='3:0']", timeout=10_000)
            await host_b.wait_for_selector("#pk-bar[data-score='0:3']", timeout=10_000)
            await fan.locator(".poll .option button").nth(1).click()
            await fan.wait_for_selector("#pk-bar[data-score='3:1']", timeout=10_000)
            await fan.screenshot(path=screenshot_path("pk-viewer.png"))
            await host_b.screenshot(path=screenshot_path("pk-host.png"))

            # Host A ends it: the result shows and the other host's tile goes away.
            await host_a.click("#pk-end")
            await fan.wait_for_selector("#pk-bar.ended", timeout=10_000)
            assert "Alpha store wins!" in await fan.inner_text("#pk-bar")
            await host_b.wait_for_selector("#pk-bar.ended", timeout=10_000)
            await fan.wait_for_selector(
                "video[data-publisher='hb']", state="detached", timeout=10_000
            )
            await playing(fan, "ha")  # the own room's stream goes on
            assert errors == []
