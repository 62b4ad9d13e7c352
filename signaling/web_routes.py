"""Serves the browser client in `web/`: entry pages and static ES modules, styles and assets.

Entry pages: `/` (the app shell: operator dashboard or, after a join, the role's page) and
`/join/<token>` (the join page; its script exchanges the token for a session credential and
removes it from the address bar), `/recordings` (the library) and `/watch/<share token>` (the
player of a shared recording; the page asks /api/v1/watch/<token>). Static files live under
`/static/`.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

# `web` is a sibling top-level package (shipped as package data). Found by path rather than by
# `import web`, which a test run may resolve to tests/web.
WEB_DIR = Path(__file__).resolve().parent.parent / "web"
NO_STORE = {"Cache-Control": "no-store"}


def _page(name: str):  # type: ignore[no-untyped-def]
    async def handler(request: web.Request) -> web.StreamResponse:
        path = WEB_DIR / name
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers=NO_STORE)

    handler.__name__ = f"page_{name.replace('.', '_')}"
    return handler


def install_web_routes(app: web.Application) -> None:
    app.router.add_get("/", _page("index.html"))
    app.router.add_get("/join/{token}", _page("join.html"))
    app.router.add_get("/recordings", _page("index.html"))
    app.router.add_get("/watch/{token}", _page("index.html"))
    app.router.add_static("/static/", WEB_DIR, show_index=False, follow_symlinks=False)
