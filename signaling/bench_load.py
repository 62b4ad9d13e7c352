"""`tongxin bench load`: many classes and consults on two nodes sharing one Redis.

Method: a local redis-server and two `tongxin serve --redis URL --no-demo` processes
(signaling/bench_load_cluster.py); through the REST API, as an operator, a directory of
schools, classrooms, a hospital, clinics, teachers and doctors, N classes (a teacher and K
classrooms each) and M consults (requested by a clinic through one node, claimed and admitted
by a doctor through the other). Then simulated participants (signaling/bench_load_crowd.py,
in load-generator processes of their own) join through alternating nodes, publish Opus and a
low pre-encoded video (160x120, 15 fps, about 100 kbit/s) and receive everyone else's. Reported:
join-to-first-frame p50/p95 (join start to the first video frame of someone else), each node's
CPU (its process tree, read from /proc) per participant-second over a fixed window once
everyone is in, and errors by kind. Every step is bounded; the whole run by a wall-time limit.

    .venv/bin/tongxin bench load --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from broker.memory_store import MemoryStore
from broker.models import Role
from broker.tokens import Keyring, TokenService
from media.clip import load_clip
from signaling.bench_load_cluster import LocalCluster, NodeProcess, stop_process
from signaling.bench_load_crowd import CrowdCommand, CrowdJob, CrowdSettings
from signaling.ws_client import split_join_link

VIDEO = {"width": 160, "height": 120, "fps": 15, "bitrate": 100_000, "keyframe_interval": 30}
"""The published camera: `load_clip("vp8", **VIDEO)`."""
MIN_DELIVERED_PCT = 90.0
"""Below this share of video frames delivered in the window, the run measured a starved
machine, not Tongxin's capacity."""
SETUP_TIMEOUT_S = 120.0
"""Cluster start and directory, classes and consults through the REST API."""
CROWD_START_S = 120.0
"""Load generators importing aiortc and reading the clips (slow on a busy machine)."""
TEARDOWN_S = 60.0
"""Participants leaving, load generators and nodes stopping."""
HOSPITAL = "bench-hospital"
SCHOOL = "bench-school"
SPECIALTY = "内科"
SUBJECT = "数学"

Progress = Callable[[str], None]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--classes", type=int, default=4, help="classes (4)")
    parser.add_argument("--classrooms", type=int, default=3, help="classrooms per class (3)")
    parser.add_argument("--consults", type=int, default=4, help="consults (4)")
    parser.add_argument("--duration", type=float, default=30.0,
                        help="measured window once everyone is in, s (30)")
    parser.add_argument("--warmup", type=float, default=3.0, help="s before measuring (3)")
    parser.add_argument("--ramp", type=float, default=0.15,
                        help="s between two participants starting to join (0.15)")
    parser.add_argument("--loadgens", type=int, default=4, help="load-generator processes (4)")
    parser.add_argument("--media-workers", type=int, default=1,
                        help="media worker processes per node (1)")
    parser.add_argument("--first-frame-timeout", type=float, default=30.0,
                        help="s a participant waits for its first frame (30)")
    parser.add_argument("--adaptation", choices=("on", "off"), default="on",
                        help="the nodes' per-subscriber adaptation (on)")
    parser.add_argument("--participants-json", metavar="FILE",
                        help="write every participant's result (steps, frames, errors) to FILE")
    parser.add_argument("--keep-logs", metavar="DIR",
                        help="copy the nodes', Redis's and load generators' logs into DIR")


