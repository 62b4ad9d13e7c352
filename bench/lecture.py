"""`tongxin bench lecture`: one teacher, an origin and N edge nodes, many receive-only viewers.

Method (docs/measuring.md): a real redis-server, an origin (`tongxin serve --media-role
origin`) and `--edges` edge nodes (`--media-role edge`), separate processes sharing Redis and
a token secret. The teacher joins the origin through its class link and publishes a
pre-encoded VP8 clip and Opus (client/clip.py, no encoding). Viewers (observer links of the
class, all pointing at the origin) join from `--receiver-processes` child processes
(bench/lecture_crowd.py) and follow the origin's `redirect` to the edge that serves them. For
each subscriber count of `--subscribers` (joined incrementally), after a warm-up: delivered %
per kind, CPU per node over the window (its process tree from /proc, media workers
included) as ms per second and per subscriber-second, join-to-first-frame of the viewers that
step added, the receivers' own CPU, and Redis commands per join and per second. Then the
same viewers against one node alone (the `single` phase), so an edge's cost per subscriber
compares with a single node's in the same run. Figures: bench/lecture_figures.py.

    tongxin bench lecture --json --subscribers 20,40 --edges 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import redis

from bench.lecture_crowd import RECEIVER_KINDS, crowd_main
from bench.lecture_figures import checks, redis_load, render, step_figures, window_counts
from bench.load_setup import ServiceApi
from bench.processes import LOOPBACK, NodeProcess, RedisServerProcess
from bench.relay import Process
from broker.memory_store import MemoryStore
from broker.models import Role
from broker.tokens import Keyring, TokenService
from client.clip import ClipTrack, load_clip
from client.participant import RemoteParticipant
from client.peer import FrameLog
from media.errors import MediaError
from signaling.proc_cpu import read_all_stats, tree_cpu, tree_pids

START_TIMEOUT_S = 90.0
JOIN_BUDGET_S = 90.0
JOIN_BUDGET_PER_VIEWER_S = 1.5
"""A step's joins must all be done within JOIN_BUDGET_S + this x the viewers it adds."""
STOP_TIMEOUT_S = 15.0
SCHOOL = "lecture-school"
CLASSROOM = "lecture-room"
TEACHER = "lecture-teacher"
SUBJECT = "数学"

__all__ = ["configure_parser", "render", "run"]

Progress = Callable[[str], None]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subscribers", type=_counts, default=[20, 40],
                        help="viewer counts, comma-separated, joined incrementally (20,40)")
    parser.add_argument("--edges", type=int, default=2,
                        help="edge nodes beside the origin (2); 0: the origin alone")
    parser.add_argument("--duration", type=float, default=15.0,
                        help="measured window per step, s (15)")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds after the step's joins before measuring (3)")
    parser.add_argument("--receiver", choices=(*RECEIVER_KINDS, "both"), default="lean",
                        help="viewers: lean (packets counted after SRTP), aiortc (aiortc's"
                        " receive path), or both: the lecture with lean viewers, the single"
                        " node with each kind in turn (lean)")
    parser.add_argument("--receiver-processes", type=int, default=2,
                        help="processes playing the viewers (2)")
    parser.add_argument("--media-workers", type=int, default=1,
                        help="media workers per node (1)")
    parser.add_argument("--no-single", action="store_true",
                        help="skip the single-node comparison")
    parser.add_argument("--join-gap", type=float, default=0.0,
                        help="seconds between two viewers' joins (0: all at once, 8 at a time"
                        " per process); over a second, each edge's load is known to the"
                        " origin before the next join, so viewers spread evenly")
    parser.add_argument("--span-after", type=int, default=0,
                        help="viewers the origin keeps before it sends them to edges (0)")


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError("expected counts like 20,40") from exc
    if not counts or any(c < 1 for c in counts) or counts != sorted(counts):
        raise argparse.ArgumentTypeError("expected increasing positive counts like 20,40")
    return counts


def _progress(message: str) -> None:
    sys.stderr.write(f"[bench lecture] {message}\n")
    sys.stderr.flush()


# --- UDP drops -----------------------------------------------------------------------------------


def parse_udp_drops(text: str) -> dict[int, int]:
    """{socket inode: datagrams the kernel dropped for it (its receive buffer was full)} from
    the text of /proc/net/udp or udp6."""
    drops: dict[int, int] = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 13 and fields[9].isdigit() and fields[-1].isdigit():
            drops[int(fields[9])] = int(fields[-1])
    return drops


