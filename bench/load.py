"""`tongxin bench load`: many classes and consults on two nodes sharing one Redis.

Method: a local redis-server and two `tongxin serve --redis URL --no-demo` processes
(bench/load_cluster.py); through the REST API, as an operator, a directory of
schools, classrooms, a hospital, clinics, teachers and doctors, N classes (a teacher and K
classrooms each) and M consults (requested by a clinic through one node, claimed and admitted
by a doctor through the other). Then simulated participants (bench/load_crowd.py,
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
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from bench.load_cluster import LocalCluster
from bench.load_crowd import CrowdCommand, CrowdJob, CrowdSettings
from bench.load_figures import Summary, wait_share
from bench.load_setup import ApiFailed, prepare
from bench.processes import NodeProcess, stop_process
from client.clip import load_clip
from signaling.proc_cpu import schedstat

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
def wall_limit_s(args: argparse.Namespace) -> float:
    """The hard bound of a whole run."""
    participants = args.classes * (1 + args.classrooms) + 2 * args.consults
    joining = participants * args.ramp + args.first_frame_timeout + 30
    return float(SETUP_TIMEOUT_S + CROWD_START_S + joining + args.warmup + args.duration
                 + TEARDOWN_S)


def deal(jobs: Sequence[CrowdJob], generators: int) -> list[list[CrowdJob]]:
    """Jobs dealt round-robin to the load generators (none left empty when avoidable)."""
    hands: list[list[CrowdJob]] = [[] for _ in range(max(1, min(generators, len(jobs))))]
    for i, job in enumerate(jobs):
        hands[i % len(hands)].append(job)
    return hands


# --- load generators ----------------------------------------------------------------------------
class Crowd:
    """One load-generator process (`python -m bench.load_crowd`)."""

    def __init__(self, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    @classmethod
    async def start(cls, jobs: list[CrowdJob], settings: CrowdSettings,
                    log_path: Path) -> Crowd:
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.load_crowd",
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
    joining_s = len(jobs) * args.ramp + args.first_frame_timeout + 10
    settings = CrowdSettings(joining_s=joining_s,
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
        ready = await asyncio.gather(*(c.hear("ready", joining_s + 30) for c in crowds))
        progress(f"{sum(r['ready'] for r in ready)} of {len(jobs)} participants receive video;"
                 f" warming up {args.warmup:g} s, then measuring {args.duration:g} s")
        await asyncio.sleep(args.warmup)
        groups = {"nodes": cluster.pids(), "loadgens": [c.process.pid for c in crowds]}
        sched0 = {name: schedstat(pids) for name, pids in groups.items()}
        t0, cpu0 = time.monotonic(), cluster.cpu()
        await asyncio.gather(*(c.say("window") for c in crowds))
        await asyncio.sleep(args.duration)
        t1, cpu1 = time.monotonic(), cluster.cpu()
        sched1 = {name: schedstat(pids) for name, pids in groups.items()}
        summary.cpu_wait_share = {name: wait_share(sched0[name], sched1[name]) for name in groups}
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
                    jobs, summary.sessions = await prepare(cluster, args, progress)
                    summary.planned = len(jobs)
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
    figures["clip"] = {"video": f"VP8 {VIDEO['width']}x{VIDEO['height']} {VIDEO['fps']} fps",
                       "video_kbps": round(load_clip("vp8", **VIDEO).bitrate / 1000),
                       "audio": "Opus"}
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
