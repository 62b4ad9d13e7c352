"""A participant driven from Python: join link -> credential -> /ws -> aiortc media.

`RemoteParticipant` joins the way a browser does (PROTOCOL.md) and publishes or receives with
media/peer_client.py; `tongxin client`, the flow tests and the benchmarks use it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiortc import MediaStreamTrack

from media.peer_client import PeerClient
from signaling.ws_client import SignalingClient, split_join_link


class RemoteParticipant:
    """One participant of a Tongxin node, with signaling and media."""

    def __init__(self, base_url: str) -> None:
        self.signaling = SignalingClient(base_url)
        self.peer: PeerClient | None = None
        self._answer_waiters: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self.offer_errors: list[BaseException] = []

    @classmethod
    async def join_link(cls, link: str) -> RemoteParticipant:
        base, token = split_join_link(link)
        participant = cls(base)
        await participant.join_token(token)
        return participant

    async def join_token(self, token: str) -> dict[str, Any]:
        await self.signaling.exchange(token)
        self.peer = PeerClient(self.signaling.participant_id, publish_offer=self._publish_offer,
                               send_answer=self._send_answer)
        self.signaling.listeners.append(self._on_frame)
        return await self.signaling.connect()

    @property
    def id(self) -> str:
        return self.signaling.participant_id

    def _on_frame(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "offer" and self.peer is not None:
            task = asyncio.get_running_loop().create_task(self._answer_offer(frame))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif frame["type"] == "answer":
            self._answer_waiters.put_nowait(frame["sdp"])

    async def _answer_offer(self, frame: dict[str, Any]) -> None:
        assert self.peer is not None
        try:
            await self.peer.on_offer(frame)
        except Exception as exc:  # surfaced to tests through offer_errors
            self.offer_errors.append(exc)

    async def _publish_offer(self, sdp: str, sources: dict[str, str]) -> str:
        await self.signaling.send({"type": "publish", "sdp": sdp, "sources": sources})
        async with asyncio.timeout(20):
            return await self._answer_waiters.get()

    async def _send_answer(self, sdp: str) -> None:
        await self.signaling.send({"type": "answer", "sdp": sdp})

    async def publish(self, tracks: dict[str, MediaStreamTrack]) -> None:
        assert self.peer is not None
        await self.peer.publish(tracks)

    async def send(self, frame: dict[str, Any]) -> None:
        await self.signaling.send(frame)

    def frames_from(self, participant: str, source: str) -> int:
        assert self.peer is not None
        return self.peer.track(participant, source).frames

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.peer is not None:
            with contextlib.suppress(Exception):
                await self.peer.close()
        await self.signaling.close()
