"""Steps the browser tests share: joining through a link, reading who a page is."""

from __future__ import annotations

from playwright.async_api import Browser, Page

from tests.e2e.browser import WatchedPage, open_page, wait_for

JOIN_TIMEOUT = 60.0


async def join(browser: Browser, link: str, *, locale: str = "zh-CN",
               viewport: dict[str, int] | None = None) -> WatchedPage:
    """Opens a join link with ?autojoin=1 and waits until the role's page is up."""
    watched = await open_page(browser, locale=locale, viewport=viewport)
    separator = "&" if "?" in link else "?"
    await watched.page.goto(f"{link}{separator}autojoin=1")
    await wait_role_page(watched.page)
    return watched


async def wait_role_page(page: Page) -> str:
    """Waits until the page has mounted a role page; its home (teacher, clinic, …)."""

    async def home() -> str | None:
        return await page.evaluate("() => window.tongxin && window.tongxin.home || null")

    return str(await wait_for(home, within=JOIN_TIMEOUT, what="the role's page"))


def main_video(participant: str) -> str:
    """The selector of a participant's video in a page's main tiles."""
    return f'.tile-main video[data-participant="{participant}"]'


async def participant_id(page: Page) -> str:
    async def pid() -> str | None:
        return await page.evaluate(
            "() => window.tongxin?.channel?.welcome?.participant?.id || null")

    return str(await wait_for(pid, within=JOIN_TIMEOUT, what="the welcome frame"))
