"""The host and viewer pages in a real browser: chat, polls, likes, products, link-mic."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Page

from tests.harness import Server, make_settings, running_server
from tests.web.browser import chromium, screenshot_path

pytestmark = pytest.mark.slow


def link(server: Server, page: str, user: str, role: str, name: str) -> str:
    token = server.token("demo", user, role, name=name)
    return f"{server.url}/{page}.html#room=demo&token={token}"


async def open_page(page: Page, url: str, errors: list[str]) -> None:
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(url)
    await page.wait_for_selector(".status.live", timeout=10_000)


async def test_host_and_viewers_chat_vote_like_and_link_mic() -> None:
    async with running_server(make_settings(media=False)) as server:
        await server.create_room("demo", title="Robot kit review", welcome="Ask anything")
        async with chromium() as browser:
            host = await browser.new_page(viewport={"width": 1200, "height": 900})
            ann = await browser.new_page(viewport={"width": 360, "height": 740})
            bob = await browser.new_page(viewport={"width": 360, "height": 740})
            errors: list[str] = []
            await open_page(host, link(server, "host", "h", "host", "Host"), errors)
            await open_page(ann, link(server, "viewer", "ann", "member", "Ann"), errors)
            await open_page(bob, link(server, "viewer", "bob", "member", "Bob"), errors)
            assert await ann.inner_text("#title") == "Robot kit review"
            assert await ann.inner_text("#welcome") == "Ask anything"

            # Chat both ways, with a hostile message that must stay text.
            evil = "<img src=x onerror=alert(1)> 你好 👋"
            await ann.fill("#chat-input", evil)
            await ann.press("#chat-input", "Enter")
            await host.wait_for_selector(".chat-line[data-seq='1']")
            assert await host.inner_text(".chat-line[data-seq='1'] .text") == evil
            assert await host.locator(".chat-line img").count() == 0
            await ann.wait_for_selector(".chat-line[data-seq='1']")
            assert await ann.locator(".chat-line.pending").count() == 0  # shown once, not twice
            await host.fill("#chat-input", "Thanks Ann!")
            await host.press("#chat-input", "Enter")
            await bob.wait_for_selector(".chat-line[data-seq='2']")
            assert await bob.inner_text(".chat-line[data-seq='2'] .who") == "Host"

            # A poll created on the host page, voted on both viewers.
            await host.fill("#poll-question", "Which colour?")
            await host.fill("#poll-options", "Red, Blue")
            await host.click("#poll-form button[type=submit]")
            for viewer, choice in ((ann, 0), (bob, 1)):
                await viewer.wait_for_selector(".poll .option button")
                await viewer.locator(".poll .option button").nth(choice).click()
                await viewer.wait_for_selector(".poll .option.mine")
            await host.wait_for_function(
                "document.querySelector('.poll .meta').textContent.startsWith('2 votes')"
            )

            # A like storm updates every counter.
            for _ in range(10):
                await ann.click("#like")
            await host.wait_for_function("document.querySelector('#likes').textContent === '10'")
            await bob.wait_for_function("document.querySelector('#likes').textContent === '10'")

            # A product pinned by the host reaches the viewers.
            await host.fill("#p-title", "Robot kit")
            await host.fill("#p-price", "39.90")
            await host.fill("#p-currency", "eur")
            await host.click("#product-form button[type=submit]")
            await ann.wait_for_selector(".product .title")
            assert await ann.inner_text(".product .price") == "€39.90"  # Intl, en-US

            # Link-mic: raise hand, invite, accept.
            ann.on("dialog", lambda dialog: dialog.accept())
            await ann.click("#hand")
            await host.wait_for_selector("#hands li button")
            await host.click("#hands li button")
            await host.wait_for_selector("#cohosts li")
            assert "ann" in await host.inner_text("#cohosts")

            # A keyword draw started on the host page; a viewer enters by chatting.
            await host.fill("#draw-prize", "Robot kit")
            await host.select_option("#draw-kind", "keyword")
            await host.fill("#draw-keyword", "lucky")
            await host.fill("#draw-duration", "5")
            await host.click("#draw-form button[type=submit]")
            await bob.wait_for_selector(".draw .commitment")
            await bob.fill("#chat-input", "I feel lucky")
            await bob.press("#chat-input", "Enter")
            await host.wait_for_selector(".draw .meta[data-count='1']")
            await ann.wait_for_selector(".draw.result", timeout=15_000)
            assert await ann.inner_text(".draw.result .winners") == "Winners: bob"

            await host.screenshot(path=screenshot_path("host.png"), full_page=True)
            await ann.screenshot(path=screenshot_path("viewer.png"), full_page=True)
            assert errors == []


async def test_viewer_reconnects_and_resumes_chat_without_gap_or_duplicate() -> None:
    async with running_server(make_settings(media=False)) as server:
        await server.create_room("demo", title="Resume")
        host_client, _ = await server.member("demo", "h", "host")
        async with chromium() as browser:
            page = await browser.new_page()
            errors: list[str] = []
            await open_page(page, link(server, "viewer", "v", "member", "V"), errors)
            for i in range(3):
                await host_client.request("chat.send", room="demo", text=f"before {i}", cid=f"b{i}")
            await page.wait_for_selector(".chat-line[data-seq='3']")
            # Drop the socket from the page's side; the page reconnects by itself.
            await page.evaluate("window.roomConnection.ws.close()")
            await page.wait_for_selector(".status.away", timeout=5_000)
            for i in range(4):
                await host_client.request("chat.send", room="demo", text=f"during {i}", cid=f"d{i}")
            await page.wait_for_selector(".status.live", timeout=10_000)
            await page.wait_for_selector(".chat-line[data-seq='7']", timeout=10_000)
            seqs = await page.eval_on_selector_all(
                ".chat-line[data-seq]", "lines => lines.map(l => Number(l.dataset.seq))"
            )
            assert seqs == [1, 2, 3, 4, 5, 6, 7]
            assert errors == []


async def test_host_records_and_viewers_see_the_recording_badge(tmp_path: Path) -> None:
    settings = make_settings(rtc_ip=("127.0.0.1",), recordings_dir=str(tmp_path))
    async with running_server(settings) as server:
        await server.create_room("demo", title="Recorded")
        async with chromium() as browser:
            host = await browser.new_page()
            viewer = await browser.new_page(viewport={"width": 360, "height": 740})
            errors: list[str] = []
            await open_page(host, link(server, "host", "h", "host", "Host"), errors)
            await open_page(viewer, link(server, "viewer", "v", "member", "V"), errors)
            assert await viewer.is_hidden("#rec-badge")
            assert await host.inner_text("#record") == "Record"

            await host.click("#record")
            await viewer.wait_for_selector("#rec-badge:not([hidden])")
            assert await viewer.inner_text("#rec-badge") == "● REC"
            await host.wait_for_function(
                "document.querySelector('#record').textContent === 'Stop recording'"
            )
            assert await host.get_attribute("#record", "aria-pressed") == "true"
            late = await browser.new_page()
            await open_page(late, link(server, "viewer", "late", "member", "L"), errors)
            assert await late.is_visible("#rec-badge")  # from the snapshot

            await host.click("#record")
            await viewer.wait_for_selector("#rec-badge[hidden]", state="attached")
            await host.check("#record-when-live")
            state = server.node.rooms["demo"]
            for _ in range(50):
                if state.record_when_live:
                    break
                await viewer.wait_for_timeout(100)
            assert state.record_when_live is True
            await host.reload()
            await host.wait_for_selector(".status.live", timeout=10_000)
            assert await host.is_checked("#record-when-live")  # shown from the snapshot
            assert errors == []


async def test_a_pk_invitation_survives_a_reload_of_the_host_page() -> None:
    async with running_server(make_settings(media=False)) as server:
        await server.create_room("pa", title="Alpha")
        await server.create_room("demo", title="Beta")
        inviter, _ = await server.member("pa", "ha", "host")
        async with chromium() as browser:
            page = await browser.new_page()
            errors: list[str] = []
            await open_page(page, link(server, "host", "hb", "host", "Host B"), errors)
            invite = await inviter.request("pk.invite", room="pa", to_room="demo", duration_s=60)
            pk_id = invite["invite"]["id"]
            await page.wait_for_selector(f"#pk-invites li[data-pk='{pk_id}']")
            assert "Alpha" in await page.inner_text("#pk-invites li")
            await page.reload()
            await page.wait_for_selector(".status.live", timeout=10_000)
            await page.wait_for_selector(f"#pk-invites li[data-pk='{pk_id}'] button.decline")
            await page.click("#pk-invites li button.decline")
            assert (await inviter.event("pk.declined"))["pk"] == pk_id
            assert await page.locator("#pk-invites li").count() == 0
            assert errors == []
