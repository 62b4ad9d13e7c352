"""The rooms of one process (a media worker, or signaling itself with `workers=0`).

It speaks the `MediaBackend` operations for the rooms it hosts; events leave through one
callback as `(room_id, participant_id, event)`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from media.adapt.transcode import running_renditions
from media.errors import MediaUserError, UnknownRoom
from media.peers.config import PeerConfig
from media.recording.recorder import RoomRecorder, read_manifest
from media.rooms.room import Room

logger = logging.getLogger(__name__)

RECORDER_CLOSE_S = 20.0
"""How long stopping a recording waits for its files to be closed."""
EventCallback = Callable[[str, str, dict[str, Any]], None]


class RoomHost:
    """Opens, serves and closes rooms in the current process."""

    def __init__(
        self,
        config: PeerConfig,
        emit: EventCallback,
        *,
        node_id: str = "local",
        trunk_secret: bytes | None = None,
    ) -> None:
        self._config = config
        self._emit = emit
        self.node_id = node_id
        """This host's name on its rooms' trunks (`media.trunk`)."""
        self._trunk_secret = trunk_secret or os.urandom(32)
        self.rooms: dict[str, Room] = {}

    def load(self) -> dict[str, Any]:
        """How busy this host is: rooms, participants, and subscribers on each rung."""
        rungs: dict[str, int] = {}
        for room in self.rooms.values():
            for rung, n in room.rungs().items():
                rungs[rung] = rungs.get(rung, 0) + n
        return {
            "rooms": len(self.rooms),
            "participants": sum(len(r.participant_ids) for r in self.rooms.values()),
            "rungs": rungs,
            "transcoders": len(running_renditions()),
        }

    def room(self, room_id: str) -> Room:
        room = self.rooms.get(room_id)
        if room is None:
            raise UnknownRoom(f"room {room_id!r} is not open")
        return room

    async def open_room(self, room_id: str, kind: str) -> None:
        room = self.rooms.get(room_id)
        if room is not None:
            if room.kind != kind:
                raise MediaUserError(f"room {room_id!r} is already open as a {room.kind}")
            return
        self.rooms[room_id] = Room(
            room_id, kind, self._config, lambda pid, event: self._emit(room_id, pid, event)
        )
        logger.info("room opened room=%s kind=%s", room_id, kind)

    async def close_room(self, room_id: str) -> None:
        room = self.rooms.pop(room_id, None)
        if room is not None:
            await room.close()
            logger.info("room closed room=%s", room_id)

    async def join(self, room_id: str, participant_id: str, role: str) -> None:
        await self.room(room_id).join(participant_id, role)

    async def leave(self, room_id: str, participant_id: str) -> None:
        await self.room(room_id).leave(participant_id)

    async def publish(
        self, room_id: str, participant_id: str, offer_sdp: str, sources: dict[str, str]
    ) -> str:
        return await self.room(room_id).publish(participant_id, offer_sdp, sources)

    async def subscriber_answer(self, room_id: str, participant_id: str, answer_sdp: str) -> None:
        await self.room(room_id).subscriber_answer(participant_id, answer_sdp)

    async def request_offer(self, room_id: str, participant_id: str) -> None:
        await self.room(room_id).request_offer(participant_id)

    async def set_spotlight(self, room_id: str, participant_id: str | None) -> None:
        self.room(room_id).set_spotlight(participant_id)

    async def set_muted(self, room_id: str, participant_id: str, muted: bool) -> None:
        self.room(room_id).set_muted(participant_id, muted)

    async def set_data_budget(
        self, room_id: str, participant_id: str, mb_per_hour: float | None
    ) -> None:
        self.room(room_id).set_data_budget(participant_id, mb_per_hour)

    async def describe_room(self, room_id: str) -> dict[str, Any]:
        return self.room(room_id).describe()

    async def open_trunk(self, room_id: str, node_id: str | None = None) -> str:
        """Open the room's trunk endpoint (idempotent); its "host:port" for the other nodes.
        `node_id`: this host's name on that trunk if not its own (a worker a big room spans
        to, `media.workers.pool`)."""
        return await self.room(room_id).open_trunk(
            self._config.udp_host, node_id or self.node_id, self._trunk_secret
        )

    async def set_trunk_peers(
        self, room_id: str, peers: Mapping[str, str], siblings: list[str] | None = None
    ) -> None:
        """The other nodes serving the room (node id -> trunk "host:port"), replacing the last;
        `siblings`: those that are other workers of this node (`media.workers.pool`)."""
        await self.room(room_id).set_trunk_peers(dict(peers), siblings or ())

    async def start_recording(self, room_id: str, recording_id: str, directory: str) -> None:
        """Record the room's tracks into `directory` (continuing a recording found there)."""
        room = self.room(room_id)
        path = Path(directory)
        previous = await asyncio.to_thread(read_manifest, path)
        room.start_recording(RoomRecorder(recording_id, room_id, room.kind, path,
                                          previous=previous))

    async def stop_recording(self, room_id: str) -> dict[str, Any] | None:
        """Stop recording; returns the manifest once every file is closed (None: none on)."""
        room = self.rooms.get(room_id)
        recorder = room.stop_recording() if room is not None else None
        if recorder is None:
            return None
        await asyncio.to_thread(recorder.join, RECORDER_CLOSE_S)
        return recorder.stop()

    async def close(self) -> None:
        """Close every room and every peer connection."""
        for room_id in list(self.rooms):
            await self.close_room(room_id)
