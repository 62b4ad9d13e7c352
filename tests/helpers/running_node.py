"""A running Tongxin node (app + services + in-process media, the demo loaded) on a given store,
behind pytest-aiohttp's test server: the signaling tests' `node` fixture and the abuse tests'
node with its own server options."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@contextlib.asynccontextmanager
async def running_node(
    store: Store, aiohttp_server: Any, tmp_path: Path, **server_options: Any
) -> AsyncIterator[tuple[RunningNode, Any]]:
    """A node on `store` with in-process media and the demo loaded, and its test server
    (`server_options` go to `aiohttp_server`); everything stopped on the way out."""
    config = ServeConfig(media_workers=0, demo=False, data_dir=tmp_path,
                         rate_limit_per_minute=100_000)
    media = MediaService(workers=0)
    await media.start()
    services = Services(config, store, media)
    await services.start()
    demo = await load_demo(services.directory, services.classes, services.consults,
                           services.tokens, services.clock())
    app = create_app(config, store, media=media, services=services)
    server = await aiohttp_server(app, **server_options)
    try:
        yield RunningNode(str(server.make_url("")).rstrip("/"), services, demo, media, app), server
    finally:
        await server.close()
        await services.stop()
        await media.stop()
