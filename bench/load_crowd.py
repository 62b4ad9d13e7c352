"""The simulated participants of `tongxin bench load`: one process plays a share of them.

Each participant joins the way a browser does (`RemoteParticipant`: join link -> credential ->
/ws, following `redirect`), enters its consult when it has one, publishes a pre-encoded low
video clip (about 160x120, 100 kbit/s) and Opus, and counts what it receives without decoding.
Join-to-first-frame is measured from the start of its join to the first video frame of someone
else. Errors are collected by kind (`stage:cause`), never raised.

The process is driven over its standard streams, one JSON object a line:

    stdin   {"jobs": [...], "settings": {...}}   then the words `go`, `window` and `stop`
    stdout  {"loaded": n}                        once started; then stdin says `go`
            {"ready": n}                         once every participant joined or failed
            {"results": [...], "cpu_s": float}   after `stop` (or its own deadline)

It stops by itself at `settings.deadline_s` even if `stop` never comes, so it cannot outlive
the benchmark. Run as `python -m bench.load_crowd`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from typing import Any

import msgspec
from aiortc import MediaStreamTrack

from client.clip import ClipTrack, EncodedClip, load_clip
from client.participant import RemoteParticipant
from client.peer import PeerClient
from client.ws import SignalingError

POLL_S = 0.05
DEFAULT_HEARTBEAT_S = 15.0
CLOSE_TIMEOUT_S = 10.0


class CrowdJob(msgspec.Struct, frozen=True, kw_only=True):
    """One simulated participant."""

    label: str
    """Who it plays, e.g. `class-0/teacher`, `consult-1/doctor`."""
    session: str
    """The class or consult it belongs to."""
    base_url: str
    """The node it joins through."""
    fallback_url: str
    """The other node (for recovery when its node goes away)."""
    token: str
    """Its join token."""
    enter: bool = False
    """A consult participant: send `enter {session}` after the welcome."""
    start_delay_s: float = 0.0
    """When to start, after the crowd got its jobs (the ramp)."""


class CrowdSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What every participant of the crowd shares."""

    first_frame_timeout_s: float = 30.0
    """How long a participant waits for its first video frame before it counts an error."""
    deadline_s: float = 300.0
    """The crowd stops by itself this long after it got its jobs."""
    joining_s: float = 60.0
    """After `go`, the crowd reports `ready` within this long, whoever has joined by then."""
    video: dict[str, Any] = msgspec.field(default_factory=dict)
    """`load_clip("vp8", **video)` settings of the published camera."""


class CrowdCommand(msgspec.Struct, frozen=True):
    jobs: list[CrowdJob]
    settings: CrowdSettings


def video_frames(peer: PeerClient | None) -> int:
    """Video frames `peer` received so far."""
    if peer is None:
        return 0
    return sum(t.frames for t in peer.received.values() if t.kind == "video")


def total_video_frames(participant: LoadParticipant) -> int:
    """Video frames received over every peer connection the participant had (moves too)."""
    return participant.retired_video_frames + video_frames(participant.peer)


class LoadParticipant(RemoteParticipant):
    """A `RemoteParticipant` that stays cheap: no frame digests, no receive-side bandwidth
    estimator (aiortc's costliest receive step; the relay adapts from receiver reports). It
    sends the heartbeat a browser sends (`ping` every `heartbeat_s` of the welcome), without
    which a node closes a socket silent for 45 s."""

    async def heartbeat(self, stop: asyncio.Event) -> None:
        """`ping` every `heartbeat_s` until `stop` (a moving client just misses one)."""
        while not stop.is_set():
            period = float(self.signaling.welcome.get("heartbeat_s") or DEFAULT_HEARTBEAT_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period)
                return
            with contextlib.suppress(SignalingError, ConnectionError, RuntimeError):
                await self.signaling.send({"type": "ping", "t": time.time()})

    retired_video_frames = 0
    """Video frames received by peer connections this participant left behind (moves)."""

    def _new_peer(self) -> PeerClient:
        if self.peer is not None:  # called while moving, before the old peer is replaced
            self.retired_video_frames += video_frames(self.peer)
        return PeerClient(self.signaling.participant_id, publish_offer=self._publish_offer,
                          send_answer=self._send_answer, keep_digests=False,
                          estimate_bandwidth=False)


