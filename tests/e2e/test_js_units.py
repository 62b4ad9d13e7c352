"""The client's pure JavaScript functions (tests/e2e/units/units.js), run in real Chromium, and
the app shell served with the node's CSP: it loads without console errors in both languages."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser

from tests.e2e.browser import PHONE, open_page, screenshot, wait_for, wait_video_playing

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


async def test_pure_functions_of_the_client_pass_their_tables(
    browser: Browser, static_site: str
) -> None:
    watched = await open_page(browser, locale="en-US")
    await watched.page.goto(f"{static_site}/units/units.html")

    async def results() -> list[dict[str, object]] | None:
        return await watched.page.evaluate("() => window.unitResults || null")

    outcome = await wait_for(results, within=30, what="unit results")
    failed = [f"{r['name']}: {r['detail']}" for r in outcome if not r["ok"]]
    assert len(outcome) > 80
    names = {str(r["name"]) for r in outcome}
    assert any(n.startswith("SignalingChannel follows a redirect") for n in names)
    assert failed == []
    assert watched.errors == []


@pytest.mark.parametrize("locale,lang,title", [
    ("zh-CN", "zh-CN", "欢迎使用同心"), ("en-US", "en", "Welcome to Tongxin"),
])
async def test_landing_page_speaks_the_browser_language_and_switches(
    browser: Browser, static_site: str, locale: str, lang: str, title: str
) -> None:
    watched = await open_page(browser, locale=locale)
    page = watched.page
    await page.goto(f"{static_site}/")
    await page.get_by_role("heading", name=title).wait_for()
    assert await page.evaluate("document.documentElement.lang") == lang
    await screenshot(page, f"landing-{lang}")
    other = "en" if lang == "zh-CN" else "zh-CN"
    await page.select_option("#lang-select", other)
    other_title = "Welcome to Tongxin" if other == "en" else "欢迎使用同心"
    await page.get_by_role("heading", name=other_title).wait_for()
    await page.reload()
    await page.get_by_role("heading", name=other_title).wait_for()
    assert watched.errors == []


async def test_landing_page_fits_a_phone_and_rejects_a_foreign_link(
    browser: Browser, static_site: str
) -> None:
    watched = await open_page(browser, locale="en-US", viewport=PHONE)
    page = watched.page
    await page.goto(f"{static_site}/")
    await page.get_by_label("Join link").fill("https://example.com/other")
    await page.get_by_role("button", name="Open link").click()
    await page.get_by_text("That is not a Tongxin join link").wait_for()
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]
    await screenshot(page, "landing-en-phone")
    assert watched.errors == []


async def test_up_and_down_connections_negotiate_with_a_relay_stand_in(
    browser: Browser, static_site: str
) -> None:
    """Publisher offers mic+camera with their mids named; the Subscriber answers an offer and
    maps each mid to its participant and source; the looped-back video plays."""
    watched = await open_page(browser, locale="en-US")
    page = watched.page
    await page.goto(f"{static_site}/units/loopback.html")

    async def received() -> list[str] | None:
        state = await page.evaluate("() => ({...window.loopback})")
        assert state["error"] is None, state["error"]
        return state["received"] or None

    tracks = await wait_for(received, within=30, what="looped-back tracks")
    assert tracks == ["me:camera:video", "me:mic:audio"]
    published = await page.evaluate("() => window.loopback.published")
    assert sorted(published["sources"].values()) == ["camera", "mic"]
    assert published["mids"] == 2
    await wait_video_playing(page, "#looped", within=30)

    async def sent() -> dict[str, str | None] | None:
        answer = await page.evaluate("() => window.loopbackSent()")
        return answer if answer["codec"] else None

    assert await wait_for(sent, within=15, what="outbound video stats") == {
        "scalabilityMode": "L1T3", "codec": "video/VP8"}
    assert watched.errors == []
