"""Every page in zh-CN and in English renders in real Chromium without console errors, at
desktop size and phone size; a screenshot of each is kept in test-artifacts/screenshots/."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page

from tests.e2e.browser import PHONE, open_page, screenshot, wait_for
from tests.e2e.flows import wait_role_page
from tests.e2e.node import TongxinNode

pytestmark = [
    pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240),
]

LANGS = [("zh-CN", "zh-CN"), ("en-US", "en")]
ROLE_PAGES = [
    # (page name, words naming the demo link, what the page shows once up: a CSS selector)
    ("teacher", ("教师",), "#classroom-grid"),
    ("classroom", ("教学点 1 ",), ".stage"),
    ("doctor", ("医生",), "#queue-list"),
    ("clinic", ("村卫生室",), "#request-form, #waiting-room, .consult"),
]


async def scroll_width(page: Page) -> int:
    return int(await page.evaluate("document.documentElement.scrollWidth"))


@pytest.mark.parametrize("locale,lang", LANGS)
async def test_join_and_role_pages_render_in_each_language(
    browser: Browser, tongxin_node: TongxinNode, locale: str, lang: str
) -> None:
    for name, words, ready in ROLE_PAGES:
        watched = await open_page(browser, locale=locale)
        page = watched.page
        await page.goto(tongxin_node.link(*words))
        verdict = page.locator(".verdict[data-level]")
        await verdict.wait_for(timeout=30_000)
        await page.locator('.device-status[data-level="ok"]').wait_for(timeout=30_000)
        assert "/join/" not in page.url, "the join token stays in the address bar"
        assert await page.evaluate("document.documentElement.lang") == lang
        if name == "classroom":
            await screenshot(page, f"join-{lang}")
        await page.locator("#join-button").click()
        try:
            await wait_role_page(page)
        except AssertionError as exc:
            text = await page.evaluate("document.body.innerText")
            raise AssertionError(f"{name} ({lang}): {exc}; errors={watched.errors}; "
                                 f"page says: {text[:300]!r}") from None
        await page.locator(ready).first.wait_for(timeout=30_000)
        await screenshot(page, f"{name}-{lang}")
        assert watched.errors == [], name
        await watched.close()


@pytest.mark.parametrize("locale,lang", LANGS)
async def test_operator_dashboard_renders_each_tab_in_each_language(
    browser: Browser, tongxin_node: TongxinNode, locale: str, lang: str
) -> None:
    watched = await open_page(browser, locale=locale)
    page = watched.page
    await page.goto(tongxin_node.link("运维"))
    await wait_role_page(page)
    tabs = page.get_by_role("tab")
    await tabs.first.wait_for()
    count = await tabs.count()
    assert count == 6  # live, classes, experts, sites, audit, recordings
    for i in range(count):
        await tabs.nth(i).click()

        async def loaded() -> bool:
            return await page.locator("#operator-panel .loading").count() == 0

        await wait_for(loaded, within=20, what="the operator tab")
        await screenshot(page, f"operator-{i}-{lang}" if i else f"operator-{lang}")
    assert watched.errors == []


@pytest.mark.parametrize("name,words", [("classroom", ("教学点 2 ",)), ("clinic", ("村卫生室",))])
async def test_pages_fit_a_phone(
    browser: Browser, tongxin_node: TongxinNode, name: str, words: tuple[str, ...]
) -> None:
    watched = await open_page(browser, locale="zh-CN", viewport=PHONE)
    page = watched.page
    await page.goto(tongxin_node.link(*words) + "?autojoin=1")
    await wait_role_page(page)
    await page.locator("main").first.wait_for()
    assert await scroll_width(page) <= PHONE["width"]
    await screenshot(page, f"{name}-zh-CN-phone")
    assert watched.errors == []