# --- pure parts ---------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: int) -> float | None:
    """The q-th percentile (inclusive method); None without values."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(sorted(values), n=100, method="inclusive")[q - 1]


def wall_limit_s(args: argparse.Namespace) -> float:
    """The hard bound of a whole run."""
    participants = args.classes * (1 + args.classrooms) + 2 * args.consults
    joining = participants * args.ramp + args.first_frame_timeout + 30
    return SETUP_TIMEOUT_S + CROWD_START_S + joining + args.warmup + args.duration + TEARDOWN_S


@dataclass(frozen=True)
class PlannedJob:
    """A participant to simulate before its token is known: who, which session, which node."""

    label: str
    session_index: int
    node_index: int


def deal(jobs: Sequence[CrowdJob], generators: int) -> list[list[CrowdJob]]:
    """Jobs dealt round-robin to the load generators (none left empty when avoidable)."""
    hands: list[list[CrowdJob]] = [[] for _ in range(max(1, min(generators, len(jobs))))]
    for i, job in enumerate(jobs):
        hands[i % len(hands)].append(job)
    return hands


def cpu_per_participant(cpu_s: float, participants: int, window_s: float) -> float | None:
    """CPU milliseconds per participant-second (None without participants)."""
    if participants <= 0 or window_s <= 0:
        return None
    return round(cpu_s * 1000 / (participants * window_s), 2)


@dataclass
class Summary:
    """What the run produced, turned into the printed figures by `figures`."""

    sessions: int = 0
    planned: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    window_s: float = 0.0
    node_cpu: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Node name -> (signaling CPU s, media worker CPU s) over the window."""
    node_urls: dict[str, str] = field(default_factory=dict)
    loadgen_cpu_s: float = 0.0

    def figures(self) -> dict[str, Any]:
        first = [r["first_frame_s"] * 1000 for r in self.results
                 if r["first_frame_s"] is not None]
        active = [r for r in self.results if r["first_frame_s"] is not None]
        by_url = Counter(r["node"] for r in active)
        nodes: dict[str, Any] = {}
        total_cpu = 0.0
        for name, (signaling, media) in self.node_cpu.items():
            count = by_url.get(self.node_urls.get(name, ""), 0)
            total_cpu += signaling + media
            nodes[name] = {
                "participants": count,
                "sessions": len({r["session"] for r in active
                                 if r["node"] == self.node_urls.get(name)}),
                "cpu_s": round(signaling + media, 2),
                "signaling_cpu_s": round(signaling, 2),
                "media_cpu_s": round(media, 2),
                "cpu_ms_per_participant_second": cpu_per_participant(
                    signaling + media, count, self.window_s),
            }
        live = Counter(r["session"] for r in active)
        errors = Counter(self.errors)
        for r in self.results:
            errors.update(r["errors"])
        return {
            "sessions": self.sessions,
            "sessions_with_media": sum(1 for n in live.values() if n >= 2),
            "participants": self.planned,
            "participants_receiving": len(active),
            "redirected_at_join": sum(1 for r in self.results if r["moves_at_first_frame"] > 0),
            "window_s": round(self.window_s, 2),
            "cpu_ms_per_participant_second": cpu_per_participant(
                total_cpu, len(active), self.window_s),
            "nodes": nodes,
            "join_to_first_frame_p50_ms": _round(percentile(first, 50)),
            "join_to_first_frame_p95_ms": _round(percentile(first, 95)),
            "join_to_first_frame_max_ms": _round(max(first) if first else None),
            "join_steps_p50_ms": {
                step: _round(percentile(times, 50)) for step, times in steps_ms(self.results)},
            "join_to_first_frame_p50_ms_by_role": {
                role: _round(percentile(times, 50)) for role, times in sorted(
                    first_frames_by_role(self.results).items())},
            "video_delivered_pct": delivered_pct(active),
            "video_fps_received_per_participant": _round(
                statistics.fmean(r["window_video_frames"] / self.window_s for r in active
                                 if r["window_video_frames"] is not None)
                if self.window_s > 0 and any(r["window_video_frames"] is not None
                                             for r in active) else None),
            "loadgen_cpu_s": round(self.loadgen_cpu_s, 2),
            "errors": dict(sorted(errors.items())),
            "error_count": sum(errors.values()),
            "clip": {"video": f"VP8 {VIDEO['width']}x{VIDEO['height']} {VIDEO['fps']} fps",
                     "video_kbps": round(load_clip("vp8", **VIDEO).bitrate / 1000),
                     "audio": "Opus"},
        }


def delivered_pct(results: Sequence[dict[str, Any]]) -> float | None:
    """Video frames received in the window over those the offered cameras sent, in %."""
    got = sum(r["window_video_frames"] or 0 for r in results)
    expected = sum(r.get("window_video_expected") or 0 for r in results)
    return round(min(100.0, 100.0 * got / expected), 1) if expected else None


def role_of(label: str) -> str:
    """`class-0/classroom-2` -> `classroom`."""
    return label.rsplit("/", 1)[-1].split("-", 1)[0]


def first_frames_by_role(results: Sequence[dict[str, Any]]) -> dict[str, list[float]]:
    """Join-to-first-frame milliseconds of the participants who got one, by role."""
    by_role: dict[str, list[float]] = {}
    for r in results:
        if r["first_frame_s"] is not None:
            by_role.setdefault(role_of(r["label"]), []).append(r["first_frame_s"] * 1000)
    return by_role


