"""Real aiortc participants wired to a `MediaService` by plain SDP exchange, for media tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from client.clip import ClipTrack, load_clip
from client.peer import FrameLog, PeerClient
from media.service import MediaService


@contextlib.asynccontextmanager
async def running_relay(
    *args: Any, **kwargs: Any
) -> AsyncIterator[tuple[MediaService, RelayHarness]]:
    """A started `MediaService(*args, **kwargs)` and a `RelayHarness` on it, both closed
    when the block ends."""
    service = MediaService(*args, **kwargs)
    await service.start()
    relay = RelayHarness(service)
    try:
        yield service, relay
    finally:
        await relay.close()
        await service.stop()


class RelayHarness:
    """Creates participants of a service's rooms and answers the relay's offers for them."""

    def __init__(self, service: MediaService) -> None:
        self.service = service
        self.clients: dict[tuple[str, str], PeerClient] = {}
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.errors: list[BaseException] = []
        self._tasks: set[asyncio.Task[None]] = set()
        service.on_event(self._on_event)

    def _on_event(self, room_id: str, participant_id: str, event: dict[str, Any]) -> None:
        self.events.append((room_id, participant_id, event))
        client = self.clients.get((room_id, participant_id))
        if event["type"] == "offer" and client is not None:
            task = asyncio.ensure_future(self._answer(client, event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, client: PeerClient, event: dict[str, Any]) -> None:
        try:
            await client.on_offer(event)
        except Exception as exc:  # surfaced by the tests through `errors`
            self.errors.append(exc)

    async def join(
        self, room_id: str, participant_id: str, role: str, frame_log: FrameLog | None = None
    ) -> PeerClient:
        service = self.service

        async def publish_offer(sdp: str, sources: dict[str, str]) -> str:
            return await service.publish(room_id, participant_id, sdp, sources)

        async def send_answer(sdp: str) -> None:
            await service.subscriber_answer(room_id, participant_id, sdp)

        client = PeerClient(
            participant_id,
            publish_offer=publish_offer,
            send_answer=send_answer,
            frame_log=frame_log,
        )
        self.clients[(room_id, participant_id)] = client
        await service.join(room_id, participant_id, role)
        return client

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for client in self.clients.values():
            await client.close()


def clip_tracks(
    log: FrameLog, video: str = "vp8", sources: tuple[str, ...] = ("mic", "camera")
) -> dict[str, ClipTrack]:
    """Clip tracks for the given sources (mic: Opus; camera/screen: `video`)."""
    tracks: dict[str, ClipTrack] = {}
    for source in sources:
        clip = load_clip("opus" if source == "mic" else video)
        tracks[source] = ClipTrack(clip, on_frame=log.recorder(source))
    return tracks


async def wait_until(
    condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition"
) -> None:
    """Poll `condition` until true; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)
