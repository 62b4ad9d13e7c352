"""Typed keys of what lives on the aiohttp application (shared state, no globals)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from broker.store import Store
from signaling.config import ServeConfig
from signaling.metrics import NodeMetrics

CONFIG = web.AppKey("config", ServeConfig)
STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", NodeMetrics)
MEDIA = web.AppKey("media", Any)  # media.backend.MediaBackend, or None for API-only tests
SERVICES = web.AppKey("services", Any)  # signaling.services.Services
HUB = web.AppKey("hub", Any)  # signaling.hub.SessionHub
STARTED_AT = web.AppKey("started_at", float)