def first_video_from_others(participant: RemoteParticipant) -> float | None:
    """Wall time of the first video frame received from another participant (None: none)."""
    if participant.peer is None or not participant.signaling.grant:
        return None
    me = participant.id
    times = [t.first_frame_at for (pid, _), t in participant.peer.received.items()
             if pid != me and t.kind == "video" and t.first_frame_at is not None]
    return min(times) if times else None




def error_kind(stage: str, exc: BaseException) -> str:
    """`stage:cause` with the server's error code when there is one."""
    if isinstance(exc, SignalingError):
        return f"{stage}:{exc.code}"
    return f"{stage}:{type(exc).__name__}"


class Simulated:
    """One participant's run: join, publish, wait for a first frame, then stay."""

    def __init__(self, job: CrowdJob, settings: CrowdSettings,
                 clips: tuple[EncodedClip, EncodedClip]) -> None:
        self.job = job
        self.settings = settings
        self.clips = clips
        self.participant = LoadParticipant(job.base_url, fallback_urls=(job.fallback_url,))
        self.participant.track_factory = self.tracks
        self.errors: list[str] = []
        self.started_at: float | None = None
        self.first_frame_s: float | None = None
        self.window_frames: tuple[int, int] | None = None
        self.moves_at_first_frame = 0
        self.stage = "start"
        self.fps = float(settings.video.get("fps", 15))
        self.window_expected: int | None = None
        """Video frames the window should have brought: cameras offered x fps x seconds."""
        """The join's current step, naming a timeout."""
        self.stages_s: dict[str, float] = {}
        """Seconds from the join's start to each step: welcome, session, published,
        first_frame (where the time goes when joins are slow)."""
        self._stop_heartbeat = asyncio.Event()
        self._heartbeat: asyncio.Task[None] | None = None

    def tracks(self) -> dict[str, MediaStreamTrack]:
        video, audio = self.clips
        return {"mic": ClipTrack(audio), "camera": ClipTrack(video)}

    async def run(self) -> None:
        """Join and wait for the first frame, within `first_frame_timeout_s` of starting;
        errors are recorded, not raised."""
        await asyncio.sleep(self.job.start_delay_s)
        self.started_at = started_at = time.time()
        try:
            async with asyncio.timeout(self.settings.first_frame_timeout_s):
                await self._join(started_at)
        except TimeoutError:
            self.errors.append(f"{self.stage}:timeout")

    async def _join(self, started_at: float) -> None:
        """Join, enter, publish, then wait for the first video frame (`started_at`: time.time()
        when the run started)."""
        p = self.participant
        self.stage = "exchange"
        try:
            await p.join_token(self.job.token)
            self._heartbeat = asyncio.get_running_loop().create_task(
                p.heartbeat(self._stop_heartbeat))
            self.mark("welcome")
            self.stage = "enter"
            if self.job.enter:
                await p.send({"type": "enter", "session": self.job.session})
            await p.signaling.expect("session", timeout=self.settings.first_frame_timeout_s,
                                     where=lambda f: f.get("id") == self.job.session)
            self.mark("session")
            self.stage = "publish"
            await p.publish(self.tracks())
            self.mark("published")
        except Exception as exc:
            self.errors.append(error_kind(self.stage, exc))
            return
        self.stage = "media"
        first = first_video_from_others(p)
        while first is None:  # polled: frames arrive on aiortc's tasks, no event to await
            await asyncio.sleep(POLL_S)
            first = first_video_from_others(p)
        self.first_frame_s = first - started_at
        self.stages_s["first_frame"] = round(self.first_frame_s, 3)
        self.moves_at_first_frame = p.moves

    def mark(self, step: str) -> None:
        if self.started_at is not None:
            self.stages_s[step] = round(time.time() - self.started_at, 3)

    def mark_window(self) -> None:
        self.window_frames = (total_video_frames(self.participant), 0)

    def end_window(self, window_s: float) -> None:
        if self.window_frames is not None:
            self.window_frames = (self.window_frames[0], total_video_frames(self.participant))
        peer = self.participant.peer
        cameras = 0 if peer is None else sum(1 for _, source in peer.receiving()
                                             if source != "mic")
        self.window_expected = round(cameras * self.fps * window_s)

    def result(self) -> dict[str, Any]:
        p = self.participant
        errors = list(self.errors)
        errors += [error_kind("offer", e) for e in p.offer_errors]
        window_video = None
        if self.window_frames is not None and self.first_frame_s is not None:
            window_video = self.window_frames[1] - self.window_frames[0]
            if window_video <= 0:
                errors.append("media:stalled_video")
        if self.first_frame_s is not None and p.moves > self.moves_at_first_frame:
            errors.append("signaling:moved_after_join")  # no node was stopped: a false failover
        return {
            "label": self.job.label,
            "session": self.job.session,
            "joined_via": self.job.base_url,
            "node": p.signaling.base_url,
            "moves": p.moves,
            "moves_at_first_frame": self.moves_at_first_frame,
            "first_frame_s": self.first_frame_s,
            "window_video_frames": window_video,
            "window_video_expected": self.window_expected,
            "stages_s": self.stages_s,
            "down_offers": p.peer.offers if p.peer is not None else 0,
            "down_generation": p.peer.down_generation if p.peer is not None else None,
            "errors": errors,
        }

    async def close(self) -> None:
        self._stop_heartbeat.set()
        if self._heartbeat is not None:
            await self._heartbeat
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.participant.close(), CLOSE_TIMEOUT_S)


