"""Errors the domain raises: what the user did wrong vs. what the system could not do.

Only `signaling/` turns these into HTTP statuses and WebSocket error frames.
"""

from __future__ import annotations


class BrokerError(Exception):
    """Base of every domain error; `code` is the stable machine-readable name."""

    code = "broker_error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidInput(BrokerError):
    """The request is well-formed but its values make no sense (unknown specialty, bad time)."""

    code = "invalid_input"
    status = 400


class NotFound(BrokerError):
    """The thing named does not exist (or the caller may not know it exists)."""

    code = "not_found"
    status = 404


class Conflict(BrokerError):
    """The request is valid but the state forbids it (already claimed, class ended)."""

    code = "conflict"
    status = 409


class Forbidden(BrokerError):
    """The caller is known but its role or permissions do not allow this."""

    code = "forbidden"
    status = 403


class Unauthorized(BrokerError):
    """The caller could not be identified: missing, malformed, expired or revoked token."""

    code = "unauthorized"
    status = 401


class StoreUnavailable(BrokerError):
    """The shared store (Redis) cannot be reached; the caller may retry."""

    code = "store_unavailable"
    status = 503
