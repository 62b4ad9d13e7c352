"""Fixtures of the fault tests: a Redis persisted as deploy/ configures it, and `tongxin serve`
child processes (stopped at the end, whatever happened)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from bench.processes import NodeProcess
from tests.helpers.redis_server import RedisServerProcess, require_redis_server

StartNode = Callable[..., Awaitable[NodeProcess]]


@pytest.fixture
def persisted_redis() -> Iterator[RedisServerProcess]:
    """A redis-server of this test alone with deploy/'s persistence (compose.yaml and
    k8s/redis/redis.conf: appendonly yes, appendfsync always), restartable on its port."""
    require_redis_server()
    with RedisServerProcess(fsync_always=True) as server:
        yield server


@pytest.fixture
async def start_node(tmp_path) -> AsyncIterator[StartNode]:
    """Starts `tongxin serve` children (NodeProcess keyword arguments); all stopped after."""
    nodes: list[NodeProcess] = []

    async def start(**kwargs: Any) -> NodeProcess:
        node = NodeProcess(tmp_path / f"node-{len(nodes)}", **kwargs)
        nodes.append(node)
        await node.start()
        return node

    try:
        yield start
    finally:
        for node in nodes:
            await node.stop()