def udp_drops(pids: Iterable[int]) -> int:
    """Datagrams dropped so far on the UDP sockets these processes hold open."""
    drops: dict[int, int] = {}
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError):
            drops.update(parse_udp_drops(Path(name).read_text()))
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.scandir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(fd.path)
                    if target.startswith("socket:["):
                        total += drops.get(int(target[8:-1]), 0)
    return total


# --- the nodes ---------------------------------------------------------------------------------


class LectureCluster:
    """redis-server, an origin and `edges` edge nodes (or one node with `edges=None`), in one
    temporary directory; `close()` always stops them all."""

    def __init__(self, edges: int | None, media_workers: int, span_after: int) -> None:
        self.edges = edges
        self.media_workers = media_workers
        self.span_after = span_after
        self.dir = Path(tempfile.mkdtemp(prefix="tongxin-bench-lecture-"))
        self.token_secret = secrets.token_urlsafe(32)
        self.redis: RedisServerProcess | None = None
        self.nodes: list[NodeProcess] = []
        self.roles: dict[str, str] = {}

    def _node(self, name: str, role: str, extra: list[str]) -> NodeProcess:
        assert self.redis is not None
        self.roles[name] = role
        return NodeProcess(self.dir, name=name, redis_url=self.redis.url,
                           media_workers=self.media_workers,
                           env={"TONGXIN_TOKEN_SECRET": self.token_secret},
                           ready_path="/readyz", extra_args=extra)

    async def start(self) -> None:
        self.redis = RedisServerProcess(directory=self.dir / "redis")
        await asyncio.to_thread(self.redis.start, START_TIMEOUT_S)
        if self.edges is None:
            self.nodes = [self._node("single", "single", [])]
        elif self.edges == 0:
            self.nodes = [self._node("origin", "origin", [])]
        else:
            # every node decides with the same threshold (with the edges at the default of
            # 100, an edge sent a viewer back to the origin, which sent it to the edge again)
            span = ["--span-after", str(self.span_after)]
            self.nodes = [self._node("origin", "origin", ["--media-role", "origin", *span])]
            self.nodes += [self._node(f"edge-{i + 1}", "edge", ["--media-role", "edge", *span])
                           for i in range(self.edges)]
        # the origin first (it opens the room), then the edges together; every start runs to
        # its end before a failure is raised, so `close` never races a spawning node
        await self.nodes[0].start(START_TIMEOUT_S)
        started = await asyncio.gather(*(n.start(START_TIMEOUT_S) for n in self.nodes[1:]),
                                       return_exceptions=True)
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome

    @property
    def origin(self) -> NodeProcess:
        return self.nodes[0]

    def node_names(self) -> dict[str, str]:
        """Base URL -> node name."""
        return {n.url: n.name for n in self.nodes}

    def cpu(self) -> dict[str, float]:
        """Node name -> CPU seconds of its process tree (signaling and media workers)."""
        stats = read_all_stats()
        return {n.name: sum(tree_cpu(stats, n.pid)) for n in self.nodes}

    def redis_commands(self) -> int:
        """Commands the redis-server has processed so far (INFO stats; blocking: call it in
        a thread)."""
        assert self.redis is not None
        client = redis.Redis(host=LOOPBACK, port=self.redis.port, socket_timeout=5)
        try:
            return int(client.info("stats")["total_commands_processed"])
        finally:
            client.close()

    def drops(self) -> dict[str, int]:
        """Node name -> UDP datagrams dropped on its process tree's sockets so far."""
        stats = read_all_stats()
        return {n.name: udp_drops(tree_pids(stats, n.pid)) for n in self.nodes}

    def crashed(self) -> list[str]:
        return [n.name for n in self.nodes if n.returncode is not None]

    def operator(self) -> str:
        """An operator credential (signed with the cluster's token secret)."""
        return self._tokens().issue(sub="lecture-operator", role=Role.OPERATOR, name="运维")

    def viewer_link(self, class_id: str, i: int) -> str:
        token = self._tokens().issue(sub=f"viewer-{i}", role=Role.OBSERVER, session=class_id,
                                     name=f"观众 {i}", ttl_s=4 * 3600)
        return f"{self.origin.url}/join/{token}"

    def _tokens(self) -> TokenService:
        return TokenService(MemoryStore(), Keyring.from_spec(f"k1:{self.token_secret}"),
                            time.time)

    async def close(self) -> None:
        await asyncio.gather(*(n.stop(STOP_TIMEOUT_S) for n in self.nodes),
                             return_exceptions=True)
        if self.redis is not None:
            await asyncio.to_thread(self.redis.stop)
        await asyncio.to_thread(shutil.rmtree, self.dir, True)


