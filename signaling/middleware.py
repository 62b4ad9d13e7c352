"""Request-wide middlewares: request id, metrics, security headers and rate limits.

Order in the app (outermost first): request id -> metrics -> security headers -> rate limit ->
errors (signaling/http_errors.py) -> handler. The error middleware is innermost so every
failure, whatever raised it, is counted and carries the headers.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from signaling.http_errors import error_response
from signaling.logs import request_id_var
from signaling.metrics import NodeMetrics
from signaling.ratelimit import RateLimiter

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    "connect-src 'self' ws: wss:",
    "worker-src 'self' blob:",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(self), microphone=(self), display-capture=(self)",
    "Cross-Origin-Opener-Policy": "same-origin",
}

UNLIMITED_PATHS = ("/healthz", "/readyz", "/metrics")
UNLIMITED_PREFIXES = ("/static/",)
"""Static modules, styles and images: one page load fetches dozens, and a school behind one NAT
loads several pages at once, so counting them would refuse the page's own scripts (a role page
whose module import got a 429 never mounts)."""


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-Id", "")
    rid = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex[:16]
    token = request_id_var.set(rid)
    try:
        response = await handler(request)
    finally:
        request_id_var.reset(token)
    if not response.prepared:
        response.headers["X-Request-Id"] = rid
    return response


def route_label(request: web.Request) -> str:
    """The route's template (never the raw path: that would leak join tokens into metrics)."""
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None or getattr(info, "http_exception", None) is not None:
        return "unmatched"
    return resource.canonical


def metrics_middleware(metrics: NodeMetrics) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            label = route_label(request)
            metrics.http_requests.labels(label, request.method, str(status)).inc()
            metrics.http_latency.labels(label, request.method).observe(
                time.perf_counter() - started
            )

    return middleware


@web.middleware
async def security_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if not response.prepared:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
    return response


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


def rate_limit_middleware(limiter: RateLimiter) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in UNLIMITED_PATHS or request.path.startswith(UNLIMITED_PREFIXES):
            return await handler(request)
        decision = limiter.check("addr:" + client_address(request), time.monotonic())
        if not decision.allowed:
            retry = max(1, int(decision.retry_after_s + 0.999))
            return error_response(
                429, "rate_limited",
                f"too many requests from this address; retry in {retry} s",
                {"Retry-After": str(retry)},
            )
        return await handler(request)

    return middleware
