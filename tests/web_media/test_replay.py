"""The replay page plays a recording, and the chat appears when the video reaches it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from media.peers import Publisher
from tests.harness import make_settings, running_server
from tests.media.conftest import publish
from tests.web.browser import chromium, screenshot_path

pytestmark = [pytest.mark.slow, pytest.mark.netns]


async def test_replay_plays_and_shows_the_chat_at_its_offset(tmp_path: Path) -> None:
    settings = make_settings(rtc_ip=("127.0.0.1",), recordings_dir=str(tmp_path))
    async with running_server(settings) as server:
        await server.create_room("rp", title="Replay")
        host, _ = await server.member("rp", "h", "host")
        await host.request("rec.start", room="rp")
        peers: list[Publisher] = []
        try:
            await publish(host, "rp", peers)  # type: ignore[arg-type]
            await asyncio.sleep(2.5)
            await host.request("chat.send", room="rp", text="see you at 2.5 s", cid="c1")
            await asyncio.sleep(2.0)
            await host.request("rec.stop", room="rp")
        finally:
            for peer in peers:
                await peer.close()
        assert "rp" not in server.node.recordings  # stopping: finalising in the background
        listing: dict[str, Any] = {}
        for _ in range(100):
            _, listing = await server.api("GET", "/api/rooms/rp/recordings")
            if listing["recordings"] and listing["recordings"][0]["stopped"]:
                break
            await asyncio.sleep(0.05)
        (listed,) = listing["recordings"]
        async with (
            aiohttp.ClientSession() as http,
            http.get(server.url + listed["timeline_url"]) as resp,
        ):
            lines = [json.loads(line) for line in (await resp.text()).splitlines()]
        chat_line = next(e for e in lines if e["t"] == "chat")
        video_at = chat_line["offset"] - listed["segments"][0]["offset"]
        assert video_at > 1.0

        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 1000, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(server.url + listed["replay_url"] + "&lang=en")
            await page.wait_for_function(
                "document.getElementById('player').videoWidth > 0", timeout=10_000
            )
            assert await page.locator("#chat .chat-line").count() == 0
            await page.evaluate("document.getElementById('player').muted = true")
            await page.evaluate("document.getElementById('player').play()")
            await page.wait_for_function(
                "document.getElementById('player').currentTime > 0.5", timeout=10_000
            )
            await page.wait_for_selector("#chat .chat-line[data-seq]", timeout=15_000)
            shown_at = await page.evaluate("document.getElementById('player').currentTime")
            assert video_at - 0.2 <= shown_at <= video_at + 1.0, (shown_at, video_at)
            assert "see you at 2.5 s" in await page.inner_text("#chat")
            await page.screenshot(path=screenshot_path("replay.png"))
            # Seeking back before the message takes it away again.
            await page.evaluate("document.getElementById('player').currentTime = 0")
            await page.wait_for_function(
                "document.querySelectorAll('#chat .chat-line').length === 0", timeout=5_000
            )
            assert errors == []
