"""A running Tongxin node (app + services + in-process media) for signaling tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from broker.store import Store
from tests.helpers.running_node import RunningNode, running_node


@pytest.fixture
async def node(store: Store, aiohttp_server, tmp_path) -> AsyncIterator[RunningNode]:
    """A node on `store` (memory and Redis) with in-process media and the demo loaded."""
    async with running_node(store, aiohttp_server, tmp_path) as (running, _server):
        yield running