def steps_ms(results: Sequence[dict[str, Any]]) -> list[tuple[str, list[float]]]:
    """Milliseconds from join start to each step, per step, in the order of a join."""
    order = ("welcome", "session", "published", "first_frame")
    return [(step, [r["stages_s"][step] * 1000 for r in results if step in r["stages_s"]])
            for step in order]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# --- the service's REST API ---------------------------------------------------------------------
class ApiFailed(Exception):
    """A REST call answered with an error; `kind` is `setup:<code>`."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class ServiceApi:
    """REST calls with a bearer credential against one node."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, bearer: str) -> None:
        self.http = http
        self.base_url = base_url
        self.bearer = bearer

    def on(self, base_url: str, bearer: str | None = None) -> ServiceApi:
        return ServiceApi(self.http, base_url, bearer or self.bearer)

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(
                method, self.base_url + path, json=body,
                headers={"Authorization": f"Bearer {self.bearer}"},
                timeout=aiohttp.ClientTimeout(total=30)) as resp:
            payload = await resp.json(content_type=None) if resp.content_length != 0 else None
            if resp.status >= 400:
                error = (payload or {}).get("error", {}) if isinstance(payload, dict) else {}
                raise ApiFailed(f"setup:{error.get('code', resp.status)}",
                                f"{method} {path}: {error.get('message', '')}")
            return payload

    async def credential(self, token: str) -> str:
        """A join token exchanged for a session credential on this node."""
        grant = await self.call("POST", "/api/v1/session", {"token": token})
        return str(grant["credential"])


async def make_directory(api: ServiceApi, classes: int, classrooms: int, consults: int) -> None:
    """Sites and experts: a school with its classrooms and teachers, a county hospital with
    one doctor per consult, and one village clinic per consult."""
    await api.call("POST", "/api/v1/sites", {"id": SCHOOL, "name": "基准小学", "kind": "school"})
    await api.call("POST", "/api/v1/sites", {"id": HOSPITAL, "name": "基准县医院",
                                             "kind": "county_hospital"})
    calls = [api.call("POST", "/api/v1/sites", {
        "id": f"bench-room-{c}-{r}", "name": f"基准教学点 {c}-{r}", "kind": "classroom",
        "parent_site_id": SCHOOL}) for c in range(classes) for r in range(classrooms)]
    calls += [api.call("POST", "/api/v1/sites", {
        "id": f"bench-clinic-{m}", "name": f"基准卫生室 {m}", "kind": "village_clinic",
        "parent_site_id": HOSPITAL}) for m in range(consults)]
    calls += [api.call("POST", "/api/v1/experts", {
        "id": f"bench-teacher-{c}", "name": f"基准老师 {c}", "kind": "teacher",
        "specialties": [SUBJECT], "site_id": SCHOOL}) for c in range(classes)]
    calls += [api.call("POST", "/api/v1/experts", {
        "id": f"bench-doctor-{m}", "name": f"基准医生 {m}", "kind": "doctor",
        "specialties": [SPECIALTY], "on_duty": True, "capacity": 2, "site_id": HOSPITAL})
        for m in range(consults)]
    await asyncio.gather(*calls)


async def schedule_class(api: ServiceApi, c: int, classrooms: int) -> tuple[str, list[str]]:
    """(class id, [teacher's token, classrooms' tokens…])."""
    view = await api.call("POST", "/api/v1/classes", {
        "title": f"基准课 {c}", "subject": SUBJECT, "teacher_id": f"bench-teacher-{c}",
        "classroom_site_ids": [f"bench-room-{c}-{r}" for r in range(classrooms)]})
    tokens = [split_join_link(view["host_link"])[1]]
    tokens += [split_join_link(link)[1] for link in view["classroom_links"].values()]
    return str(view["klass"]["id"]), tokens


async def open_consult(api: ServiceApi, clinic_url: str, doctor_url: str,
                       m: int) -> tuple[str, str, str]:
    """A clinic requests through one node, its doctor claims and admits through the other:
    (consult id, clinic token, doctor token)."""
    clinic_token = (await api.call("POST", "/api/v1/tokens", {
        "sub": f"bench-clinic-{m}", "role": "clinic", "name": f"基准卫生室 {m}"}))["token"]
    doctor_token = (await api.call("POST", "/api/v1/tokens", {
        "sub": f"bench-doctor-{m}", "role": "doctor", "name": f"基准医生 {m}"}))["token"]
    clinic = api.on(clinic_url, await api.on(clinic_url).credential(clinic_token))
    doctor = api.on(doctor_url, await api.on(doctor_url).credential(doctor_token))
    view = await clinic.call("POST", "/api/v1/consults", {
        "specialty": SPECIALTY, "urgency": "routine", "reason": "基准负载测试"})
    consult = str(view["ticket"]["id"])
    await doctor.call("POST", f"/api/v1/consults/{consult}/claim")
    await doctor.call("POST", f"/api/v1/consults/{consult}/admit")
    return consult, clinic_token, doctor_token


