"""Debian's Chromium driven by Playwright: launch flags, pages that record their console errors,
and waits on what a page shows (video playing, audio arriving) without timing assertions."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright

from bench.lab.chromium import CHROMIUM, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 720}
PHONE = {"width": 390, "height": 844}


def require_chromium() -> str:
    """The Chromium binary; skips the test when it is missing (fails instead when CI=true)."""
    path = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if path:
        return path
    reason = "Debian's chromium is not installed (apt-get install chromium, or make system-deps)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the browser tests", pytrace=False)
    pytest.skip(reason)


async def launch(playwright: Playwright) -> Browser:
    return await playwright.chromium.launch(
        executable_path=require_chromium(), headless=True, args=CHROMIUM_ARGS
    )


@dataclass
class WatchedPage:
    """A page in its own browser context, with the console errors it logged."""

    context: BrowserContext
    page: Page
    errors: list[str] = field(default_factory=list)

    async def close(self) -> None:
        await self.context.close()


IGNORED_CONSOLE = ("WebSocket connection to",)
"""Console errors that are not the page's fault (a node stopping under a test)."""


async def open_page(
    browser: Browser,
    *,
    locale: str = "zh-CN",
    viewport: dict[str, int] | None = None,
) -> WatchedPage:
    """A fresh context (its own profile: storage, permissions) and a page in it."""
    context = await browser.new_context(
        locale=locale,
        viewport=viewport or DESKTOP,
        permissions=["camera", "microphone"],
    )
    page = await context.new_page()
    watched = WatchedPage(context, page)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not any(i in message.text for i in IGNORED_CONSOLE):
            watched.errors.append(f"console: {message.text} @ {message.location}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: watched.errors.append(f"pageerror: {exc}"))
    return watched


async def wait_for(
    check: Callable[[], Awaitable[Any]], *, within: float, what: str, every: float = 0.25
) -> Any:
    """Polls an async `check` until it returns something truthy (bounded by `within` s)."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {within:g} s (last: {value!r})")
        await asyncio.sleep(every)


VIDEO_STATE = """(selector) => [...document.querySelectorAll(selector)].map((v) => ({
  participant: v.dataset.participant || '', source: v.dataset.source || '',
  width: v.videoWidth, time: v.currentTime, visible: v.offsetParent !== null }))"""


async def video_states(page: Page, selector: str = "video") -> list[dict[str, Any]]:
    return list(await page.evaluate(VIDEO_STATE, selector))


async def wait_video_playing(page: Page, selector: str, *, within: float = 45.0) -> None:
    """Waits until the first video matching `selector` has a size and its time advances."""

    async def first() -> dict[str, Any] | None:
        states = await video_states(page, selector)
        return states[0] if states and states[0]["width"] > 0 else None

    state = await wait_for(first, within=within, what=f"video {selector} has a frame")

    async def advanced() -> bool:
        now = await first()
        return bool(now and now["time"] > state["time"])

    await wait_for(advanced, within=within, what=f"video {selector} keeps playing")


async def inbound_audio(page: Page) -> dict[str, int]:
    """Audio packets received so far per participant (from the page's down connection)."""
    return dict(await page.evaluate(
        "async () => window.tongxin && window.tongxin.room"
        " ? window.tongxin.room.inboundAudioPackets() : {}"
    ))


async def wait_audio_from(page: Page, participant: str, *, within: float = 45.0) -> None:
    """Waits until audio packets from `participant` keep arriving (the count grows)."""

    async def count() -> int:
        return (await inbound_audio(page)).get(participant, 0)

    first = await wait_for(count, within=within, what=f"audio from {participant}")

    async def grew() -> bool:
        return await count() > first

    await wait_for(grew, within=within, what=f"audio from {participant} keeps arriving")


async def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
