"""The composition root: one Tongxin node = store + media relay + broker services + web app.

`run_node` starts everything, prints where to go, waits for a stop signal, then shuts down in
order: WebSockets get a going-away close, the HTTP server stops, media stops, the store closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import socket
import ssl
import sys

from aiohttp import web

from broker.store import Store
from media.backend import MediaBackend
from signaling.app import create_app
from signaling.appkeys import HUB
from signaling.config import ServeConfig
from signaling.logs import configure_logging
from signaling.placement import Placement
from signaling.services import Services, build_services, shared_secret

log = logging.getLogger("tongxin.node")

SHUTDOWN_TIMEOUT_S = 5.0
KEEPALIVE_TIMEOUT_S = 15.0


def make_store(config: ServeConfig) -> Store:
    if config.redis_url:
        from broker.redis_store import RedisStore

        return RedisStore(config.redis_url)
    from broker.memory_store import MemoryStore

    return MemoryStore()


def new_node_id() -> str:
    """This node's id in the placement registry and on the media trunk."""
    return f"{socket.gethostname()}-{secrets.token_hex(4)}"


async def trunk_secret(config: ServeConfig, store: Store) -> bytes | None:
    """What seals the media trunk between nodes: the token secret every node of the cluster
    shares (configured, or agreed through Redis); None on a lone node."""
    if config.token_secret:
        return config.token_secret.encode()
    if store.name == "redis":
        return (await shared_secret(store)).encode()
    return None


def make_media(config: ServeConfig, node_id: str = "local",
               secret: bytes | None = None) -> MediaBackend | None:
    try:
        from media.service import MediaService
    except ModuleNotFoundError:
        log.warning("media relay not available: running signaling only")
        return None
    # A node bound to loopback is reachable only from this machine: keep media there too.
    # Otherwise gather candidates on every interface (aioice skips loopback itself).
    loopback = config.host in ("127.0.0.1", "localhost", "::1")
    return MediaService(workers=config.media_workers, ice_servers=None,
                        udp_host="127.0.0.1" if loopback else None,
                        adaptation=config.adaptation, node_id=node_id, trunk_secret=secret)


def make_services(config: ServeConfig, store: Store, media: MediaBackend | None) -> Services:
    return build_services(config, store, media)


def make_placement(config: ServeConfig, store: Store, media: MediaBackend | None,
                   node_id: str | None = None) -> Placement | None:
    """Room placement across nodes: only with media on a shared (Redis) store. The node is
    reached at `config.placement_url` (TONGXIN_NODE_URL: each node's own address, while
    TONGXIN_PUBLIC_URL stays the service address printed in join links); its media role and
    region go into its registration."""
    if store.name != "redis" or media is None:
        return None
    return Placement(store, node_id or new_node_id(), config.placement_url,
                     role=config.media_role, region=config.region,
                     span_after=config.span_after)


def _ssl_context(config: ServeConfig) -> ssl.SSLContext | None:
    if not config.tls_cert or not config.tls_key:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(config.tls_cert), str(config.tls_key))
    return context


def print_banner(config: ServeConfig, store: Store, links: dict[str, str] | None) -> None:
    base = config.display_url
    lines = [
        "",
        f"Tongxin 同心 is running on the {store.name} store.",
        f"  Open the operator dashboard: {base}/",
        f"  Health: {base}/healthz   API: {base}/api/openapi.json",
    ]
    if links:
        lines.append("  Demo join links (valid 7 days; anyone with a link can join as that role):")
        width = max(len(name) for name in links)
        for name, path in links.items():
            lines.append(f"    {name:<{width}}  {base}{path}")
    lines.append("  Press Ctrl+C to stop.")
    print("\n".join(lines), flush=True)


async def run_node(config: ServeConfig, stop: asyncio.Event,
                   started: asyncio.Future[str] | None = None) -> None:
    """Run one node until `stop` is set; `started` receives the base URL once serving."""
    store = make_store(config)
    node_id = new_node_id()
    media: MediaBackend | None = None
    runner: web.AppRunner | None = None
    services: Services | None = None
    placement: Placement | None = None
    try:
        media = make_media(config, node_id, await trunk_secret(config, store))
        if media is not None:
            await media.start()
        services = make_services(config, store, media)
        links = None
        await services.start()
        if config.demo:
            links = await services.load_demo()
        placement = make_placement(config, store, media, node_id)
        app = create_app(config, store, media=media, services=services, placement=placement)
        # keepalive_timeout also bounds a slow-loris client trickling its headers
        # (aiohttp has no separate header timeout; its default keep-alive is an hour).
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S,
                               access_log=None, keepalive_timeout=KEEPALIVE_TIMEOUT_S)
        await runner.setup()
        if placement is not None:
            await placement.start()  # registered before the first client can arrive
        site = web.TCPSite(runner, config.host, config.port, ssl_context=_ssl_context(config))
        await site.start()
        print_banner(config, store, links)
        log.info("serving", extra={"url": config.display_url, "store": store.name})
        if started is not None and not started.done():
            started.set_result(config.display_url)
        await stop.wait()
        log.info("stopping")
    finally:
        if runner is not None:
            hub = runner.app.get(HUB)
            if hub is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(hub.close_all(), SHUTDOWN_TIMEOUT_S)
                if hub.serving is not None:  # other nodes drop this one's trunk at once
                    with contextlib.suppress(Exception):
                        await hub.serving.stop()
            await runner.cleanup()
        if placement is not None:
            with contextlib.suppress(Exception):
                await placement.stop()
        if services is not None:
            with contextlib.suppress(Exception):
                await services.stop()
        if media is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(media.stop(), SHUTDOWN_TIMEOUT_S)
        with contextlib.suppress(Exception):
            await store.close()


def serve_forever(config: ServeConfig) -> int:
    """Run until SIGINT or SIGTERM; exit code 0 on a clean stop, 1 when it cannot start."""
    configure_logging(config.log_format, config.log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_node(config, stop)

    try:
        asyncio.run(main())
    except OSError as exc:
        sys.stderr.write(f"tongxin serve: error: cannot listen on {config.host}:{config.port}: "
                         f"{exc.strerror or exc}\n")
        return 1
    return 0