async def read_lines(queue: asyncio.Queue[str]) -> None:
    """Standard input, line by line, into `queue` (EOF as an empty string)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        queue.put_nowait(line.decode().strip())
        if not line:
            return


def emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def next_word(lines: asyncio.Queue[str], deadline: float) -> str:
    """The next command word, or `stop` at EOF or at the deadline."""
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            word = await lines.get()
    except TimeoutError:
        return "stop"
    return word or "stop"


async def crowd_main() -> None:
    lines: asyncio.Queue[str] = asyncio.Queue()
    reader = asyncio.get_running_loop().create_task(read_lines(lines))
    try:
        command = msgspec.json.decode(await lines.get(), type=CrowdCommand)
        settings = command.settings
        deadline = time.monotonic() + settings.deadline_s
        clips = (load_clip("vp8", **settings.video), load_clip("opus"))
        crowd = [Simulated(job, settings, clips) for job in command.jobs]
        emit({"loaded": len(crowd)})  # imports and clips can take long on a busy machine
        if await next_word(lines, deadline) != "go":
            emit({"ready": 0})
            emit({"results": [], "cpu_s": 0.0})
            return
        joining = asyncio.gather(*(s.run() for s in crowd))
        try:  # each join is bounded; this bounds them all even on a starved event loop
            async with asyncio.timeout(settings.joining_s):
                await joining
        except TimeoutError:
            pass
        emit({"ready": sum(1 for s in crowd if s.first_frame_s is not None)})
        word = ""
        window_start: float | None = None
        while word != "stop":
            word = await next_word(lines, deadline)
            if word == "window":
                window_start = time.monotonic()
                for s in crowd:
                    s.mark_window()
        window_s = time.monotonic() - window_start if window_start is not None else 0.0
        for s in crowd:
            s.end_window(window_s)
        times = os.times()  # before leaving: the load generator's cost while in session
        emit({"results": [s.result() for s in crowd], "cpu_s": times.user + times.system})
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S + 5):
                await asyncio.gather(*(s.close() for s in crowd))
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader


def main() -> int:
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(crowd_main())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
