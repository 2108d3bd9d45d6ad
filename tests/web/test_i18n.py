"""The pages in Simplified Chinese and English, in a real browser."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from roomserver.errors import ERROR_CODES
from tests.harness import Server, make_settings, running_server
from tests.web.browser import chromium, screenshot_path

pytestmark = pytest.mark.slow
WEB = Path(__file__).resolve().parents[2] / "web"
MIXED = "限量款 Robot kit 🤖 只要 ¥299！ مرحبا"


def link(server: Server, page: str, user: str, role: str, name: str, lang: str = "") -> str:
    token = server.token("i18n", user, role, name=name)
    query = f"?lang={lang}" if lang else ""
    return f"{server.url}/{page}.html{query}#room=i18n&token={token}"


async def catalogues(page: Page) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = await page.evaluate(
        "async () => (await import('/js/i18n.js')).CATALOGUES"
    )
    return result


def literal_parts(value: Any) -> list[str]:
    """The fixed text of a catalogue entry, without its {placeholders}."""
    forms = value.values() if isinstance(value, dict) else [value]
    return [part.strip() for form in forms for part in re.split(r"\{\w+\}", form) if part.strip()]


async def page_text(page: Page) -> str:
    text: str = await page.evaluate(
        """() => {
          const parts = [document.title, document.body.innerText];
          for (const node of document.querySelectorAll('[placeholder],[aria-label],[title]')) {
            if (node.id === 'lang') continue;
            for (const name of ['placeholder', 'aria-label', 'title']) {
              parts.push(node.getAttribute(name) || '');
            }
          }
          const picker = document.getElementById('lang');
          return parts.join('\\n').replace(picker ? picker.innerText : '', '');
        }"""
    )
    return text


async def open_pages(
    browser: Browser, server: Server, locale: str, lang: str = ""
) -> tuple[Page, Page, list[str]]:
    context = await browser.new_context(locale=locale, viewport={"width": 360, "height": 900})
    errors: list[str] = []
    host = await context.new_page()
    viewer = await context.new_page()
    for page in (host, viewer):
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    await host.goto(link(server, "host", "h", "host", "主播", lang))
    await viewer.goto(link(server, "viewer", "v", "member", "小明", lang))
    for page in (host, viewer):
        await page.wait_for_selector(".status.live", timeout=10_000)
    return host, viewer, errors


async def fill_room(host: Page, viewer: Page) -> None:
    """Make every kind of dynamic text appear: chat, a poll, a product, a draw."""
    await host.fill("#poll-question", "颜色？")
    await host.fill("#poll-options", "红，蓝")
    await host.click("#poll-form button[type=submit]")
    await viewer.wait_for_selector(".poll .option button")
    await viewer.locator(".poll .option button").first.click()
    await host.fill("#p-title", "机器人套件")
    await host.fill("#p-price", "299")
    await host.fill("#p-currency", "CNY")
    await host.click("#product-form button[type=submit]")
    await host.fill("#draw-prize", "耳机")
    await host.click("#draw-form button[type=submit]")
    await viewer.wait_for_selector(".draw .commitment")
    await viewer.fill("#chat-input", MIXED)
    await viewer.press("#chat-input", "Enter")
    await host.wait_for_selector(".chat-line[data-seq='1']")


async def test_catalogues_are_complete_and_every_key_in_the_pages_exists() -> None:
    async with running_server(make_settings(media=False)) as server, chromium() as browser:
        await server.create_room("i18n")
        page = await browser.new_page()
        await page.goto(server.url + "/viewer.html")
        cats = await catalogues(page)
        en, zh = cats["en"], cats["zh-CN"]
        assert set(en) == set(zh)
        for key in en:
            assert isinstance(en[key], str) == isinstance(zh[key], str), key
            if isinstance(en[key], dict):
                assert "other" in en[key] and "other" in zh[key], key
            assert set(re.findall(r"\{\w+\}", str(en[key]))) == set(
                re.findall(r"\{\w+\}", str(zh[key]))
            ), key
        used: set[str] = set()
        for path in [*WEB.glob("*.html"), *(WEB / "js").glob("*.js")]:
            text = path.read_text(encoding="utf-8")
            used |= set(re.findall(r'data-i18n(?:-[a-z-]+)?="([\w.]+)"', text))
            used |= set(re.findall(r'\bt\("([\w.]+)"', text))
        assert used, "no catalogue keys found in the pages"
        assert used <= set(en), sorted(used - set(en))
        for code in ERROR_CODES:
            assert f"error.{code}" in en, code  # every protocol error has its own text


@pytest.mark.parametrize(
    ("locale", "own", "other"), [("zh-CN", "zh-CN", "en"), ("en-US", "en", "zh-CN")]
)
async def test_pages_show_only_their_language(locale: str, own: str, other: str) -> None:
    async with running_server(make_settings(media=False)) as server:
        await server.create_room("i18n", title="新品评测")
        async with chromium([f"--lang={locale}"]) as browser:
            host, viewer, errors = await open_pages(browser, server, locale)
            await fill_room(host, viewer)
            cats = await catalogues(viewer)
            for page, name in ((host, "host"), (viewer, "viewer")):
                assert await page.evaluate("document.documentElement.lang") == own
                shown = await page_text(page)
                foreign = [
                    part
                    for key, value in cats[other].items()
                    for part in literal_parts(value)
                    if part not in literal_parts(cats[own][key])
                    and len(part) > 1
                    and (re.search(r"[A-Za-z]{3}", part) or re.search(r"[\u4e00-\u9fff]", part))
                    and part in shown
                ]
                assert foreign == [], (name, foreign)
                await page.screenshot(path=screenshot_path(f"{name}-{own}.png"), full_page=True)
            assert errors == []


async def test_switch_persists_and_the_link_overrides() -> None:
    async with running_server(make_settings(media=False)) as server, chromium() as browser:
        await server.create_room("i18n")
        _, viewer, _ = await open_pages(browser, server, "en-US")
        assert await viewer.inner_text("#chat-form button") == "Send"
        await viewer.select_option("#lang", "zh-CN")
        assert await viewer.inner_text("#chat-form button") == "发送"
        assert await viewer.inner_text("#status") == "已连接"
        await viewer.reload()
        await viewer.wait_for_selector(".status.live")
        assert await viewer.inner_text("#chat-form button") == "发送"  # remembered
        await viewer.goto(link(server, "viewer", "v", "member", "小明", "en"))
        await viewer.wait_for_selector(".status.live")
        assert await viewer.inner_text("#chat-form button") == "Send"  # ?lang= wins


async def test_mixed_script_chat_round_trips_and_cjk_wraps_on_a_phone() -> None:
    async with running_server(make_settings(media=False)) as server:
        await server.create_room("i18n")
        async with chromium(["--lang=zh-CN"]) as browser:
            host, viewer, errors = await open_pages(browser, server, "zh-CN")
            long_cjk = "这是一段非常长的中文评论没有任何空格" * 12
            for text in (MIXED, long_cjk):
                await viewer.fill("#chat-input", text)
                await viewer.press("#chat-input", "Enter")
            await host.wait_for_selector(".chat-line[data-seq='2']")
            assert await host.inner_text(".chat-line[data-seq='1'] .text") == MIXED
            assert await viewer.inner_text(".chat-line[data-seq='1'] .text") == MIXED
            overflow = await viewer.evaluate(
                "() => { const c = document.getElementById('chat');"
                " return [c.scrollWidth, c.clientWidth]; }"
            )
            assert overflow[0] <= overflow[1], overflow
            page_width = await viewer.evaluate("document.documentElement.scrollWidth")
            assert page_width <= 360
            assert errors == []