async def schedule_lecture(cluster: LectureCluster) -> tuple[str, str]:
    """A school, a classroom, a teacher and the class, through the origin: (class id, the
    teacher's join link)."""
    async with aiohttp.ClientSession() as http:
        api = ServiceApi(http, cluster.origin.url, cluster.operator())
        await api.call("POST", "/api/v1/sites", {"id": SCHOOL, "name": "省实验小学",
                                                 "kind": "school"})
        await api.call("POST", "/api/v1/sites", {"id": CLASSROOM, "name": "主讲教室",
                                                 "kind": "classroom", "parent_site_id": SCHOOL})
        await api.call("POST", "/api/v1/experts", {"id": TEACHER, "name": "主讲老师",
                                                   "kind": "teacher", "specialties": [SUBJECT],
                                                   "site_id": SCHOOL})
        view = await api.call("POST", "/api/v1/classes", {
            "title": "全省公开课", "subject": SUBJECT, "teacher_id": TEACHER,
            "classroom_site_ids": [CLASSROOM]})
    return str(view["klass"]["id"]), str(view["host_link"])


# --- the teacher -------------------------------------------------------------------------------


class Teacher:
    """The publisher: joins through its class link and plays the clips, counting frames sent."""

    def __init__(self) -> None:
        self.log = FrameLog(keep_order=False)
        self.participant: RemoteParticipant | None = None

    async def start(self, link: str, class_id: str) -> None:
        self.participant = await RemoteParticipant.join_link(link)
        await self.participant.signaling.expect("session", timeout=30,
                                                where=lambda f: f.get("id") == class_id)
        await self.participant.publish({
            "camera": ClipTrack(load_clip("vp8"), on_frame=self.log.recorder("camera")),
            "mic": ClipTrack(load_clip("opus"), on_frame=self.log.recorder("mic")),
        })
        deadline = time.monotonic() + 30
        while self.participant.peer is None or self.participant.peer.up_state != "connected":
            if time.monotonic() > deadline:
                raise RuntimeError("the teacher's publication did not connect within 30 s")
            await asyncio.sleep(0.1)

    def sent(self) -> dict[str, int]:
        return {"video": self.log.counts.get("camera", 0), "audio": self.log.counts.get("mic", 0)}

    async def close(self) -> None:
        if self.participant is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.participant.close(), 10)


# --- one phase ---------------------------------------------------------------------------------


async def _crowd_counts(crowds: list[Process]) -> tuple[list[dict[str, Any]], float]:
    answers = await asyncio.gather(*(c.call("counts", timeout=60.0) for c in crowds))
    return [r for a in answers for r in a["receivers"]], sum(a["cpu_s"] for a in answers)


