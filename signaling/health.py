"""Liveness, readiness and metrics endpoints.

`/healthz` answers while the process runs; `/readyz` answers 200 only when the store and the
media workers answer within `READY_TIMEOUT_S`, else 503 naming what is down; `/metrics`
renders the app's Prometheus registry.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from broker.errors import StoreUnavailable
from signaling.appkeys import MEDIA, METRICS, STARTED_AT, STORE

READY_TIMEOUT_S = 2.0


async def healthz(request: web.Request) -> web.Response:
    uptime = time.monotonic() - request.app[STARTED_AT]
    return web.json_response({"status": "ok", "uptime_s": round(uptime, 1)})


async def _check_store(app: web.Application) -> str | None:
    try:
        await asyncio.wait_for(app[STORE].ping(), READY_TIMEOUT_S)
    except (TimeoutError, StoreUnavailable, OSError) as exc:
        return f"store ({app[STORE].name}) unreachable: {exc or type(exc).__name__}"
    return None


async def _check_media(app: web.Application) -> tuple[str | None, dict[str, Any]]:
    media = app.get(MEDIA)
    if media is None:
        return None, {}
    try:
        health = await asyncio.wait_for(media.health(), READY_TIMEOUT_S)
    except Exception as exc:  # the media side may fail in any way; readiness reports it
        return f"media unreachable: {exc or type(exc).__name__}", {}
    workers = int(health.get("workers", 0))
    alive = int(health.get("alive", workers))
    metrics = app[METRICS]
    metrics.media_workers.set(workers)
    metrics.media_workers_alive.set(alive)
    metrics.media_rooms.set(int(health.get("rooms", 0)))
    if workers and alive < workers:
        return f"media workers down: {workers - alive} of {workers}", health
    return None, health


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    store_problem, (media_problem, media_health) = await asyncio.gather(
        _check_store(app), _check_media(app)
    )
    app[METRICS].store_up.set(0 if store_problem else 1)
    problems = [p for p in (store_problem, media_problem) if p]
    if problems:
        return web.json_response(
            {"error": {"code": "not_ready", "message": "; ".join(problems)}}, status=503
        )
    return web.json_response({"status": "ready", "store": app[STORE].name, "media": media_health})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
