"""`tongxin bench soak`: a local node under constant churn for N minutes, its resources sampled.

It starts `tongxin serve --no-demo` as a child process (embedded store, or `--redis` on a
redis-server it starts itself), fills a small directory over REST, then runs churn loops
until the time is up: classes scheduled, joined by a teacher and two classrooms with aiortc
media (Opus + a 160x120 VP8 clip), a hand raised and a spotlight, a classroom leaving and
coming back, the class ended; consults requested, claimed, admitted, entered with media and
ended; WebSockets opened and dropped without a close frame. Every `--sample-s` it reads the
node's RSS and open files (/proc/PID), its asyncio task count (`tongxin_asyncio_tasks`) and
error counters (/metrics, the node's log). At the end of the warm-up (the first 20% of the
run) and at the end, churn pauses until the node is idle and a *quiet* sample is taken, so
files and tasks are compared between two identical idle states.

`soak_verdict` (pure) judges the series: after the warm-up, RSS within 5% of the warm-up
reference, no more open files or tasks at the end than at the warm-up, and no error.

    .venv/bin/tongxin bench soak --minutes 30 --json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp

from bench.processes import NodeProcess, RedisServerProcess
from broker.clock import system_clock
from broker.memory_store import MemoryStore
from broker.models import Role
from broker.tokens import Keyring, TokenService

WARMUP_FRACTION = 0.2
RSS_TOLERANCE = 0.05
ITERATION_TIMEOUT_S = 120.0
"""Longest one churn iteration may take before it counts as an error (bounded loops)."""
FRAMES_SEEN = 5
"""Audio frames a receiver must count before media counts as flowing (audio, not video: on a
starved machine the relay's adaptation may pause video, as it does on a weak link)."""
MEDIA_WAIT_S = 45.0
"""How long media may take to flow in a new session (aiortc on a busy 2-core machine)."""
SCRAPE_ATTEMPTS = 3
CLOSE_TIMEOUT_S = 15.0
QUIET_WAIT_S = 120.0
"""How long a quiet sample waits for the node to have no WebSocket open."""
HEARTBEAT_S = 10.0
SEAT_GRACE_S = 30.0
"""The node keeps a dropped participant's seat this long (signaling.hub.RESUME_GRACE_S)."""


# --- the verdict (pure) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """The node's resources at one moment of the run."""

    t_s: float
    """Seconds since churn started."""
    rss_mb: float
    fds: int
    tasks: int
    """The node's asyncio tasks (`tongxin_asyncio_tasks`)."""
    websockets: int
    errors: int
    """Errors so far: churn failures, error frames, HTTP 5xx and error log lines."""
    quiet: bool = False
    """Taken with churn paused and the node idle (no connection, seats expired)."""
    workers_rss_mb: float = 0.0
    """RSS of the media worker processes, when the node has any."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the series says; `ok` when every check passed."""

    ok: bool
    rss_reference_mb: float
    rss_max_mb: float
    rss_end_mb: float
    rss_max_change_pct: float
    fds_warm: int
    fds_end: int
    tasks_warm: int
    tasks_end: int
    errors: int
    reasons: list[str] = field(default_factory=list)


def warm_reference(samples: Sequence[Sample], warmup_fraction: float = WARMUP_FRACTION
                   ) -> int:
    """Index of the sample the rest is compared with: the quiet one ending the warm-up if
    there is one, else the first sample at or after `warmup_fraction` of the run."""
    if not samples:
        raise ValueError("no samples")
    end = samples[-1].t_s
    after = [i for i, s in enumerate(samples) if s.t_s >= warmup_fraction * end]
    quiet = [i for i in after if samples[i].quiet and i != len(samples) - 1]
    return quiet[0] if quiet else after[0]


def soak_verdict(samples: Sequence[Sample], *, warmup_fraction: float = WARMUP_FRACTION,
                 rss_tolerance: float = RSS_TOLERANCE) -> Verdict:
    """After the warm-up: every RSS within `rss_tolerance` of the reference, files and tasks
    at the end (the last sample, quiet when churn paused) no higher than at the reference,
    and no error at all."""
    ref_index = warm_reference(samples, warmup_fraction)
    ref, last = samples[ref_index], samples[-1]
    post = samples[ref_index:]
    change = max(abs(s.rss_mb - ref.rss_mb) for s in post) / ref.rss_mb if ref.rss_mb else 0.0
    reasons = []
    if change > rss_tolerance:
        reasons.append(f"RSS moved {change:.1%} from {ref.rss_mb:.1f} MB after the warm-up "
                       f"(limit {rss_tolerance:.0%})")
    if last.fds > ref.fds:
        reasons.append(f"open files grew from {ref.fds} to {last.fds}")
    if last.tasks > ref.tasks:
        reasons.append(f"asyncio tasks grew from {ref.tasks} to {last.tasks}")
    if last.errors:
        reasons.append(f"{last.errors} errors")
    if len(post) < 2:
        reasons.append("too few samples after the warm-up to judge")
    return Verdict(
        ok=not reasons, rss_reference_mb=ref.rss_mb, rss_max_mb=max(s.rss_mb for s in post),
        rss_end_mb=last.rss_mb, rss_max_change_pct=round(100 * change, 2), fds_warm=ref.fds,
        fds_end=last.fds, tasks_warm=ref.tasks, tasks_end=last.tasks, errors=last.errors,
        reasons=reasons,
    )


# --- reading a process -----------------------------------------------------------------------


def process_rss_mb(pid: int) -> float:
    """Resident memory of `pid` from /proc/PID/status (VmRSS), in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def open_file_count(pid: int) -> int:
    """Open file descriptors of `pid` (sockets included)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def metric_values(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample named `name` in Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    found = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found.append((dict(sample.labels), float(sample.value)))
    return found


def server_error_counts(metrics_text: str) -> dict[str, int]:
    """Error frames by code and HTTP 5xx answers, from a node's /metrics."""
    counts: dict[str, int] = {}
    for labels, value in metric_values(metrics_text, "tongxin_websocket_errors_total"):
        if value:
            counts[f"frame:{labels.get('code', '?')}"] = int(value)
    for labels, value in metric_values(metrics_text, "tongxin_http_requests_total"):
        if labels.get("status", "").startswith("5") and value:
            key = f"http:{labels['status']}"
            counts[key] = counts.get(key, 0) + int(value)
    return counts


def log_errors(log_path: Path, keep: int = 5) -> tuple[int, list[str]]:
    """Lines at level error or worse in a node's JSON log (tracebacks included), and the
    first `keep` distinct messages (the node's log is redacted: no token in it)."""
    count, messages = 0, list[str]()
    with contextlib.suppress(OSError), open(log_path, errors="replace") as f:
        for line in f:
            if '"level": "error"' in line or '"level": "critical"' in line:
                count += 1
                with contextlib.suppress(ValueError, AttributeError):
                    message = str(json.loads(line).get("msg", ""))[:200]
                    if message not in messages and len(messages) < keep:
                        messages.append(message)
    return count, messages


# --- the churn -------------------------------------------------------------------------------


def masked_text_frame(text: str, mask: bytes) -> bytes:
    """One client-to-server WebSocket text frame (RFC 6455: FIN, opcode 1, masked)."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        head = bytes([0x81, 0x80 | n])
    elif n < 1 << 16:
        head = bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x81, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@dataclass
class ChurnCounts:
    """What the churn did, and what went wrong (by kind)."""

    classes: int = 0
    consults: int = 0
    joins: int = 0
    drops: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    """Error frames the participants were sent, by code and the frame they answered."""


class ChurnGate:
    """Lets churn loops pause between iterations so a quiet sample can be taken; holds the
    deadline (moved on by the time spent paused)."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()
        self.busy = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.deadline = 0.0

    @contextlib.asynccontextmanager
    async def iteration(self) -> AsyncIterator[None]:
        await self.open.wait()
        self.busy += 1
        self.idle.clear()
        try:
            yield
        finally:
            self.busy -= 1
            if not self.busy:
                self.idle.set()

    async def pause(self, within: float) -> None:
        """Let no new iteration start, and wait (bounded) for the running ones to end."""
        self.open.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle.wait(), within)

    def resume(self) -> None:
        self.open.set()


@dataclass
class Directory:
    """What the soak put in the node's directory, and the links to use it."""

    operator: str
    """An operator credential (minted with the node's secret)."""
    teachers: list[str]
    rooms: list[list[str]]
    """Classroom site ids of each class loop."""
    doctor_tokens: list[str]
    clinic_tokens: list[str]
    specialties: list[str]
    dropper_tokens: list[str]


def operator_token(secret: str) -> str:
    tokens = TokenService(MemoryStore(), Keyring.from_spec(f"k1:{secret}"), system_clock)
    return tokens.issue(sub="op-soak", role=Role.OPERATOR, ttl_s=24 * 3600, name="soak")


async def api(http: aiohttp.ClientSession, base: str, method: str, path: str,
              credential: str | None, body: Any = None) -> Any:
    """One REST call; raises RuntimeError naming the route on an error status."""
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    async with http.request(method, base + path, json=body, headers=headers,
                            timeout=aiohttp.ClientTimeout(total=20)) as resp:
        payload = await resp.json(content_type=None)
        if resp.status >= 400:
            raise RuntimeError(f"{method} {path}: {resp.status} {payload}")
        return payload


async def fill_directory(http: aiohttp.ClientSession, base: str, secret: str, classes: int,
                         consults: int, droppers: int) -> Directory:
    op = operator_token(secret)
    region = ["甘肃省", "定西市", "渭源县"]
    await api(http, base, "POST", "/api/v1/sites", op, {
        "id": "soak-school", "name": "压测学校", "kind": "school", "region": region})
    await api(http, base, "POST", "/api/v1/sites", op, {
        "id": "soak-hospital", "name": "压测医院", "kind": "county_hospital", "region": region})
    teachers, rooms = [], []
    for k in range(classes):
        teacher = f"soak-teacher-{k}"
        await api(http, base, "POST", "/api/v1/experts", op, {
            "id": teacher, "name": f"压测老师{k}", "kind": "teacher", "specialties": ["数学"],
            "site_id": "soak-school"})
        mine = []
        for r in range(2):
            room = f"soak-room-{k}-{r}"
            await api(http, base, "POST", "/api/v1/sites", op, {
                "id": room, "name": f"压测教学点{k}-{r}", "kind": "classroom", "region": region,
                "parent_site_id": "soak-school"})
            mine.append(room)
        teachers.append(teacher)
        rooms.append(mine)
    doctor_tokens: list[str] = []
    clinic_tokens: list[str] = []
    specialties: list[str] = []
    for k in range(consults):
        specialty, doctor, clinic = f"压测科{k}", f"soak-doctor-{k}", f"soak-clinic-{k}"
        await api(http, base, "POST", "/api/v1/experts", op, {
            "id": doctor, "name": f"压测医生{k}", "kind": "doctor", "specialties": [specialty],
            "capacity": 2, "on_duty": True, "site_id": "soak-hospital"})
        await api(http, base, "POST", "/api/v1/sites", op, {
            "id": clinic, "name": f"压测卫生室{k}", "kind": "village_clinic", "region": region,
            "parent_site_id": "soak-hospital"})
        for sub, role, tokens in ((doctor, "doctor", doctor_tokens),
                                  (clinic, "clinic", clinic_tokens)):
            issued = await api(http, base, "POST", "/api/v1/tokens", op,
                               {"sub": sub, "role": role, "name": sub})
            tokens.append(issued["token"])
        specialties.append(specialty)
    dropper_tokens = []
    for k in range(droppers):
        site = f"soak-flap-{k}"
        await api(http, base, "POST", "/api/v1/sites", op, {
            "id": site, "name": f"压测断线卫生室{k}", "kind": "village_clinic", "region": region,
            "parent_site_id": "soak-hospital"})
        issued = await api(http, base, "POST", "/api/v1/tokens", op,
                           {"sub": site, "role": "clinic", "name": site})
        dropper_tokens.append(issued["token"])
    return Directory(op, teachers, rooms, doctor_tokens, clinic_tokens, specialties,
                     dropper_tokens)


@dataclass
class Stage:
    """Where a churn iteration is (named in its error when it gets stuck; "" once done)."""

    at: str = "start"


def small_tracks() -> dict[str, Any]:
    from client.clip import ClipTrack, load_clip

    return {"mic": ClipTrack(load_clip("opus")),
            "camera": ClipTrack(load_clip("vp8", width=160, height=120, fps=15,
                                          bitrate=100_000))}


async def first_frame(signaling: Any, where: Callable[[dict[str, Any]], bool],
                      within: float) -> dict[str, Any]:
    """The next frame `where` accepts (error frames raise, like `SignalingClient.expect`)."""
    from client.ws import SignalingError

    async with asyncio.timeout(within):
        while True:
            frame: dict[str, Any] = await signaling.frames.get()
            if frame["type"] == "error":
                raise SignalingError(frame["code"], frame["message"])
            if where(frame):
                return frame


async def media_flows(condition: Callable[[], bool], within: float, what: str,
                      *people: Any) -> None:
    """Wait for `condition`; on timeout, say what each of `people` received (offers taken,
    frames per track) so a failure can be told apart from a slow machine."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {within:g} s: "
                               + "; ".join(media_summary(p) for p in people))
        await asyncio.sleep(0.1)


async def close_all(people: list[Any], counts: ChurnCounts) -> None:
    """Close each participant (bounded), after counting the error frames it was sent."""
    for p in people:
        for frame in p.signaling.history:
            if frame.get("type") == "error":
                counts.refused[f"{frame.get('code')}:{frame.get('ref')}"] += 1
        try:
            await asyncio.wait_for(p.close(), CLOSE_TIMEOUT_S)
        except Exception:  # a close that hangs or fails must not leave its HTTP session open
            with contextlib.suppress(Exception):
                await p.signaling.http.close()


@contextlib.asynccontextmanager
async def heartbeats(people: list[Any]) -> AsyncIterator[None]:
    """Ping every participant's node every `HEARTBEAT_S`, as a browser does: a node closes a
    connection silent for 45 s (a session on a starved machine can take that long)."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            for p in list(people):
                if p.signaling.ws is not None:
                    with contextlib.suppress(Exception):
                        await p.signaling.send({"type": "ping", "t": time.time()})

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def media_summary(p: Any) -> str:
    peer = p.peer
    if peer is None:
        return f"{p.id}: no peer"
    tracks = ",".join(f"{k[0]}/{k[1]}={t.frames}" for k, t in peer.received.items())
    return f"{p.id}: offers={peer.offers} errors={len(p.offer_errors)} [{tracks}]"


def _frames(p: Any, participant: str, source: str) -> int:
    try:
        return int(p.frames_from(participant, source))
    except (KeyError, AssertionError):
        return 0


async def one_class(base: str, http: aiohttp.ClientSession, directory: Directory, k: int,
                    hold_s: float, counts: ChurnCounts) -> None:
    """Schedule a class, join teacher + two classrooms with media, hand, spotlight, one
    classroom leaves and comes back, end."""
    from client.participant import RemoteParticipant
    from client.ws import split_join_link

    scheduled = await api(http, base, "POST", "/api/v1/classes", directory.operator, {
        "title": f"压测课 {counts.classes}", "subject": "数学",
        "teacher_id": directory.teachers[k], "classroom_site_ids": directory.rooms[k]})
    rooms = directory.rooms[k]
    class_id = scheduled["klass"]["id"]
    people: list[Any] = []
    stage = Stage()
    try:
        async with heartbeats(people):
            stage.at = "teacher joins"
            teacher = RemoteParticipant(base)
            people.append(teacher)
            await teacher.join_token(split_join_link(scheduled["host_link"])[1])
            await teacher.signaling.expect("session")
            classrooms = []
            for room in rooms:
                classroom = RemoteParticipant(base)
                people.append(classroom)
                await classroom.join_token(split_join_link(scheduled["classroom_links"][room])[1])
                await classroom.signaling.expect("session")
                classrooms.append(classroom)
            counts.joins += 3
            stage.at = "publish"
            for p in (teacher, *classrooms):
                await p.publish(small_tracks())
            stage.at = "class media"
            await media_flows(lambda: all(_frames(c, teacher.id, "mic") > FRAMES_SEEN
                                          for c in classrooms)
                              and _frames(teacher, rooms[0], "mic") > FRAMES_SEEN,
                              MEDIA_WAIT_S, "class media", teacher, *classrooms)
            stage.at = "hand and spotlight"
            await classrooms[1].send({"type": "hand", "raised": True})
            await teacher.signaling.expect("session", where=lambda f: rooms[1] in f["hands"])
            await teacher.send({"type": "spotlight", "participant": rooms[1]})
            await classrooms[0].signaling.expect("session",
                                                 where=lambda f: f["spotlight"] == rooms[1])
            await asyncio.sleep(hold_s)
            # classroom 0 leaves and comes back through its kiosk link (its seat is kept)
            stage.at = "classroom comes back"
            await classrooms[0].close()
            again = RemoteParticipant(base)
            people.append(again)
            await again.join_token(split_join_link(scheduled["classroom_links"][rooms[0]])[1])
            await again.signaling.expect("session")
            await again.publish(small_tracks())
            counts.joins += 1
            await media_flows(lambda: _frames(again, teacher.id, "mic") > FRAMES_SEEN,
                              MEDIA_WAIT_S, "media after a classroom came back", again, teacher)
            stage.at = "end"
            await teacher.send({"type": "end"})
            await again.signaling.expect("ended")
            await classrooms[1].signaling.expect("ended")
            counts.classes += 1
            stage.at = ""
    except TimeoutError as exc:
        raise TimeoutError(f"class stuck at {stage.at}: {exc}") from exc
    finally:
        await close_all(people, counts)
        if stage.at:  # failed half-way: end it so the next class starts clean
            with contextlib.suppress(Exception):
                await api(http, base, "POST", f"/api/v1/classes/{class_id}/end",
                          directory.operator)


async def one_consult(base: str, http: aiohttp.ClientSession, directory: Directory, k: int,
                      hold_s: float, counts: ChurnCounts) -> None:
    """A clinic requests, the doctor claims and admits, both enter with media, end."""
    from client.participant import RemoteParticipant

    doctor, clinic = RemoteParticipant(base), RemoteParticipant(base)
    people = [doctor, clinic]
    stage = Stage("join")
    consult = None
    try:
        async with heartbeats(people):
            await doctor.join_token(directory.doctor_tokens[k])
            await clinic.join_token(directory.clinic_tokens[k])
            counts.joins += 2
            ticket = await clinic.signaling.request("POST", "/api/v1/consults", {
                "specialty": directory.specialties[k], "urgency": "urgent", "reason": "压测"})
            consult = ticket["ticket"]["id"]
            stage.at = "doctor sees the request"
            await doctor.signaling.expect("queue", where=lambda f: any(
                i["consult"] == consult for i in f["items"]))
            stage.at = "claim"
            await doctor.send({"type": "claim", "consult": consult})
            await doctor.signaling.expect("queue", where=lambda f: any(
                i["consult"] == consult and i["mine"] for i in f["items"]))
            stage.at = "admit"
            await doctor.send({"type": "admit", "consult": consult})
            # The `admitted` notice reaches a clinic whose node already follows the consult; the
            # lobby (refreshed every 3 s) says it too: either will do.
            await first_frame(clinic.signaling, lambda f: (
                f["type"] == "notice" and f.get("code") == "admitted") or (
                f["type"] == "queue" and any(i["consult"] == consult and i["state"] == "admitted"
                                             for i in f["items"])), 15)
            stage.at = "enter"
            await clinic.send({"type": "enter", "session": consult})
            await clinic.signaling.expect("session", where=lambda f: f["id"] == consult)
            await doctor.send({"type": "enter", "session": consult})
            await doctor.signaling.expect("session", where=lambda f: f["id"] == consult)
            stage.at = "consult media"
            await clinic.publish(small_tracks())
            await doctor.publish(small_tracks())
            await media_flows(lambda: _frames(doctor, clinic.id, "mic") > FRAMES_SEEN
                              and _frames(clinic, doctor.id, "mic") > FRAMES_SEEN,
                              MEDIA_WAIT_S, "consult media", doctor, clinic)
            await asyncio.sleep(hold_s)
            stage.at = "end"
            await doctor.send({"type": "end", "outcome": "resolved"})
            await clinic.signaling.expect("ended")
            counts.consults += 1
            stage.at = ""
    except TimeoutError as exc:
        raise TimeoutError(f"consult stuck at {stage.at}: {exc}") from exc
    finally:
        await close_all(people, counts)
        if stage.at and consult is not None:  # failed half-way: free the doctor
            for action, body in (("end", {"outcome": "resolved"}), ("cancel", None)):
                with contextlib.suppress(Exception):
                    await api(http, base, "POST", f"/api/v1/consults/{consult}/{action}",
                              directory.operator, body)


async def one_drop(base: str, http: aiohttp.ClientSession, token: str, joined: bool) -> None:
    """Open /ws (joining when `joined`) and drop the TCP connection without a close frame."""
    grant = await api(http, base, "POST", "/api/v1/session", None, {"token": token})
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        writer.write(f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"websocket upgrade refused: {head[:40]!r}")
        if joined:
            join = json.dumps({"type": "join", "credential": grant["credential"]})
            writer.write(masked_text_frame(join, secrets.token_bytes(4)))
            await asyncio.wait_for(reader.read(64), 10)  # the welcome has started to arrive
    finally:
        writer.transport.abort()


async def churn_loop(name: str, gate: ChurnGate, counts: ChurnCounts,
                     step: Callable[[], Awaitable[None]], pause_s: float,
                     log: Callable[[str], None]) -> None:
    """Run `step` again and again until the gate's deadline; each failure is counted, never
    raised."""
    while time.monotonic() < gate.deadline:
        async with gate.iteration():
            if time.monotonic() >= gate.deadline:
                return
            try:
                async with asyncio.timeout(ITERATION_TIMEOUT_S):
                    await step()
            except Exception as exc:
                code = getattr(exc, "code", "")
                kind = f"{name}:{type(exc).__name__}" + (f":{code}" if code else "")
                counts.errors[kind] += 1
                log(f"soak: {kind}: {str(exc)[:200]}")
        await asyncio.sleep(pause_s)


# --- sampling and the run --------------------------------------------------------------------


class Sampler:
    """Reads the node's resources and error counters."""

    def __init__(self, node: NodeProcess, http: aiohttp.ClientSession, counts: ChurnCounts,
                 started: float) -> None:
        self.node = node
        self.http = http
        self.counts = counts
        self.started = started
        self.server_errors: dict[str, int] = {}
        self.log_errors = 0
        self.log_messages: list[str] = []

    async def scrape(self) -> str:
        """The node's /metrics; a slow answer (a starved machine) is retried, then raised."""
        for attempt in range(SCRAPE_ATTEMPTS):
            try:
                async with self.http.get(self.node.url + "/metrics",
                                         timeout=aiohttp.ClientTimeout(total=20)) as resp:
                    return await resp.text()
            except (aiohttp.ClientError, TimeoutError):
                if attempt == SCRAPE_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(2)
        raise AssertionError("unreachable")

    async def worker_pids(self) -> list[int]:
        if not self.node.media_workers:
            return []
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
            async with self.http.get(self.node.url + "/readyz",
                                     timeout=aiohttp.ClientTimeout(total=10)) as resp:
                body = await resp.json()
                return [int(p) for p in (body.get("media") or {}).get("pids") or [] if p]
        return []

    async def sample(self, quiet: bool = False) -> Sample:
        text = await self.scrape()
        pid = self.node.pid
        tasks = metric_values(text, "tongxin_asyncio_tasks")
        websockets = metric_values(text, "tongxin_websockets_open")
        self.server_errors = server_error_counts(text)
        self.log_errors, self.log_messages = log_errors(self.node.log_path)
        workers = 0.0
        for worker in await self.worker_pids():
            with contextlib.suppress(OSError):
                workers += process_rss_mb(worker)
        errors = (sum(self.counts.errors.values()) + sum(self.server_errors.values())
                  + self.log_errors)
        return Sample(
            t_s=round(time.monotonic() - self.started, 1), rss_mb=round(process_rss_mb(pid), 2),
            fds=open_file_count(pid), tasks=int(tasks[0][1]) if tasks else -1,
            websockets=int(websockets[0][1]) if websockets else -1, errors=errors,
            quiet=quiet, workers_rss_mb=round(workers, 2))

    async def quiet_sample(self, settle_s: float) -> Sample:
        """Wait until no WebSocket is open, then `settle_s` more (seats expire), and sample."""
        deadline = time.monotonic() + QUIET_WAIT_S
        while time.monotonic() < deadline:
            found = metric_values(await self.scrape(), "tongxin_websockets_open")
            if found and found[0][1] == 0:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(settle_s)
        return await self.sample(quiet=True)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=30.0, help="churn time (30)")
    parser.add_argument("--sample-s", type=float, default=30.0,
                        help="seconds between samples (30)")
    parser.add_argument("--redis", action="store_true",
                        help="run the node on a local redis-server started for the soak")
    parser.add_argument("--media-workers", type=int, default=0,
                        help="media worker processes of the node (0: media in the node)")
    parser.add_argument("--classes", type=int, default=1, help="concurrent class loops (1)")
    parser.add_argument("--consults", type=int, default=1, help="concurrent consult loops (1)")
    parser.add_argument("--droppers", type=int, default=1,
                        help="loops opening and dropping WebSockets (1)")
    parser.add_argument("--hold-s", type=float, default=5.0,
                        help="seconds a session holds media before it goes on (5)")
    parser.add_argument("--log-file", type=Path,
                        help="keep the node's log (JSON lines) at this path")
    parser.add_argument("--settle-s", type=float, default=SEAT_GRACE_S + 5,
                        help="idle seconds before a quiet sample (seats expire first; 35)")


