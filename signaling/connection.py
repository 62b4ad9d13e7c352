"""One WebSocket connection: its identity once joined, and a bounded outgoing queue.

Frames are queued without awaiting, and one writer task drains the queue, so a client that
never reads fills only its own queue: when that is full the connection is closed (1008, "too
slow") and nobody else waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from dataclasses import dataclass, field

from aiohttp import WSCloseCode, web

from signaling.messages import ServerFrame, encoder

log = logging.getLogger("tongxin.ws")

SEND_QUEUE_FRAMES = 256
"""Frames a connection may fall behind by before it is closed as too slow."""
CLOSE_TOO_SLOW = 1008
_ids = itertools.count(1)


@dataclass(eq=False)
class Identity:
    """Who is on a connection, from its verified credential."""

    participant_id: str
    role: str
    name: str
    permissions: frozenset[str]
    session_id: str | None
    """Session the credential names (class id; expert/site id for consoles)."""
    jti: str
    expires_at: float
    """When the credential expires, epoch seconds (the connection is closed then)."""
    link_jti: str | None = None
    """The join link the credential was exchanged from (revoking it revokes the credential)."""

    def revoked_by(self, jti: str) -> bool:
        """True when revoking token `jti` revokes this credential."""
        return jti in (self.jti, self.link_jti)

    def lapsed(self, now: float) -> bool:
        """True once the credential has expired at `now` (epoch seconds)."""
        return now >= self.expires_at


@dataclass(eq=False)
class Connection:
    """A WebSocket and what the hub knows about it."""

    ws: web.WebSocketResponse
    address: str
    id: int = field(default_factory=lambda: next(_ids))
    identity: Identity | None = None
    media_session: str | None = None
    """The media session (class or consult id) this connection is in, if any."""
    redirected: bool = False
    """Sent to another node (`redirect`): its seat lives there, not here."""
    last_seen: float = field(default_factory=time.monotonic)
    closed: bool = False
    expiry: asyncio.TimerHandle | None = None
    """Closes the connection when its credential expires (cancelled when it closes)."""
    _queue: asyncio.Queue[bytes | None] = field(
        default_factory=lambda: asyncio.Queue(SEND_QUEUE_FRAMES)
    )
    _writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    def send(self, frame: ServerFrame) -> None:
        """Queue `frame`; close the connection when the client has stopped reading."""
        if self.closed:
            return
        try:
            self._queue.put_nowait(encoder.encode(frame))
        except asyncio.QueueFull:
            log.warning("closing slow websocket", extra={"conn": self.id})
            self.closed = True
            asyncio.get_running_loop().create_task(
                self.ws.close(code=CLOSE_TOO_SLOW, message=b"too slow")
            )

    async def _write_loop(self) -> None:
        try:
            while True:
                data = await self._queue.get()
                if data is None:
                    return
                await self.ws.send_str(data.decode())
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            return

    async def close(self, code: int = WSCloseCode.GOING_AWAY, message: bytes = b"") -> None:
        self.closed = True
        if self.expiry is not None:
            self.expiry.cancel()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=message)

    async def drain_and_stop(self) -> None:
        """Let queued frames go out, then stop the writer (used before a normal close)."""
        if self._writer is None:
            return
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(self._writer), 2.0)
