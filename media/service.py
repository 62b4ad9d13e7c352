"""`MediaService`: the media relay as signaling uses it (see `media.backend.MediaBackend`).

With `workers=0` rooms live in the calling process; otherwise in worker processes, each room
on the least-loaded live worker (see `media.workers.pool`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from media.backend import MediaEventCallback
from media.errors import MediaUnavailable
from media.peers.config import PeerConfig, ice_servers_from
from media.rooms.host import RoomHost
from media.workers.pool import SPAN_AFTER, WorkerPool

logger = logging.getLogger(__name__)


class MediaService:
    """The media relay: rooms in this process (`workers=0`) or in worker processes."""

    def __init__(
        self,
        workers: int | None = 0,
        *,
        ice_servers: Iterable[Mapping[str, Any]] | None = None,
        udp_host: str | None = "127.0.0.1",
        adaptation: bool = True,
        node_id: str = "local",
        trunk_secret: bytes | str | None = None,
        span_after: int = SPAN_AFTER,
    ) -> None:
        self.workers = os.cpu_count() or 1 if workers is None else workers
        self._ice_servers = [dict(s) for s in ice_servers or ()]
        self._config = PeerConfig(ice_servers_from(self._ice_servers), udp_host, adaptation)
        self.node_id = node_id
        """This node's name on the trunks of the rooms it serves (`media.trunk`)."""
        self.span_after = span_after
        """A room whose home worker carries more of its participants spans another worker."""
        if isinstance(trunk_secret, str):
            trunk_secret = trunk_secret.encode()
        self._trunk_secret = trunk_secret or os.urandom(32)
        """Seals trunk datagrams (a random one: only this process's workers understand it)."""
        self._callbacks: list[MediaEventCallback] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._local: RoomHost | None = None
        self._pool: WorkerPool | None = None

    def on_event(self, callback: MediaEventCallback) -> None:
        self._callbacks.append(callback)

    def _dispatch(self, room_id: str, participant_id: str, event: dict[str, Any]) -> None:
        for callback in list(self._callbacks):
            try:
                callback(room_id, participant_id, event)
            except Exception:
                logger.exception("media event callback failed room=%s", room_id)

    def _emit_soon(self, room_id: str, participant_id: str, event: dict[str, Any]) -> None:
        assert self._loop is not None
        self._loop.call_soon(self._dispatch, room_id, participant_id, event)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.workers == 0:
            self._local = RoomHost(
                self._config, self._emit_soon, node_id=self.node_id,
                trunk_secret=self._trunk_secret,
            )
            return
        self._pool = WorkerPool(
            self.workers,
            ice_servers=self._ice_servers,
            udp_host=self._config.udp_host,
            emit=self._dispatch,
            adaptation=self._config.adaptation,
            node_id=self.node_id,
            trunk_secret=self._trunk_secret,
            span_after=self.span_after,
            # a node run at DEBUG wants its workers' decisions too (`bench weaklink --trace`)
            log_level=min(logging.WARNING, logging.getLogger().getEffectiveLevel()),
        )
        await self._pool.start()

    async def stop(self) -> None:
        if self._local is not None:
            await self._local.close()
            self._local = None
        if self._pool is not None:
            await self._pool.stop()
            self._pool = None

    def _backend(self) -> Any:
        backend = self._local if self._local is not None else self._pool
        if backend is None:
            raise MediaUnavailable("the media service is not started")
        return backend

    async def health(self) -> dict[str, Any]:
        if self._local is not None:
            return {"workers": 0, "alive": 0, **self._local.load()}
        if self._pool is None:
            raise MediaUnavailable("the media service is not started")
        return await self._pool.health()

    async def open_room(self, room_id: str, kind: str) -> None:
        await self._backend().open_room(room_id, kind)

    async def close_room(self, room_id: str) -> None:
        await self._backend().close_room(room_id)

    async def join(self, room_id: str, participant_id: str, role: str) -> None:
        await self._backend().join(room_id, participant_id, role)

    async def leave(self, room_id: str, participant_id: str) -> None:
        await self._backend().leave(room_id, participant_id)

    async def publish(
        self, room_id: str, participant_id: str, offer_sdp: str, sources: dict[str, str]
    ) -> str:
        return str(await self._backend().publish(room_id, participant_id, offer_sdp, sources))

    async def subscriber_answer(self, room_id: str, participant_id: str, answer_sdp: str) -> None:
        await self._backend().subscriber_answer(room_id, participant_id, answer_sdp)

    async def request_offer(self, room_id: str, participant_id: str) -> None:
        await self._backend().request_offer(room_id, participant_id)

    async def set_spotlight(self, room_id: str, participant_id: str | None) -> None:
        await self._backend().set_spotlight(room_id, participant_id)

    async def set_muted(self, room_id: str, participant_id: str, muted: bool) -> None:
        await self._backend().set_muted(room_id, participant_id, muted)

    async def set_data_budget(
        self, room_id: str, participant_id: str, mb_per_hour: float | None
    ) -> None:
        await self._backend().set_data_budget(room_id, participant_id, mb_per_hour)

    async def start_recording(self, room_id: str, recording_id: str, directory: str) -> None:
        await self._backend().start_recording(room_id, recording_id, directory)

    async def stop_recording(self, room_id: str) -> dict[str, Any] | None:
        result = await self._backend().stop_recording(room_id)
        return dict(result) if result is not None else None

    async def open_trunk(self, room_id: str) -> str:
        """Open the room's trunk endpoint (idempotent); its "host:port" (see MediaBackend)."""
        return str(await self._backend().open_trunk(room_id))

    async def set_trunk_peers(self, room_id: str, peers: Mapping[str, str]) -> None:
        """The other nodes serving the room now: node id -> trunk "host:port"."""
        await self._backend().set_trunk_peers(room_id, dict(peers))

    async def describe_room(self, room_id: str) -> dict[str, Any]:
        """What the room forwards right now (debugging and tests)."""
        return dict(await self._backend().describe_room(room_id))
