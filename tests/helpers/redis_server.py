"""A real `redis-server` for the tests: `RedisServerProcess` and friends are bench.processes'
(the benches start theirs the same way); what is the tests' own is `require_redis_server`,
which skips a test without the binary locally and fails it when `CI=true`.
"""

from __future__ import annotations

import os

import pytest

from bench.processes import (
    REDIS_MISSING,
    PortTaken,
    RedisServerProcess,
    answers_ping,
    redis_server_binary,
)

__all__ = ["PortTaken", "RedisServerProcess", "answers_ping", "redis_server_binary",
           "require_redis_server"]


def require_redis_server() -> None:
    """Skip the calling test when `redis-server` is missing; fail instead when `CI=true`."""
    if redis_server_binary() is not None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{REDIS_MISSING}; CI must run the Redis tests", pytrace=False)
    pytest.skip(REDIS_MISSING)
