"""aiortc's own SFU path, the benchmark's baseline: decode once, encode for every subscriber.

The publisher's tracks are received by stock aiortc (decoder threads), shared with
`MediaRelay`, and every subscriber's sender encodes them again. It speaks the subset of the
`RoomHost` operations the benchmark uses, in its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from media.peers.aiortc_bends import bind_host_candidates
from media.peers.config import PeerConfig
from media.rooms.host import EventCallback
from media.workers.channel import open_socket, push_event, serve_calls

logger = logging.getLogger(__name__)


class BaselineHost:
    """One room: one publisher, any number of subscribers, each with its own encoders."""

    def __init__(self, config: PeerConfig, emit: EventCallback) -> None:
        self._config = config
        self._emit = emit
        self._relay = MediaRelay()
        self._room_id = ""
        self._publisher = ""
        self._up: RTCPeerConnection | None = None
        self._tracks: dict[str, MediaStreamTrack] = {}
        self._down: dict[str, RTCPeerConnection] = {}

    def load(self) -> dict[str, int]:
        return {"rooms": 1 if self._room_id else 0, "participants": len(self._down)}

    async def open_room(self, room_id: str, kind: str) -> None:
        self._room_id = room_id

    async def join(self, room_id: str, participant_id: str, role: str) -> None:
        if role in ("teacher", "doctor"):
            self._publisher = participant_id
            return
        pc = self._config.new_peer_connection()
        self._down[participant_id] = pc
        sources = []
        for source, track in self._tracks.items():
            transceiver = pc.addTransceiver(self._relay.subscribe(track), direction="sendonly")
            sources.append((transceiver, source))
        bind_host_candidates(pc, self._config.udp_host)
        await pc.setLocalDescription(await pc.createOffer())
        tracks = {
            transceiver.mid: {"participant": self._publisher, "source": source}
            for transceiver, source in sources
        }
        self._emit(
            room_id,
            participant_id,
            {"type": "offer", "sdp": pc.localDescription.sdp, "tracks": tracks, "connection": 0},
        )

    async def publish(
        self, room_id: str, participant_id: str, offer_sdp: str, sources: dict[str, str]
    ) -> str:
        pc = self._config.new_peer_connection()
        self._up = pc
        await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        for transceiver in pc.getTransceivers():
            source = sources.get(transceiver.mid or "")
            if source is not None:
                self._tracks[source] = transceiver.receiver.track
        bind_host_candidates(pc, self._config.udp_host)
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    async def subscriber_answer(self, room_id: str, participant_id: str, answer_sdp: str) -> None:
        await self._down[participant_id].setRemoteDescription(
            RTCSessionDescription(answer_sdp, "answer")
        )

    async def leave(self, room_id: str, participant_id: str) -> None:
        pc = self._down.pop(participant_id, None)
        if pc is not None:
            await pc.close()

    async def close(self) -> None:
        for pc in [*self._down.values(), *([self._up] if self._up else [])]:
            with contextlib.suppress(Exception):
                await pc.close()
        self._down.clear()
        self._up = None


def baseline_main(sock: socket.socket, udp_host: str | None) -> None:
    """Process entry point."""
    logging.basicConfig(level=logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(sock, PeerConfig((), udp_host)))


async def _serve(sock: socket.socket, config: PeerConfig) -> None:
    reader, writer = await open_socket(sock)
    host = BaselineHost(config, lambda room, pid, event: push_event(writer, room, pid, event))
    stop = asyncio.Event()

    async def close() -> None:
        await host.close()
        asyncio.get_running_loop().call_soon(stop.set)

    operations: dict[str, Any] = {
        "open_room": host.open_room,
        "join": host.join,
        "publish": host.publish,
        "subscriber_answer": host.subscriber_answer,
        "leave": host.leave,
        "load": host.load,
        "close": close,
    }
    await serve_calls(reader, writer, lambda op, args: operations[op](*args), stop)
    await host.close()
    writer.close()
