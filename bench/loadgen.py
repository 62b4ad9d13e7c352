"""A load-generator process for the relay benchmark: many subscribing `PeerClient`s.

Its CPU is not the relay's. The benchmark drives it over a `Channel`: `add` creates
subscribers, `offer` answers the relay's offer for one of them (returning the answer SDP),
`counts` and `samples` report what arrived, `stalls` when its event loop was starved,
`close` ends everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

from client.peer import PeerClient
from media.peers.config import PeerConfig
from media.workers.channel import open_socket, serve_calls

logger = logging.getLogger(__name__)

STALL_PROBE_S = 0.05
"""How often the event loop's lag is probed."""
STALL_MS = 100.0
"""A probe this late is a stall: the process was starved of CPU (or blocked). aiortc's
receivers then read the stall as network delay: their delay-based REMB drops and their
receiver reports inflate the RTT, and the relay may step them down."""
STALLS_KEPT = 500
REMB_HOLD_S = 2.0
"""After a stall, the subscribers send no REMB for this long, then start estimating afresh
(`hold_remb_while`): what their estimators saw was the stall, not the link."""


class StallMonitor:
    """Records (unix time, lag ms) of every stall of this process's event loop."""

    def __init__(self) -> None:
        self.stalls: deque[tuple[float, float]] = deque(maxlen=STALLS_KEPT)
        self._probed_at = time.monotonic()
        self._stalled_at = -REMB_HOLD_S

    def stalled(self) -> bool:
        """Whether the loop is late now (a probe overdue: it is working off a stall's backlog)
        or was within the last `REMB_HOLD_S`."""
        now = time.monotonic()
        if now - self._probed_at > STALL_PROBE_S + STALL_MS / 1000:
            self._stalled_at = now
        return now - self._stalled_at < REMB_HOLD_S

    async def run(self) -> None:
        while True:
            before = self._probed_at = time.monotonic()
            await asyncio.sleep(STALL_PROBE_S)
            now = time.monotonic()
            lag_ms = (now - before - STALL_PROBE_S) * 1000
            self._probed_at = now
            if lag_ms >= STALL_MS:
                self._stalled_at = now
                self.stalls.append((time.time(), round(lag_ms, 1)))


class LoadGenerator:
    """Subscribers that count frames without decoding them."""

    def __init__(self, config: PeerConfig, sample_every: int, estimate_bandwidth: bool) -> None:
        self.monitor = StallMonitor()
        self._config = config
        self._sample_every = sample_every
        self._estimate_bandwidth = estimate_bandwidth
        self.clients: dict[str, PeerClient] = {}
        self._answers: dict[str, asyncio.Future[str]] = {}

    def add(self, participant_ids: list[str]) -> int:
        for pid in participant_ids:
            self.clients[pid] = PeerClient(
                pid,
                publish_offer=_no_publishing,
                send_answer=partial(self._answered, pid),
                config=self._config,
                keep_digests=False,
                sample_every=self._sample_every,
                estimate_bandwidth=self._estimate_bandwidth,
                stalled=self.monitor.stalled,
            )
        return len(self.clients)

    async def _answered(self, pid: str, sdp: str) -> None:
        future = self._answers.get(pid)
        if future is not None and not future.done():
            future.set_result(sdp)

    async def offer(self, pid: str, event: dict[str, Any]) -> str:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._answers[pid] = future
        try:
            await self.clients[pid].on_offer(event)
            return await future
        finally:
            self._answers.pop(pid, None)

    def counts(self) -> dict[str, Any]:
        """Frames and bytes received per kind, summed and per subscriber, and per subscriber
        the height of the last video keyframe it received (a simulcast layer's)."""
        video: list[int] = []
        audio: list[int] = []
        heights: list[int | None] = []
        nbytes = 0
        for client in self.clients.values():
            v = a = 0
            height = None
            for track in client.received.values():
                nbytes += track.bytes
                if track.kind == "video":
                    v += track.frames
                    if track.keyframe_sizes:
                        height = track.keyframe_sizes[-1][1]
                else:
                    a += track.frames
            video.append(v)
            audio.append(a)
            heights.append(height)
        times = os.times()
        return {
            "video": video,
            "audio": audio,
            "heights": heights,
            "bytes": nbytes,
            "cpu_s": times.user + times.system,
        }

    def stalls(self, since: float, until: float) -> list[tuple[float, float]]:
        """(unix time, lag ms) of the event loop's stalls in [since, until]."""
        return [(at, lag) for at, lag in self.monitor.stalls if since <= at <= until]

    def samples(self, since: float, until: float) -> list[tuple[bytes, float]]:
        """(digest, arrival) of sampled video frames that arrived in [since, until]."""
        return [
            (digest, at)
            for client in self.clients.values()
            for track in client.received.values()
            for digest, at in track.arrivals
            if since <= at <= until
        ]

    async def remove_all(self) -> None:
        clients, self.clients = self.clients, {}
        await asyncio.gather(*(c.close() for c in clients.values()), return_exceptions=True)


async def _no_publishing(sdp: str, sources: dict[str, str]) -> str:
    raise RuntimeError("load-generator subscribers do not publish")


def loadgen_main(
    sock: socket.socket, udp_host: str | None, sample_every: int, estimate_bandwidth: bool
) -> None:
    """Process entry point."""
    logging.basicConfig(level=logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(sock, PeerConfig((), udp_host), sample_every, estimate_bandwidth))


async def _serve(
    sock: socket.socket, config: PeerConfig, sample_every: int, estimate_bandwidth: bool
) -> None:
    reader, writer = await open_socket(sock)
    generator = LoadGenerator(config, sample_every, estimate_bandwidth)
    monitor = asyncio.ensure_future(generator.monitor.run())
    stop = asyncio.Event()

    async def close() -> None:
        await generator.remove_all()
        asyncio.get_running_loop().call_soon(stop.set)

    operations: dict[str, Callable[..., Any]] = {
        "add": generator.add,
        "offer": generator.offer,
        "counts": generator.counts,
        "samples": generator.samples,
        "stalls": generator.stalls,
        "remove_all": generator.remove_all,
        "close": close,
    }
    await serve_calls(reader, writer, lambda op, args: operations[op](*args), stop)
    monitor.cancel()
    await generator.remove_all()
    writer.close()
