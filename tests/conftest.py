"""Fixtures shared by every test package: a real Redis server and the two `Store`s.

Redis tests need `redis-server`: without it they skip locally, and fail when `CI=true`
(CI must run them). Fixtures for one package belong in that package's own conftest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from broker.memory_store import MemoryStore
from broker.redis_store import RedisStore
from broker.store import Store
from tests.helpers.redis_server import RedisServerProcess, require_redis_server
from tests.helpers.stores import StoreHandleFactory, unique_prefix


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServerProcess]:
    """One `redis-server` for the session (no persistence); tests must not stop it."""
    require_redis_server()
    with RedisServerProcess() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServerProcess) -> str:
    redis_server.start()  # no-op while it runs; revives it if a test broke that rule
    return redis_server.url


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """A fresh `MemoryStore`, or a `RedisStore` in a namespace of its own."""
    if request.param == "memory":
        memory = MemoryStore()
        yield memory
        await memory.close()
        return
    url: str = request.getfixturevalue("redis_url")
    redis = RedisStore(url, prefix=unique_prefix())
    try:
        yield redis
    finally:
        await redis.close()


@pytest.fixture
async def store_handles(
    store: Store, request: pytest.FixtureRequest
) -> AsyncIterator[StoreHandleFactory]:
    """Opens more handles on `store`'s data: the same object for memory, and for Redis a new
    `RedisStore` (own connection pool) with the same prefix, as another node would have."""
    opened: list[RedisStore] = []

    async def open_handle() -> Store:
        if not isinstance(store, RedisStore):
            return store
        handle = RedisStore(request.getfixturevalue("redis_url"), prefix=store.prefix)
        opened.append(handle)
        return handle

    try:
        yield open_handle
    finally:
        for handle in opened:
            await handle.close()