async def prepare(cluster: LocalCluster, args: argparse.Namespace,
                  summary: Summary, progress: Progress) -> list[CrowdJob]:
    """Directory, classes and consults; the participants' jobs in joining order."""
    urls = [n.url for n in cluster.nodes]
    operator = TokenService(MemoryStore(), Keyring.from_spec(f"k1:{cluster.token_secret}"),
                            time.time).issue(sub="bench-operator", role=Role.OPERATOR,
                                             name="基准运维")
    jobs: list[CrowdJob] = []

    def add(label: str, session: str, token: str, enter: bool = False,
            node: int | None = None) -> None:
        i = len(jobs) if node is None else node
        jobs.append(CrowdJob(label=label, session=session, base_url=urls[i % 2],
                             fallback_url=urls[(i + 1) % 2], token=token, enter=enter,
                             start_delay_s=len(jobs) * args.ramp))

    async with aiohttp.ClientSession() as http:
        api = ServiceApi(http, urls[0], operator)
        await make_directory(api, args.classes, args.classrooms, args.consults)
        progress(f"directory ready; scheduling {args.classes} classes, opening "
                 f"{args.consults} consults")
        classes = await asyncio.gather(*(
            schedule_class(api.on(urls[c % 2]), c, args.classrooms)
            for c in range(args.classes)))
        consults = await asyncio.gather(*(
            open_consult(api, urls[m % 2], urls[(m + 1) % 2], m)
            for m in range(args.consults)))
    for c, (class_id, tokens) in enumerate(classes):
        for r, token in enumerate(tokens):
            add(f"class-{c}/{'teacher' if r == 0 else f'classroom-{r}'}", class_id, token)
    for m, (consult, clinic_token, doctor_token) in enumerate(consults):
        add(f"consult-{m}/clinic", consult, clinic_token, enter=True, node=m)
        add(f"consult-{m}/doctor", consult, doctor_token, enter=True, node=m + 1)
    summary.sessions = len(classes) + len(consults)
    summary.planned = len(jobs)
    return jobs


# --- load generators ----------------------------------------------------------------------------
class Crowd:
    """One load-generator process (`python -m signaling.bench_load_crowd`)."""

    def __init__(self, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    @classmethod
    async def start(cls, jobs: list[CrowdJob], settings: CrowdSettings,
                    log_path: Path) -> Crowd:
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "signaling.bench_load_crowd",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
                limit=16 << 20)
        finally:
            os.close(log)
        crowd = cls(process, log_path)
        await crowd.say(msgspec.json.encode(CrowdCommand(jobs, settings)).decode())
        return crowd

    async def say(self, line: str) -> None:
        assert self.process.stdin is not None
        with contextlib.suppress(ConnectionError):
            self.process.stdin.write(line.encode() + b"\n")
            await self.process.stdin.drain()

    async def hear(self, key: str, timeout: float) -> dict[str, Any]:
        """The next stdout object holding `key`."""
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = await self.process.stdout.readline()
                    if not line:
                        raise RuntimeError(f"load generator exited: {self.log_tail()}")
                    with contextlib.suppress(ValueError):
                        payload = json.loads(line)
                        if isinstance(payload, dict) and key in payload:
                            return payload
        except TimeoutError:
            raise RuntimeError(f"no {key!r} from a load generator within {timeout:.0f} s: "
                               f"{self.log_tail()}") from None

    def log_tail(self) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return "(no log)"

    async def stop(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(Exception):
                self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 20)
        except TimeoutError:
            await stop_process(self.process)


