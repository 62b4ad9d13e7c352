"""The aiohttp application factory: `create_app(config, store, media, services)`.

Wires middlewares, the REST route table, the WebSocket endpoint, health endpoints, the OpenAPI
document and the static web client. It owns no state of its own: everything it needs is passed
in and kept on the app under typed keys (signaling/appkeys.py).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from broker.store import Store
from media.backend import MediaBackend
from signaling import health
from signaling.appkeys import CONFIG, HUB, MEDIA, METRICS, SERVICES, STARTED_AT, STORE
from signaling.config import ServeConfig
from signaling.gauges import install_gauges
from signaling.http_errors import error_middleware
from signaling.hub import SessionHub
from signaling.metrics import NodeMetrics, create_metrics
from signaling.middleware import (
    metrics_middleware,
    rate_limit_middleware,
    request_id_middleware,
    security_headers_middleware,
)
from signaling.openapi import build_openapi
from signaling.placement import Placement
from signaling.ratelimit import RateLimiter
from signaling.recording_routes import install_recording_routes
from signaling.routes import install_routes
from signaling.services import Services
from signaling.serving import ServingRooms
from signaling.web_routes import install_web_routes

OPENAPI_KEY = web.AppKey("openapi", dict)


def create_app(
    config: ServeConfig,
    store: Store,
    *,
    media: MediaBackend | None = None,
    services: Services | None = None,
    metrics: NodeMetrics | None = None,
    placement: Placement | None = None,
) -> web.Application:
    """Build the application; the caller owns `store`, `media` and `services` lifetimes."""
    metrics = metrics or create_metrics()
    limiter = RateLimiter(config.rate_limit_per_minute)
    app = web.Application(
        client_max_size=config.max_body_bytes,
        middlewares=[
            request_id_middleware,
            metrics_middleware(metrics),
            security_headers_middleware,
            rate_limit_middleware(limiter),
            error_middleware,
        ],
    )
    app[CONFIG] = config
    app[STORE] = store
    app[METRICS] = metrics
    app[MEDIA] = media
    app[STARTED_AT] = time.monotonic()

    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", health.metrics)

    specs: list[Any] = []
    extra_types: tuple[Any, ...] = ()
    if services is not None:
        app[SERVICES] = services
        hub = SessionHub(services, media, metrics)
        if placement is not None:
            hub.placement = placement
            placement.load = hub.media_load
            if media is not None:
                hub.serving = ServingRooms(services, media, placement)
                placement.on_beat = hub.serving.beat
            metrics.node_info.labels(placement.node_id, placement.role,
                                     placement.region or "").set(1)
        app[HUB] = hub
        specs, extra_types = install_routes(app)
        specs = [*specs, *install_recording_routes(app)]

        async def start_hub(app: web.Application) -> None:
            await hub.start()

        async def stop_hub(app: web.Application) -> None:
            await hub.close_all()

        app.on_startup.append(start_hub)
        app.on_shutdown.append(stop_hub)
    app[OPENAPI_KEY] = build_openapi(specs, extra_types)
    app.router.add_get("/api/openapi.json", openapi_document)
    install_web_routes(app)
    install_gauges(app)
    return app


async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI_KEY])
