"""/readyz follows the Redis server: 503 soon after it stops, 200 soon after it returns."""

from __future__ import annotations

import asyncio
import time

import pytest

from broker.redis_store import RedisStore
from signaling.app import create_app
from signaling.config import ServeConfig
from tests.helpers.redis_server import RedisServerProcess, require_redis_server

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

READY_BOUND_S = 5.0
"""The bound for /readyz to follow the store, in each direction."""


async def wait_for_status(client, status: int, bound: float) -> tuple[float, float]:
    """Poll /readyz until it answers `status`; (seconds taken, slowest single request)."""
    started = time.monotonic()
    slowest = 0.0
    while time.monotonic() - started < bound * 3:
        t0 = time.monotonic()
        resp = await client.get("/readyz")
        slowest = max(slowest, time.monotonic() - t0)
        if resp.status == status:
            return time.monotonic() - started, slowest
        await asyncio.sleep(0.2)
    raise AssertionError(f"/readyz never answered {status}")


async def test_readyz_follows_redis_down_and_back_without_restart(aiohttp_client):
    require_redis_server()
    with RedisServerProcess() as server:
        await check_readyz_follows(aiohttp_client, server)


async def check_readyz_follows(aiohttp_client, server: RedisServerProcess) -> None:
    store = RedisStore(server.url, prefix="readyz:")
    try:
        client = await aiohttp_client(
            create_app(ServeConfig(media_workers=0, demo=False), store)
        )
        assert (await client.get("/readyz")).status == 200

        server.stop()
        took, slowest = await wait_for_status(client, 503, READY_BOUND_S)
        body = await (await client.get("/readyz")).json()
        assert body["error"]["code"] == "not_ready"
        assert "store" in body["error"]["message"]
        assert took <= READY_BOUND_S, f"503 only after {took:.1f} s"
        assert slowest <= READY_BOUND_S, f"a /readyz request hung {slowest:.1f} s"
        assert (await client.get("/healthz")).status == 200

        server.start()
        took, slowest = await wait_for_status(client, 200, READY_BOUND_S)
        assert took <= READY_BOUND_S, f"200 only after {took:.1f} s"
        metrics = await (await client.get("/metrics")).text()
        assert "tongxin_store_up 1.0" in metrics
    finally:
        await store.close()
