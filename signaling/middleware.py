"""Request-wide middlewares: request id, metrics, security headers and rate limits, and the
client address they count (`client_address`: `X-Forwarded-For`/`Forwarded` are believed only
from a configured trusted proxy).

Order in the app (outermost first): request id -> metrics -> security headers -> rate limit ->
errors (signaling/http_errors.py) -> handler. The error middleware is innermost so every
failure, whatever raised it, is counted and carries the headers.
"""

from __future__ import annotations

import ipaddress
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractResource

from signaling.appkeys import CONFIG
from signaling.http_errors import error_response
from signaling.logs import request_id_var
from signaling.metrics import NodeMetrics
from signaling.ratelimit import RateLimiter

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
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

STRICT_TRANSPORT_SECURITY = "max-age=31536000"
"""Sent on responses served over TLS (`--tls-cert`): browsers keep to HTTPS for a year. Behind
a TLS proxy, the proxy sends it."""

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
    if not isinstance(resource, AbstractResource) or \
            getattr(info, "http_exception", None) is not None:
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
        if request.secure:
            response.headers.setdefault("Strict-Transport-Security", STRICT_TRANSPORT_SECURITY)
    return response


def parse_hop(raw: str) -> IPAddress | None:
    """The address in one proxy hop (`1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]:80`, `"…"`),
    or None for anything else (`unknown`, obfuscated `_names`, garbage)."""
    text = raw.strip().strip('"').strip()
    if text.startswith("["):
        text, closed, _ = text[1:].partition("]")
        if not closed:
            return None
    elif text.count(":") == 1:
        text = text.partition(":")[0]  # IPv4 with a port
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def forwarded_hops(x_forwarded_for: Sequence[str], forwarded: Sequence[str]) -> list[str]:
    """The hops a request came through, nearest the client first: from every
    `X-Forwarded-For` header, or (only when there is none) the `for=` of every `Forwarded`
    element (RFC 7239)."""
    if x_forwarded_for:
        return [hop for header in x_forwarded_for for hop in header.split(",")]
    hops = []
    for header in forwarded:
        for element in header.split(","):
            for pair in element.split(";"):
                key, _, value = pair.partition("=")
                if key.strip().lower() == "for":
                    hops.append(value)
    return hops


def forwarded_client(peer: str | None, hops: Sequence[str],
                     trusted: Sequence[IPNetwork]) -> str:
    """The client's address: the direct `peer`, unless `peer` is a trusted proxy; then the
    right-most hop that is not a trusted proxy (hops left of it were written by the client and
    may be forged). An unreadable hop ends the walk at the proxy that wrote it; when every hop
    is trusted, the left-most one."""
    if peer is None:
        return "unknown"
    address = parse_hop(peer)
    if address is None or not _trusted(address, trusted):
        return str(address) if address is not None else peer
    nearest = address
    for raw in reversed(hops):
        hop = parse_hop(raw)
        if hop is None:
            return str(nearest)
        if not _trusted(hop, trusted):
            return str(hop)
        nearest = hop
    return str(nearest)


def _trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def client_address(request: web.Request) -> str:
    """The address per-address limits count: see `forwarded_client`."""
    config = request.app.get(CONFIG)
    trusted = config.trusted_proxies if config is not None else ()
    if not trusted:
        return request.remote or "unknown"
    headers = request.headers
    hops = forwarded_hops(headers.getall("X-Forwarded-For", []),
                          headers.getall("Forwarded", []))
    return forwarded_client(request.remote, hops, trusted)


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