def _log(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _print_sample(s: Sample) -> None:
    _log(f"soak: t={s.t_s:7.1f}s rss={s.rss_mb:7.1f}MB fds={s.fds:4d} tasks={s.tasks:4d} "
         f"ws={s.websockets:3d} errors={s.errors}" + (" (quiet)" if s.quiet else ""))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="tongxin-soak-"))
    redis = RedisServerProcess(directory=workdir / "redis") if args.redis else None
    secret = secrets.token_urlsafe(32)
    try:
        if redis is not None:
            await asyncio.to_thread(redis.start)
        node = NodeProcess(workdir, redis_url=redis.url if redis else None,
                           media_workers=args.media_workers,
                           env={"TONGXIN_TOKEN_SECRET": secret})
        await node.start()
        try:
            return await _soak(args, node, secret)
        finally:
            await node.stop()
            if getattr(args, "log_file", None):
                await asyncio.to_thread(shutil.copyfile, node.log_path, args.log_file)
    finally:
        if redis is not None:
            await asyncio.to_thread(redis.stop)
        shutil.rmtree(workdir, ignore_errors=True)


async def _soak(args: argparse.Namespace, node: NodeProcess, secret: str) -> dict[str, Any]:
    base = node.url
    counts = ChurnCounts()
    gate = ChurnGate()
    samples: list[Sample] = []
    # force_close: a kept-alive connection the node closes as it is reused is a client race,
    # not a node error
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        directory = await fill_directory(http, base, secret, args.classes, args.consults,
                                         args.droppers)
        await asyncio.to_thread(small_tracks)  # clips encoded (and cached) before the clock
        started = time.monotonic()
        churn_s = args.minutes * 60
        gate.deadline = started + churn_s
        sampler = Sampler(node, http, counts, started)
        drops = itertools.count()

        async def drop(k: int) -> None:
            await one_drop(base, http, directory.dropper_tokens[k], next(drops) % 4 != 0)
            counts.drops += 1

        loops = [churn_loop("class", gate, counts,
                            partial(one_class, base, http, directory, k, args.hold_s, counts),
                            0.5, _log) for k in range(args.classes)]
        loops += [churn_loop("consult", gate, counts,
                             partial(one_consult, base, http, directory, k, args.hold_s, counts),
                             0.5, _log) for k in range(args.consults)]
        loops += [churn_loop("drop", gate, counts, partial(drop, k), 1.0, _log)
                  for k in range(args.droppers)]
        tasks = [asyncio.create_task(loop) for loop in loops]
        warm_at = started + WARMUP_FRACTION * churn_s
        warm_done = False
        next_sample = started + args.sample_s
        try:
            samples.append(await sampler.sample())
            _print_sample(samples[-1])
            while time.monotonic() < gate.deadline:
                target = min(next_sample, gate.deadline)
                if not warm_done:
                    target = min(target, warm_at)
                await asyncio.sleep(max(0.0, target - time.monotonic()))
                now = time.monotonic()
                if not warm_done and now >= warm_at:
                    warm_done = True
                    await gate.pause(ITERATION_TIMEOUT_S)
                    samples.append(await sampler.quiet_sample(args.settle_s))
                    gate.resume()
                    gate.deadline += time.monotonic() - now  # the pause is not churn time
                    next_sample = time.monotonic() + args.sample_s
                elif now >= next_sample and now < gate.deadline:
                    next_sample += args.sample_s
                    try:
                        samples.append(await sampler.sample())
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        counts.errors[f"sample:{type(exc).__name__}"] += 1
                        _log(f"soak: the node did not answer a sample: {exc!r}")
                        continue
                else:
                    continue
                _print_sample(samples[-1])
        finally:
            await gate.pause(ITERATION_TIMEOUT_S + 10)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        samples.append(await sampler.quiet_sample(args.settle_s))
        _print_sample(samples[-1])
    verdict = soak_verdict(samples)
    _log(f"soak: verdict {'OK' if verdict.ok else 'FAIL'}"
         + ("" if verdict.ok else ": " + "; ".join(verdict.reasons)))
    return {
        "minutes": args.minutes,
        "store": "redis" if node.redis_url else "memory",
        "media_workers": node.media_workers,
        "churn": {"classes": counts.classes, "consults": counts.consults,
                  "joins": counts.joins, "websocket_drops": counts.drops},
        "errors": {"churn": dict(counts.errors), "server": sampler.server_errors,
                   "log_lines": sampler.log_errors, "log_messages": sampler.log_messages},
        "refused_frames": dict(counts.refused),
        "samples": [asdict(s) for s in samples],
        "verdict": asdict(verdict),
    }
