"""Tongxin nodes in one test process sharing one real redis-server, as several `serve`
processes would: each with its own store connection, relay, broker services, placement and
aiohttp server. `NodeStarter` starts them (a media role, a region and worker processes as
asked) and kills whatever is left at the end; `Node.kill` is a crash (no goodbye: its keys
are left to expire)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.redis_store import RedisStore
from client.clip import ClipTrack, load_clip
from media.service import MediaService
from signaling.app import create_app
from signaling.config import ServeConfig
from signaling.node import trunk_secret
from signaling.placement import Placement
from signaling.services import Services
from tests.helpers.stores import unique_prefix


@dataclass
class Node:
    name: str
    base_url: str
    store: RedisStore
    services: Services
    media: MediaService
    placement: Placement
    server: Any
    alive: bool = True

    async def kill(self) -> None:
        """Die without a goodbye: registration, room and serving keys are left to expire."""
        if not self.alive:
            return
        self.alive = False
        await self.placement.stop(graceful=False)
        await self.server.close()
        await self.services.stop()
        await self.media.stop()
        await self.store.close()


@dataclass
class NodeStarter:
    """Starts nodes on one Redis key prefix (one cluster per test)."""

    redis_url: str
    aiohttp_server: Any
    data_dir: Path
    prefix: str = field(default_factory=unique_prefix)
    nodes: list[Node] = field(default_factory=list)

    async def start(self, name: str, role: str = "any", region: str | None = None,
                    workers: int = 0, span_after: int | None = None) -> Node:
        store = RedisStore(self.redis_url, prefix=self.prefix)
        options: dict[str, Any] = {"media_role": role, "region": region}
        if span_after is not None:
            options["span_after"] = span_after
        config = ServeConfig(media_workers=workers, demo=False, data_dir=self.data_dir / name,
                             rate_limit_per_minute=100_000, **options)
        # no TONGXIN_TOKEN_SECRET: the nodes adopt the key shared in Redis, and the trunk is
        # sealed with it, as `serve` does
        media = MediaService(workers=workers, node_id=name,
                             trunk_secret=await trunk_secret(config, store))
        await media.start()
        services = Services(config, store, media)
        await services.start()
        placement = Placement(store, name, "http://unset", role=role, region=region,
                              span_after=config.span_after)
        server = await self.aiohttp_server(create_app(config, store, media=media,
                                                      services=services, placement=placement))
        placement.url = str(server.make_url("")).rstrip("/")
        await placement.start()
        node = Node(name, placement.url, store, services, media, placement, server)
        self.nodes.append(node)
        return node

    async def kill_all(self) -> None:
        for node in self.nodes:
            await node.kill()


def clip_tracks() -> dict[str, ClipTrack]:
    """A participant's microphone and camera, played from pre-encoded clips."""
    return {"mic": ClipTrack(load_clip("opus")), "camera": ClipTrack(load_clip("vp8"))}