async def run_phase(name: str, edges: int | None, receiver: str, args: argparse.Namespace,
                    progress: Progress) -> dict[str, Any]:
    """Start the nodes, the teacher and the receiver processes; measure each step; stop all."""
    cluster = LectureCluster(edges, args.media_workers, args.span_after)
    teacher = Teacher()
    crowds: list[Process] = []
    steps: list[dict[str, Any]] = []
    stopped: str | None = None
    try:
        await cluster.start()
        progress(f"{name}: nodes {[n.name for n in cluster.nodes]} up; scheduling the class")
        class_id, host_link = await schedule_lecture(cluster)
        await teacher.start(host_link, class_id)
        crowds = [await Process.spawn(crowd_main, receiver, None, on_event=lambda e: None)
                  for _ in range(max(1, args.receiver_processes))]
        joined = 0
        for count in args.subscribers:
            jobs = [{"id": f"viewer-{i}", "link": cluster.viewer_link(class_id, i),
                     "local_addr": viewer_address(i), "delay_s": k * args.join_gap}
                    for k, i in enumerate(range(joined, count))]
            share = [jobs[k::len(crowds)] for k in range(len(crowds))]
            timeout = (JOIN_BUDGET_S + JOIN_BUDGET_PER_VIEWER_S * len(jobs)
                       + args.join_gap * len(jobs))
            progress(f"{name}: {len(jobs)} more {receiver} viewers joining ({count} in all)")
            redis_at_join = await asyncio.to_thread(cluster.redis_commands)
            try:
                results = await asyncio.gather(*(
                    c.call("join", part, timeout, timeout=timeout + 30.0)
                    for c, part in zip(crowds, share, strict=True) if part))
            except MediaError as exc:  # a receiver process stuck: the steps so far stand
                progress(f"{name}: stopped at {count} viewers: {exc}")
                stopped = f"{count} viewers: {exc}"
                break
            fresh = [r for part in results for r in part]
            joined = count
            await asyncio.sleep(args.warmup)
            before, rx_before = await _crowd_counts(crowds)
            drops_before = await asyncio.to_thread(cluster.drops)
            rx_drops_before = await asyncio.to_thread(udp_drops, [c.pid for c in crowds])
            redis_before = await asyncio.to_thread(cluster.redis_commands)
            cpu_before, sent_before, t0 = cluster.cpu(), teacher.sent(), time.monotonic()
            await asyncio.sleep(args.duration)
            after, rx_after = await _crowd_counts(crowds)
            cpu_after, sent_after, t1 = cluster.cpu(), teacher.sent(), time.monotonic()
            redis_after = await asyncio.to_thread(cluster.redis_commands)
            drops_after = await asyncio.to_thread(cluster.drops)
            rx_drops_after = await asyncio.to_thread(udp_drops, [c.pid for c in crowds])
            sent = {k: sent_after[k] - sent_before[k] for k in sent_after}
            counts = window_counts(before, after, cluster.node_names())
            failures = [f"{r['id']}: {e}" for r in after for e in r["errors"]]
            failures += [f"{n} exited" for n in cluster.crashed()]
            step = step_figures(
                subscribers=count, window_s=t1 - t0, sent=sent, counts=counts,
                roles=cluster.roles, cpu_before=cpu_before, cpu_after=cpu_after,
                first_frame_s=[r["first_frame_s"] for r in fresh
                               if r["first_frame_s"] is not None],
                receiver_cpu_s=rx_after - rx_before, failures=failures)
            step["load_avg_1m"] = round(os.getloadavg()[0], 2)  # a shared machine shows here
            step["udp_drops"] = {  # where packets were lost: the kernel dropped them there
                **{n: drops_after[n] - drops_before.get(n, 0) for n in drops_after},
                "receivers": rx_drops_after - rx_drops_before}
            step["redis"] = redis_load(redis_at_join, redis_before, redis_after, len(jobs),
                                       t1 - t0)
            steps.append(step)
            progress(f"{name}: {count} viewers: delivered {step['delivered_pct']}, nodes "
                     + ", ".join(f"{k} {v['subscribers']} subs {v['cpu_ms_per_s']} ms/s"
                                 for k, v in step["nodes"].items()))
    finally:
        await asyncio.gather(*(c.stop() for c in crowds), return_exceptions=True)
        await teacher.close()
        await cluster.close()
    return {"receiver": receiver, "edges": edges, "steps": steps, "stopped": stopped}


def viewer_address(i: int) -> str:
    """Viewer `i`'s own loopback source address, 127.1.0.1 onwards (a node takes at most 64
    WebSockets from one address; every 127.x.y.z is loopback on Linux)."""
    return f"127.1.{i // 250}.{i % 250 + 1}"


def phase_plan(args: argparse.Namespace) -> list[tuple[str, int | None, str]]:
    """(phase name, edges (None: a single node), receiver kind) in the order they run."""
    lean_first = "lean" if args.receiver == "both" else args.receiver
    plan: list[tuple[str, int | None, str]] = [("lecture", args.edges, lean_first)]
    if not args.no_single:
        plan.append(("single", None, lean_first))
        if args.receiver == "both":
            plan.append(("single-aiortc", None, "aiortc"))
    return plan


async def run(args: argparse.Namespace) -> dict[str, Any]:
    progress: Progress = _progress
    progress("preparing the clips (encoded once, then cached)")
    video = load_clip("vp8")
    load_clip("opus")
    phases: dict[str, Any] = {}
    for name, edges, receiver in phase_plan(args):
        phases[name] = await run_phase(name, edges, receiver, args, progress)
    return {
        "phases": phases,
        "checks": checks(phases),
        "clip": {"video": "VP8 640x360 30 fps", "video_kbps": round(video.bitrate / 1000),
                 "audio": "Opus"},
        "receiver_processes": args.receiver_processes,
        "media_workers": args.media_workers,
    }
