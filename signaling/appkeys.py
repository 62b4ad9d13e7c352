"""Typed keys of what lives on the aiohttp application (shared state, no globals).

`SERVICES` and `HUB` are set only on a node with broker services (`create_app(services=...)`);
`MEDIA` is None on a node without a media relay. The hub is named for type checking only:
`signaling.hub` imports `signaling.middleware`, which reads `CONFIG` from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from broker.store import Store
from media.backend import MediaBackend
from signaling.config import ServeConfig
from signaling.metrics import NodeMetrics
from signaling.services import Services

if TYPE_CHECKING:
    from signaling.hub import SessionHub

CONFIG = web.AppKey("config", ServeConfig)
STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", NodeMetrics)
MEDIA: web.AppKey[MediaBackend | None] = web.AppKey("media")
SERVICES = web.AppKey("services", Services)
HUB: web.AppKey[SessionHub] = web.AppKey("hub")
STARTED_AT = web.AppKey("started_at", float)
