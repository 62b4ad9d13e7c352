"""A stand-in of the recording contract's HTTP side (docs/recording.md) for the library and player
pages: the web client with the node's CSP, three recordings (ready, processing, failed), share
links, delete, /api/v1/watch/<token>, and a real two-rendition HLS made by
tests/e2e/hls_fixture.py. It checks what the pages send (bearer, filter queries) so the UI can
be tested before, and independently of, the real backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.processes import free_port
from signaling.middleware import SECURITY_HEADERS
from tests.e2e.hls_fixture import RENDITIONS

WEB = Path(__file__).resolve().parents[2] / "web"
PLAYBACK = "/media/recordings/ptok/master.m3u8"
SHARE_READY = "share-ready"
SHARE_BUSY = "share-busy"
CREDENTIAL = "stub-credential"


def recordings() -> list[dict[str, Any]]:
    renditions = [{"name": r.name, "bandwidth": r.bitrate, "width": r.width, "height": r.height}
                  for r in RENDITIONS]
    base = {"renditions": [], "poster_url": None, "playback_url": None, "progress": 0.0,
            "host_id": "t-wang", "ended_at": None}
    return [
        {**base, "id": "r-math", "session": "k-1", "kind": "class", "title": "数学：分数的加法",
         "subject": "数学", "teacher": "王老师", "started_at": "2026-11-20T02:00:00Z",
         "ended_at": "2026-11-20T02:45:00Z", "duration_s": 8.0, "status": "ready",
         "progress": 1.0, "renditions": renditions, "playback_url": PLAYBACK},
        {**base, "id": "r-consult", "session": "c-9", "kind": "consult", "title": "内科会诊",
         "subject": "内科", "teacher": "张医生", "host_id": "d-zhang",
         "started_at": "2026-11-25T06:10:00Z", "duration_s": 600.0, "status": "processing",
         "progress": 0.42},
        {**base, "id": "r-english", "session": "k-2", "kind": "class", "title": "英语：问路",
         "subject": "英语", "teacher": "李老师", "started_at": "2026-11-18T01:00:00Z",
         "duration_s": 1800.0, "status": "failed"},
    ]


@dataclass
class ContractStub:
    base_url: str
    queries: list[dict[str, str]] = field(default_factory=list)
    shares: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


@web.middleware
async def _security_headers(request: web.Request, handler):  # type: ignore[no-untyped-def]
    response = await handler(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@asynccontextmanager
async def contract_stub(media_dir: Path) -> AsyncIterator[ContractStub]:
    """Serves the stand-in; `media_dir` holds what make_hls() wrote."""
    items = recordings()
    stub = ContractStub("")

    def authorised(request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {CREDENTIAL}"

    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB / "index.html")

    async def list_recordings(request: web.Request) -> web.Response:
        if not authorised(request):
            return _error(401, "unauthorized", "no credential")
        query = dict(request.query)
        stub.queries.append(query)
        found = [r for r in items if r["id"] not in stub.deleted
                 and (not query.get("kind") or r["kind"] == query["kind"])
                 and (not query.get("teacher") or query["teacher"] in r["teacher"])]
        return web.json_response({"recordings": found})

    async def share(request: web.Request) -> web.Response:
        if not authorised(request):
            return _error(401, "unauthorized", "no credential")
        body = await request.json()
        stub.shares.append({"id": request.match_info["rec"], **body})
        return web.json_response({"url": f"/watch/{SHARE_READY}",
                                  "expires_at": "2026-12-03T02:00:00Z"})

    async def delete(request: web.Request) -> web.Response:
        if not authorised(request):
            return _error(401, "unauthorized", "no credential")
        stub.deleted.append(request.match_info["rec"])
        return web.Response(status=204)

    async def watch(request: web.Request) -> web.Response:
        token = request.match_info["token"]
        if token == SHARE_READY:
            return web.json_response(items[0])
        if token == SHARE_BUSY:
            return web.json_response(items[1])
        return _error(404, "not_found", "no such share link (expired?)")

    app = web.Application(middlewares=[_security_headers])
    app.router.add_get("/", index)
    app.router.add_get("/recordings", index)
    app.router.add_get("/watch/{token}", index)
    app.router.add_get("/favicon.ico", lambda _r: web.FileResponse(WEB / "img" / "icon.svg"))
    app.router.add_get("/api/v1/recordings", list_recordings)
    app.router.add_post("/api/v1/recordings/{rec}/share", share)
    app.router.add_delete("/api/v1/recordings/{rec}", delete)
    app.router.add_get("/api/v1/watch/{token}", watch)
    app.router.add_static("/static/", WEB)
    app.router.add_static("/media/recordings/ptok/", media_dir)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stub.base_url = f"http://127.0.0.1:{port}"
    try:
        yield stub
    finally:
        await runner.cleanup()
