"""A running Tongxin node (app + services + in-process media) for signaling tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from broker.demo import DemoLinks, load_demo
from broker.store import Store
from media.service import MediaService
from signaling.app import create_app
from signaling.config import ServeConfig
from signaling.services import Services


@dataclass
class RunningNode:
    base_url: str
    services: Services
    demo: DemoLinks
    media: Any
    app: Any = None


@pytest.fixture
async def node(store: Store, aiohttp_server, tmp_path) -> AsyncIterator[RunningNode]:
    """A node on `store` (memory and Redis) with in-process media and the demo loaded."""
    config = ServeConfig(media_workers=0, demo=False, data_dir=tmp_path,
                         rate_limit_per_minute=100_000)
    media = MediaService(workers=0)
    await media.start()
    services = Services(config, store, media)
    await services.start()
    demo = await load_demo(services.directory, services.classes, services.consults,
                           services.tokens, services.clock())
    app = create_app(config, store, media=media, services=services)
    server = await aiohttp_server(app)
    try:
        yield RunningNode(str(server.make_url("")).rstrip("/"), services, demo, media, app)
    finally:
        await server.close()
        await services.stop()
        await media.stop()
