"""Fixtures of the real-browser tests: Debian's Chromium (headless, fake camera and microphone)
and a static server of web/ for the tests that need no backend.

`tongxin_node` runs a real node (tests/e2e/node.py). Chromium missing: the tests skip, or
fail when CI=true.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser, async_playwright

from bench.processes import free_port
from signaling.middleware import SECURITY_HEADERS
from tests.e2e.browser import launch, require_chromium
from tests.e2e.node import TongxinNode

WEB = Path(__file__).resolve().parents[2] / "web"
UNITS = Path(__file__).resolve().parent / "units"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A fresh Chromium for one test (every context in it has its own profile)."""
    async with async_playwright() as playwright:
        chromium = await launch(playwright)
        try:
            yield chromium
        finally:
            await chromium.close()


@web.middleware
async def _security_headers(request: web.Request, handler):  # type: ignore[no-untyped-def]
    response = await handler(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@pytest.fixture
async def static_site() -> AsyncIterator[str]:
    """web/ under /static/ (and the unit-test page under /units/), with the node's CSP."""

    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB / "index.html")

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application(middlewares=[_security_headers])
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_static("/static/", WEB)
    app.router.add_static("/units/", UNITS)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
def tongxin_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TongxinNode]:
    """A real node (one media worker, demo directory) shared by the tests of a module."""
    require_chromium()
    node = TongxinNode(tmp_path_factory.mktemp("node"))
    node.start()
    try:
        yield node
    finally:
        node.stop()
