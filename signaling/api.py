"""The REST route table: each route declared once with its request and response types.

`ApiRoutes.route` registers a thin handler together with what it accepts and returns; the same
table builds the aiohttp routes and the OpenAPI document (`signaling/openapi.py`), so the two
cannot drift. Handlers receive a `Call` (the request, its decoded body, the caller's claims)
and return a msgspec-encodable value.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec
from aiohttp import web

from signaling.http_errors import ApiError

T = TypeVar("T")


@dataclass(slots=True)
class Call(Generic[T]):
    """What a handler sees of one API request."""

    request: web.Request
    body: T
    claims: Any
    """The verified token claims of the caller (None on public routes)."""

    def param(self, name: str) -> str:
        return self.request.match_info[name]

    def query(self, name: str, default: str | None = None) -> str | None:
        return self.request.query.get(name, default)

    def query_int(self, name: str, default: int, low: int = 0, high: int = 10_000) -> int:
        raw = self.request.query.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(400, "invalid_query", f"{name}: {raw!r} is not a whole number") from None
        if not low <= value <= high:
            raise ApiError(400, "invalid_query", f"{name}: {value} is out of range ({low}..{high})")
        return value


Authenticate = Callable[[web.Request, "RouteSpec"], Awaitable[Any]]
HandlerFn = Callable[[Call[Any]], Awaitable[Any]]


@dataclass(slots=True)
class RouteSpec:
    """One REST route as declared."""

    method: str
    path: str
    handler: HandlerFn
    summary: str
    tag: str
    request_type: Any = None
    response_type: Any = None
    status: int = 200
    roles: frozenset[str] | None = None
    """Roles allowed to call; None means public (no token needed)."""
    query: dict[str, str] = field(default_factory=dict)
    """Query parameters: name -> description."""


_encoder = msgspec.json.Encoder()


class ApiRoutes:
    """A table of `RouteSpec`s; see the module docstring."""

    def __init__(self) -> None:
        self.specs: list[RouteSpec] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tag: str,
        request: Any = None,
        response: Any = None,
        status: int = 200,
        roles: set[str] | frozenset[str] | None = None,
        query: dict[str, str] | None = None,
    ) -> Callable[[HandlerFn], HandlerFn]:
        def register(fn: HandlerFn) -> HandlerFn:
            self.specs.append(RouteSpec(
                method=method, path=path, handler=fn, summary=summary, tag=tag,
                request_type=request, response_type=response, status=status,
                roles=frozenset(roles) if roles is not None else None, query=query or {},
            ))
            return fn
        return register

    def install(self, app: web.Application, authenticate: Authenticate) -> None:
        """Add every route to `app`, each wrapped to decode, authenticate and encode."""
        for spec in self.specs:
            app.router.add_route(spec.method, spec.path, _wrap(spec, authenticate))


def _wrap(
    spec: RouteSpec, authenticate: Authenticate
) -> Callable[[web.Request], Awaitable[web.Response]]:
    decoder = msgspec.json.Decoder(spec.request_type) if spec.request_type is not None else None

    async def handle(request: web.Request) -> web.Response:
        claims = await authenticate(request, spec) if spec.roles is not None else None
        body: Any = None
        if decoder is not None:
            if request.content_type not in ("application/json", ""):
                raise ApiError(415, "unsupported_media_type",
                               f"send the body as application/json, not {request.content_type}")
            raw = await request.read()
            if not raw:
                raise ApiError(400, "invalid_body",
                               "request body is empty; a JSON object is expected")
            try:
                body = decoder.decode(raw)
            except RecursionError:
                raise ApiError(400, "invalid_body", "request body is nested too deeply") from None
        result = await spec.handler(Call(request, body, claims))
        if isinstance(result, web.StreamResponse):
            return result  # type: ignore[return-value]
        if result is None:
            return web.Response(status=204 if spec.status == 200 else spec.status)
        return web.Response(status=spec.status, body=_encoder.encode(result),
                            content_type="application/json")

    handle.__name__ = spec.handler.__name__
    return handle
