"""One error shape for every HTTP failure: `{"error": {"code": "...", "message": "..."}}`.

`error_middleware` turns domain errors (`broker.errors.BrokerError`), aiohttp's HTTP exceptions
(unknown route, wrong method, oversized body), body-decoding failures and unexpected exceptions
into that shape with the right status. Nothing else in signaling/ builds error responses.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import web

from broker.errors import BrokerError

log = logging.getLogger("tongxin.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """An error a handler raises with an explicit status and code."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> web.Response:
    body = msgspec.json.encode({"error": {"code": code, "message": message}})
    return web.Response(status=status, body=body, content_type="application/json",
                        headers=headers)


def _http_exception_message(exc: web.HTTPException, request: web.Request) -> str:
    if exc.status == 404:
        return f"no such resource: {request.method} {request.path}"
    if exc.status == 405:
        allowed = ", ".join(sorted(getattr(exc, "allowed_methods", ()) or ()))
        hint = f" (use {allowed})" if allowed else ""
        return f"method {request.method} not allowed here{hint}"
    if exc.status == 413:
        limit = request.app._client_max_size
        return f"request body too large (limit {limit} bytes)"
    return exc.reason or "request failed"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    except BrokerError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return error_response(400, "invalid_body", f"request body rejected: {exc}")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.content_type == "application/json":
            raise
        code = HTTP_CODES.get(exc.status, "http_error")
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return error_response(exc.status, code, _http_exception_message(exc, request), headers)
    except Exception:
        log.exception("unhandled error", extra={"route": request.path})
        return error_response(500, "internal_error",
                              "the server failed on this request; it has been logged")
