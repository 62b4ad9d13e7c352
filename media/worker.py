"""A media worker process: rooms on their own event loop and core, driven over a socket.

Started by `media.worker_pool.WorkerPool` with the spawn context; serves `Call`s from the
parent concurrently (a slow negotiation never blocks another room), pushes room events, and
closes every peer connection when asked to or when the parent goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
from typing import Any

from media.errors import MediaUserError
from media.peer_config import PeerConfig, ice_servers_from
from media.room_host import RoomHost
from media.worker_protocol import OPERATIONS, Call, Event, Reply, encode, error_reply, read_message

logger = logging.getLogger(__name__)


def worker_main(
    sock: socket.socket, ice_servers: list[dict[str, Any]], udp_host: str | None, log_level: int
) -> None:
    """Process entry point."""
    logging.basicConfig(
        level=log_level, format=f"%(asctime)s media-worker[{os.getpid()}] %(name)s %(message)s"
    )
    config = PeerConfig(ice_servers_from(ice_servers), udp_host)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(sock, config))


async def serve(sock: socket.socket, config: PeerConfig) -> None:
    """Answer calls until the parent closes the socket or asks us to close."""
    reader, writer = await asyncio.open_unix_connection(sock=sock)

    def send(message: Event | Reply) -> None:
        if not writer.is_closing():
            writer.write(encode(message))

    host = RoomHost(config, lambda room, pid, event: send(Event(room, pid, event)))
    tasks: set[asyncio.Task[None]] = set()
    done = asyncio.Event()

    async def handle(call: Call) -> None:
        try:
            if call.op not in OPERATIONS:
                raise ValueError(f"unknown operation {call.op!r}")
            result = getattr(host, call.op)(*call.args)
            if inspect.isawaitable(result):
                result = await result
            send(Reply(call.id, value=result))
        except Exception as exc:
            if not isinstance(exc, MediaUserError):
                logger.exception("call %s failed", call.op)
            send(error_reply(call.id, exc))
        if call.op == "close":
            done.set()

    async def read_calls() -> None:
        while True:
            message = await read_message(reader)
            if isinstance(message, Call):
                task = asyncio.create_task(handle(message))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

    reading = asyncio.create_task(read_calls())
    closing = asyncio.create_task(done.wait())
    await asyncio.wait({reading, closing}, return_when=asyncio.FIRST_COMPLETED)
    reading.cancel()
    closing.cancel()
    for task in list(tasks):
        if not task.done():
            task.cancel()
    await host.close()
    with contextlib.suppress(Exception):
        await writer.drain()
        writer.close()