async def measure(cluster: LocalCluster, jobs: list[CrowdJob], args: argparse.Namespace,
                  summary: Summary, progress: Progress) -> None:
    """Run the crowds: everyone joins, warm-up, the measured window, results."""
    joining_s = len(jobs) * args.ramp + args.first_frame_timeout + 30  # the crowds bound it
    settings = CrowdSettings(
        first_frame_timeout_s=args.first_frame_timeout, video=VIDEO,
        deadline_s=CROWD_START_S + joining_s + args.warmup + args.duration + 60)
    summary.node_urls = {n.name: n.url for n in cluster.nodes}
    crowds: list[Crowd] = []
    try:
        for i, hand in enumerate(deal(jobs, args.loadgens)):
            crowds.append(await Crowd.start(hand, settings, cluster.dir / f"crowd-{i}.log"))
        await asyncio.gather(*(c.hear("loaded", CROWD_START_S) for c in crowds))
        progress(f"{len(crowds)} load generators ready; joining (bounded by {joining_s:.0f} s)")
        await asyncio.gather(*(c.say("go") for c in crowds))
        ready = await asyncio.gather(*(c.hear("ready", joining_s) for c in crowds))
        progress(f"{sum(r['ready'] for r in ready)} of {len(jobs)} participants receive video;"
                 f" warming up {args.warmup:g} s, then measuring {args.duration:g} s")
        await asyncio.sleep(args.warmup)
        t0, cpu0 = time.monotonic(), cluster.cpu()
        await asyncio.gather(*(c.say("window") for c in crowds))
        await asyncio.sleep(args.duration)
        t1, cpu1 = time.monotonic(), cluster.cpu()
        await asyncio.gather(*(c.say("stop") for c in crowds))
        summary.window_s = t1 - t0
        summary.node_cpu = {
            name: (cpu1[name][0] - cpu0[name][0], cpu1[name][1] - cpu0[name][1])
            for name in cpu1 if name in cpu0}
        for name in cluster.crashed():
            summary.errors[f"node:{name}_exited"] += 1
        finished = await asyncio.gather(*(c.hear("results", TEARDOWN_S) for c in crowds))
        for payload in finished:
            summary.results.extend(payload["results"])
            summary.loadgen_cpu_s += float(payload["cpu_s"])
    finally:
        await asyncio.gather(*(c.stop() for c in crowds))


def _progress(message: str) -> None:
    sys.stderr.write(f"[bench load] {message}\n")
    sys.stderr.flush()


def node_names(nodes: Sequence[NodeProcess]) -> str:
    return ", ".join(f"{n.name} {n.url}" for n in nodes)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark; the figures (errors included, never raised) as one dict."""
    progress: Progress = getattr(args, "progress", None) or _progress
    started = time.monotonic()
    load_before = round(os.getloadavg()[0], 1)
    progress("preparing the clips (encoded once, then cached)")
    load_clip("vp8", **VIDEO)
    load_clip("opus")
    summary = Summary()
    cluster = LocalCluster(args.media_workers, adaptation=args.adaptation == "on")
    try:
        async with asyncio.timeout(wall_limit_s(args)):
            try:
                async with asyncio.timeout(SETUP_TIMEOUT_S):
                    await cluster.start()
                    progress(f"redis {cluster.redis_url}; {node_names(cluster.nodes)}")
                    jobs = await prepare(cluster, args, summary, progress)
                progress(f"{len(jobs)} participants in {summary.sessions} sessions joining")
                await measure(cluster, jobs, args, summary, progress)
            finally:
                await cluster.close(Path(args.keep_logs) if args.keep_logs else None)
    except ApiFailed as exc:
        summary.errors[exc.kind] += 1
        progress(str(exc))
    except TimeoutError:
        summary.errors["bench:timeout"] += 1
        progress("the run hit its time bound")
    except (RuntimeError, OSError, aiohttp.ClientError) as exc:
        summary.errors[f"bench:{type(exc).__name__}"] += 1
        progress(f"failed: {exc}")
    figures = summary.figures()
    figures["valid"] = (figures["video_delivered_pct"] or 0) >= MIN_DELIVERED_PCT
    figures["load_average_1m"] = [load_before, round(os.getloadavg()[0], 1)]
    if not figures["valid"]:
        progress(f"video delivered {figures['video_delivered_pct']}% < {MIN_DELIVERED_PCT}%: "
                 "the machine (load average above) or the load generators could not keep up;"
                 " CPU per participant is not a capacity figure; try fewer participants")
    if args.participants_json:
        await asyncio.to_thread(Path(args.participants_json).write_text,
                                json.dumps(summary.results, indent=1))
    figures["settings"] = {"classes": args.classes, "classrooms": args.classrooms,
                           "consults": args.consults, "duration_s": args.duration,
                           "loadgens": args.loadgens, "media_workers": args.media_workers,
                           "adaptation": args.adaptation}
    figures["wall_s"] = round(time.monotonic() - started, 1)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m signaling.bench_load", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    configure_parser(parser)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        for key, value in result.items():
            print(f"{key:>40}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
