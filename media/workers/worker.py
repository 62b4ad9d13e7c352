"""A media worker process: rooms on their own event loop and core, driven over a socket.

Started by `media.workers.pool.WorkerPool` with the spawn context; serves calls from the
parent concurrently (a slow negotiation never blocks another room), pushes room events, and
closes every peer connection when asked to or when the parent goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import logging
import os
import socket
from typing import Any

from media.peers.config import PeerConfig, ice_servers_from
from media.rooms.host import RoomHost
from media.workers.channel import open_socket, push_event, serve_calls

logger = logging.getLogger(__name__)

OPERATIONS = frozenset(
    {
        "open_room", "close_room", "join", "leave", "publish", "subscriber_answer",
        "request_offer", "set_spotlight", "set_muted", "set_data_budget", "describe_room",
        "load", "close", "start_recording", "stop_recording", "open_trunk", "set_trunk_peers",
    }
)
"""What the parent may call on the worker's `RoomHost`."""
PROFILE_ENV = "TONGXIN_MEDIA_PROFILE"
"""A directory: workers run under cProfile and leave their stats there when they stop."""


def worker_main(
    sock: socket.socket,
    ice_servers: list[dict[str, Any]],
    udp_host: str | None,
    log_level: int,
    adaptation: bool = True,
    node_id: str = "local",
    trunk_secret: bytes | None = None,
) -> None:
    """Process entry point."""
    logging.basicConfig(
        level=log_level, format=f"%(asctime)s media-worker[{os.getpid()}] %(name)s %(message)s"
    )
    config = PeerConfig(ice_servers_from(ice_servers), udp_host, adaptation)
    profile_dir = os.environ.get(PROFILE_ENV)
    profiler = cProfile.Profile() if profile_dir else None
    if profiler is not None:
        profiler.enable()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(sock, config, node_id, trunk_secret))
    if profiler is not None and profile_dir:
        profiler.disable()
        profiler.dump_stats(os.path.join(profile_dir, f"media-worker-{os.getpid()}.prof"))


async def serve(
    sock: socket.socket,
    config: PeerConfig,
    node_id: str = "local",
    trunk_secret: bytes | None = None,
) -> None:
    """Answer calls until the parent closes the socket or asks us to close."""
    reader, writer = await open_socket(sock)
    host = RoomHost(
        config, lambda room, pid, event: push_event(writer, room, pid, event),
        node_id=node_id, trunk_secret=trunk_secret,
    )
    stop = asyncio.Event()

    def dispatch(op: str, args: list[Any]) -> Any:
        if op not in OPERATIONS:
            raise ValueError(f"unknown operation {op!r}")
        if op == "close":
            return _close_then_stop(host, stop)
        return getattr(host, op)(*args)

    await serve_calls(reader, writer, dispatch, stop)
    await host.close()
    with contextlib.suppress(Exception):
        await writer.drain()
        writer.close()


async def _close_then_stop(host: RoomHost, stop: asyncio.Event) -> None:
    await host.close()
    asyncio.get_running_loop().call_soon(stop.set)
