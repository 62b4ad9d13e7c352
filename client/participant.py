"""A participant driven from Python: join link -> credential -> /ws -> aiortc media.

`RemoteParticipant` joins the way a browser does (PROTOCOL.md) and publishes or receives with
client/peer.py; `tongxin client`, the flow tests and the benchmarks use it. When its
signaling moves to another node (a `redirect`, or its node went away) it builds new peer
connections there, enters its consult again and publishes the same sources again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from aiortc import MediaStreamTrack

from client.peer import PeerClient
from client.ws import SignalingClient, split_join_link


class RemoteParticipant:
    """One participant of a Tongxin node, with signaling and media."""

    def __init__(self, base_url: str, fallback_urls: tuple[str, ...] = ()) -> None:
        self.signaling = SignalingClient(base_url, recover=True, fallback_urls=fallback_urls)
        self.peer: PeerClient | None = None
        self.track_factory: Callable[[], dict[str, MediaStreamTrack]] | None = None
        """Fresh tracks to publish again after moving to another node (else the same ones)."""
        self.moves = 0
        """How many times this participant moved to another node (redirect or node loss)."""
        self.reconnects = 0
        """How many `reconnect` frames (media lost on the same node) it rebuilt media for."""
        self._published: dict[str, MediaStreamTrack] = {}
        self._entered: str | None = None
        self._republish = False
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
        self.peer = self._new_peer()
        self.signaling.listeners.append(self._on_frame)
        return await self.signaling.connect()

    def _new_peer(self) -> PeerClient:
        return PeerClient(self.signaling.participant_id, publish_offer=self._publish_offer,
                          send_answer=self._send_answer)

    @property
    def id(self) -> str:
        return self.signaling.participant_id

    def _on_frame(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "offer" and self.peer is not None:
            self._spawn(self._answer_offer(frame))
        elif frame["type"] == "answer":
            self._answer_waiters.put_nowait(frame["sdp"])
        elif frame["type"] == "_moved":
            # New node, new relay: fresh peer connections before its first offer arrives.
            self._renew_peer()
            self.moves += 1
            self._republish = bool(self._published)
            if self._entered is not None:
                self._spawn(self.signaling.send({"type": "enter", "session": self._entered}))
        elif frame["type"] == "reconnect":
            # Same node, but the relay lost this session's media (e.g. its worker died and
            # the room was placed again): new peer connections, publish again.
            self._renew_peer()
            self.reconnects += 1
            if self._published:
                self._spawn(self._publish_again())
        elif frame["type"] == "session" and self._republish:
            self._republish = False  # in the session on the node that holds it: publish there
            self._spawn(self._publish_again())
        elif frame["type"] == "ended" and frame.get("session") == self._entered:
            self._entered = None

    def _renew_peer(self) -> None:
        old, self.peer = self.peer, self._new_peer()
        self._answer_waiters = asyncio.Queue()
        if old is not None:
            self._spawn(old.close())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_again(self) -> None:
        try:
            tracks = self.track_factory() if self.track_factory else self._published
            self._published = dict(tracks)
            assert self.peer is not None
            await self.peer.publish(tracks)
        except Exception as exc:  # surfaced to tests through offer_errors
            self.offer_errors.append(exc)

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
        self._published.update(tracks)
        await self.peer.publish(tracks)

    async def send(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "enter":
            self._entered = str(frame.get("session"))
        elif frame.get("type") == "leave":
            self._entered = None
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
