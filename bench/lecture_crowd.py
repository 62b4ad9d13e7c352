"""A receiver process of `tongxin bench lecture`: many receive-only participants of one class.

The bench drives it over a `Channel` (bench/relay.py's `Process`): `join(jobs, timeout_s)`
joins receivers through their join links (following redirects to the node that serves them),
each from its own loopback source address (`local_addr`: a node takes 64 WebSockets from one
address),
and returns once each has its first video packet or failed; `counts()` reports what each has
received so far and this process's CPU; `close()` ends everything. A receiver is either the
lean one (bench/lean_receiver.py: packets counted after SRTP, its own RTCP) or the usual
aiortc one (bench/load_crowd.py's `LoadParticipant`: aiortc's receive path and jitter buffer,
frames counted without decoding).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp

from bench.lean_receiver import LeanParticipant
from bench.load_crowd import LoadParticipant, error_kind
from client.ws import SignalingClient, split_join_link
from media.peers.config import PeerConfig
from media.workers.channel import open_socket, serve_calls

RECEIVER_KINDS = ("lean", "aiortc")
JOIN_CONCURRENCY = 8
"""Joins in flight at once per process (each is an HTTP exchange, a WebSocket and ICE/DTLS)."""
POLL_S = 0.05
CLOSE_TIMEOUT_S = 10.0
HISTORY_KEPT = 200


class Receiver(Protocol):
    async def close(self) -> None: ...


class Joined:
    """One receiver: how its join went and what it received."""

    def __init__(self, job: dict[str, Any], kind: str, udp_host: str | None) -> None:
        self.id = str(job["id"])
        self.link = str(job["link"])
        self.kind = kind
        base, self.token = split_join_link(self.link)
        config = PeerConfig((), udp_host)
        # its own loopback source address: a node takes at most MAX_CONNECTIONS_PER_ADDRESS
        # WebSockets from one address
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(
            local_addr=(str(job.get("local_addr") or "127.0.0.1"), 0)))
        signaling = SignalingClient(base, self.http, recover=kind != "lean")
        self.participant: LeanParticipant | LoadParticipant
        if kind == "lean":
            self.participant = LeanParticipant(base, config, signaling)
        else:
            self.participant = LoadParticipant(base)
            self.participant.signaling = signaling
        self.delay_s = float(job.get("delay_s") or 0.0)
        """When to start joining, after the `join` call (`--join-gap`)."""
        self.first_frame_s: float | None = None
        self.errors: list[str] = []
        self.rung: str | None = None
        self.session_frames = 0
        """`session` frames received (one per roster change the node pushes)."""
        self.roster_entries = 0
        """Participants listed in them, summed (what the roster pushes weigh)."""
        self.session_bytes_per_entry: float | None = None
        """The JSON size per listed participant of the first `session` frame."""
        signaling.listeners.append(self._on_frame)

    def _on_frame(self, frame: dict[str, Any]) -> None:
        """Count what signaling brings, and keep the client's history and queue short (a
        viewer never reads them after its join, and roster pushes grow with the class)."""
        kind = frame.get("type")
        if kind == "session":
            entries = len(frame.get("participants") or ())
            self.session_frames += 1
            self.roster_entries += entries
            if self.session_bytes_per_entry is None and entries:
                self.session_bytes_per_entry = len(json.dumps(frame)) / entries
        elif kind == "link":
            self.rung = frame.get("rung")
        signaling = self.participant.signaling
        if len(signaling.history) > HISTORY_KEPT:
            del signaling.history[:-HISTORY_KEPT // 2]
        while signaling.frames.qsize() > HISTORY_KEPT:
            signaling.frames.get_nowait()

    def first_video_at(self) -> float | None:
        p = self.participant
        if isinstance(p, LeanParticipant):
            first: float | None = p.totals()["first_video_at"]
            return first
        if p.peer is None:
            return None
        times = [t.first_frame_at for t in p.peer.received.values()
                 if t.kind == "video" and t.first_frame_at is not None]
        return min(times) if times else None

    async def join(self, timeout_s: float) -> None:
        started = time.time()
        stage = "join"
        try:
            async with asyncio.timeout(timeout_s):
                await self.participant.join_token(self.token)
                stage = "media"
                first = self.first_video_at()
                while first is None:  # polled: packets arrive in socket callbacks
                    await asyncio.sleep(POLL_S)
                    first = self.first_video_at()
                self.first_frame_s = first - started
        except TimeoutError:
            self.errors.append(f"{stage}:timeout")
        except Exception as exc:
            self.errors.append(error_kind(stage, exc))

    def counts(self) -> dict[str, Any]:
        p = self.participant
        out: dict[str, Any] = {"id": self.id, "node": p.signaling.base_url, "moves": p.moves,
                               "rung": self.rung, "session_frames": self.session_frames,
                               "roster_entries": self.roster_entries,
                               "session_bytes_per_entry": self.session_bytes_per_entry,
                               "first_frame_s": self.first_frame_s,
                               "errors": self.errors + [error_kind("offer", e)
                                                        for e in p.offer_errors]}
        if isinstance(p, LeanParticipant):
            out.update(p.totals())
            return out
        video = p.retired_video_frames
        audio = 0
        nbytes = 0
        if p.peer is not None:
            for track in p.peer.received.values():
                nbytes += track.bytes
                if track.kind == "video":
                    video += track.frames
                else:
                    audio += track.frames
        out.update({"video_frames": video, "audio_frames": audio, "bytes": nbytes,
                    "video_packets": None, "audio_packets": None, "lost": None,
                    "expected": None})
        return out

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.participant.close(), CLOSE_TIMEOUT_S)
        await self.http.close()


class Crowd:
    def __init__(self, kind: str, udp_host: str | None) -> None:
        if kind not in RECEIVER_KINDS:
            raise ValueError(f"receiver kind {kind!r}: expected one of {RECEIVER_KINDS}")
        self.kind = kind
        self.udp_host = udp_host
        self.receivers: list[Joined] = []

    async def join(self, jobs: list[dict[str, Any]], timeout_s: float) -> list[dict[str, Any]]:
        """Join these receivers, `JOIN_CONCURRENCY` at a time, all within `timeout_s`: one
        still waiting for its turn at the end counts `join:no_time`."""
        fresh = [Joined(job, self.kind, self.udp_host) for job in jobs]
        self.receivers += fresh
        gate = asyncio.Semaphore(JOIN_CONCURRENCY)
        deadline = time.monotonic() + timeout_s

        async def one(r: Joined) -> None:
            await asyncio.sleep(r.delay_s)
            async with gate:
                left = deadline - time.monotonic()
                if left <= 0:
                    r.errors.append("join:no_time")
                    return
                await r.join(left)

        await asyncio.gather(*(one(r) for r in fresh))
        return [r.counts() for r in fresh]

    def counts(self) -> dict[str, Any]:
        times = os.times()
        return {"receivers": [r.counts() for r in self.receivers],
                "cpu_s": times.user + times.system, "at": time.time()}

    async def close(self) -> None:
        receivers, self.receivers = self.receivers, []
        await asyncio.gather(*(r.close() for r in receivers), return_exceptions=True)


def crowd_main(sock: socket.socket, kind: str, udp_host: str | None) -> None:
    """Process entry point (spawned by the bench)."""
    logging.basicConfig(level=logging.ERROR)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(sock, kind, udp_host))


async def _serve(sock: socket.socket, kind: str, udp_host: str | None) -> None:
    reader, writer = await open_socket(sock)
    crowd = Crowd(kind, udp_host)
    stop = asyncio.Event()

    async def close() -> None:
        await crowd.close()
        asyncio.get_running_loop().call_soon(stop.set)

    operations: dict[str, Callable[..., Any]] = {
        "join": crowd.join,
        "counts": crowd.counts,
        "close": close,
    }
    await serve_calls(reader, writer, lambda op, args: operations[op](*args), stop)
    await crowd.close()
    writer.close()
