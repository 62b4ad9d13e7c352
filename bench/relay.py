"""`tongxin bench relay`: the relay's CPU per subscriber, against aiortc's own path.

Method (docs/measuring.md): one publisher sends a pre-encoded
640x360 30 fps VP8 clip at about 1 Mbit/s plus Opus; N subscribers in separate
load-generator processes count frames without decoding; the relay runs in its own worker
process, whose CPU time is read from /proc over a fixed window once every subscriber is
receiving. The same is then done, in the same run, for an SFU built on aiortc's MediaRelay
(each subscriber's sender encoding). Capacity is derived: 1000 / (CPU ms per
subscriber-second).

    .venv/bin/python -m bench.relay --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import multiprocessing
import os
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from bench.baseline_sfu import baseline_main
from bench.loadgen import loadgen_main
from bench.simulcast_layers import (
    LAYER_CAPS_KBPS,
    capped_answer,
    layer_mix,
    layer_summary,
    preferred_layers,
)
from bench.simulcast_publisher import SimulcastPublisher
from client.clip import ClipTrack, load_clip
from client.peer import FrameLog, PeerClient
from media.peers.config import PeerConfig
from media.service import MediaService
from media.workers.channel import Channel, Event, open_socket
from media.workers.worker import PROFILE_ENV

logger = logging.getLogger(__name__)

ROOM = "bench"
MIN_DELIVERED_PCT = 99.0
ADAPTATION_MODES = ("on", "off", "both")
PUBLISHERS = ("clip", "simulcast")
PUBLISHER = "teacher"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subscribers", type=int, default=40, help="relay subscribers (40)")
    parser.add_argument("--duration", type=float, default=20.0, help="measured window, s (20)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring (3)")
    parser.add_argument("--loadgens", type=int, default=2, help="load-generator processes (2)")
    parser.add_argument(
        "--baseline-subscribers", type=int, default=3, help="subscribers of aiortc's path (3)"
    )
    parser.add_argument(
        "--baseline-duration", type=float, default=10.0, help="baseline window, s (10)"
    )
    parser.add_argument("--no-baseline", action="store_true", help="measure the relay only")
    parser.add_argument(
        "--remb", action="store_true",
        help="subscribers run aiortc's bandwidth estimator and send REMB (about 20 a second"
        " each, far more than a browser; off by default to spare the load generators)",
    )
    parser.add_argument("--profile", metavar="DIR", help="cProfile the relay worker into DIR")
    parser.add_argument(
        "--adaptation", choices=ADAPTATION_MODES, default="on",
        help="the relay's bandwidth adaptation: on (the default, as `tongxin serve`), off, or"
        " both: measured on and off in the same run, interleaved (on, off, off, on, ...), with"
        " the on/off CPU ratio",
    )
    parser.add_argument(
        "--publisher", choices=PUBLISHERS, default="clip",
        help="clip: one 640x360 VP8 layer (the default); simulcast: three VP8 layers"
        " (q/h/f = 180p/360p/720p, L1T3) as a browser sends them, the subscribers a mix"
        " preferring q, h or f (`--layer-mix`) by the bandwidth their answer declares",
    )
    parser.add_argument(
        "--layer-mix", default="q,h,f", metavar="RIDS",
        help="with --publisher simulcast: the layer each subscriber prefers, in turn (q,h,f:"
        " a third each); q and h declare b=AS of"
        f" {LAYER_CAPS_KBPS['q']} and {LAYER_CAPS_KBPS['h']} kbit/s, f nothing",
    )
    parser.add_argument(
        "--rounds", type=int, default=1,
        help="measurements of the relay (each way, with --adaptation both) (1); the figures"
        " are those of the median run",
    )


# --- /proc ------------------------------------------------------------------------------------


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def other_threads_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process's live threads other than its main one (the
    low rung's transcoder, aiortc's and asyncio's helper threads); 0.0 if unreadable. A
    thread that ends between two reads takes its time with it: the difference is a lower
    bound (it can even read negative)."""
    total = 0.0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tids:
        if tid == str(pid):
            continue
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def _layer_counters(publisher: object) -> dict[str, tuple[int, int]]:
    """A simulcast publisher's (packets, frames) sent so far per RID (empty for another)."""
    if not isinstance(publisher, SimulcastPublisher):
        return {}
    return {layer.spec.rid: (layer.sent_packets, layer.sent_frames) for layer in publisher.layers}


def _packets_per_frame(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> dict[str, float]:
    """Per RID, the packets of one frame on average over the window."""
    out: dict[str, float] = {}
    for rid, (packets, frames) in after.items():
        p0, f0 = before.get(rid, (0, 0))
        if frames > f0:
            out[rid] = (packets - p0) / (frames - f0)
    return out


# --- the two systems under test ---------------------------------------------------------------

OfferHandler = Callable[[str, dict[str, Any]], None]


class SystemUnderTest(Protocol):
    pid: int

    async def open_room(self, room_id: str, kind: str) -> None: ...
    async def join(self, room_id: str, participant_id: str, role: str) -> None: ...
    async def publish(
        self, room_id: str, participant_id: str, offer_sdp: str, sources: dict[str, str]
    ) -> str: ...
    async def subscriber_answer(self, room_id: str, participant_id: str, sdp: str) -> None: ...
    async def close(self) -> None: ...


class RelayUnderTest:
    """Tongxin's relay: a `MediaService` with one worker process. Its `link` events (a rung
    switched, a video paused) are kept per subscriber, so a subscriber the adaptation stepped
    down shows in the result."""

    def __init__(self, on_offer: OfferHandler, adaptation: bool = True) -> None:
        self.service = MediaService(1, udp_host="127.0.0.1", adaptation=adaptation)
        self.links: dict[str, list[dict[str, Any]]] = {}
        """Per subscriber, its `link` events, each with `at` (monotonic) added."""
        self.stats: dict[str, dict[str, Any]] = {}
        """Per subscriber, its latest `link_stats` event (estimate, loss, RTT)."""
        self.publisher_events: Callable[[dict[str, Any]], None] | None = None
        """Where the publisher's own events go (a simulcast publisher's `layers`)."""

        def on_event(room: str, pid: str, event: dict[str, Any]) -> None:
            if pid == PUBLISHER:
                if self.publisher_events is not None:
                    self.publisher_events(event)
            elif event["type"] == "offer":
                on_offer(pid, event)
            elif event["type"] == "link":
                self.links.setdefault(pid, []).append({**event, "at": time.monotonic()})
            elif event["type"] == "link_stats":
                self.stats[pid] = event

        self.service.on_event(on_event)
        self.pid = 0

    async def start(self) -> None:
        await self.service.start()
        self.pid = int((await self.service.health())["pids"][0])

    async def open_room(self, room_id: str, kind: str) -> None:
        await self.service.open_room(room_id, kind)

    async def join(self, room_id: str, participant_id: str, role: str) -> None:
        await self.service.join(room_id, participant_id, role)

    async def publish(
        self, room_id: str, participant_id: str, offer_sdp: str, sources: dict[str, str]
    ) -> str:
        return await self.service.publish(room_id, participant_id, offer_sdp, sources)

    async def subscriber_answer(self, room_id: str, participant_id: str, sdp: str) -> None:
        await self.service.subscriber_answer(room_id, participant_id, sdp)

    async def close(self) -> None:
        await self.service.stop()


class Process:
    """A spawned helper process and the channel to it."""

    def __init__(self, process: Any, channel: Channel) -> None:
        self.process = process
        self.channel = channel

    @classmethod
    async def spawn(
        cls, target: Callable[..., None], *args: Any, on_event: Callable[[Event], None]
    ) -> Process:
        parent, child = socket.socketpair()
        process = multiprocessing.get_context("spawn").Process(
            target=target, args=(child, *args), daemon=True
        )
        process.start()
        child.close()
        reader, writer = await open_socket(parent)
        return cls(process, Channel(reader, writer, on_event, name=target.__name__))

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    async def call(self, op: str, *args: Any, timeout: float = 60.0) -> Any:
        return await self.channel.call(op, *args, timeout=timeout)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.call("close", timeout=10.0)
        self.channel.close()
        await asyncio.get_running_loop().run_in_executor(None, self.process.join, 10.0)
        if self.process.is_alive():
            self.process.terminate()


class BaselineUnderTest:
    """aiortc's own path in its own process (`bench.baseline_sfu`)."""

    def __init__(self, on_offer: OfferHandler) -> None:
        self._on_offer = on_offer
        self._process: Process | None = None
        self.pid = 0

    async def start(self) -> None:
        self._process = await Process.spawn(
            baseline_main, "127.0.0.1",
            on_event=lambda e: self._on_offer(e.participant_id, e.event),
        )
        self.pid = self._process.pid

    async def _call(self, op: str, *args: Any) -> Any:
        assert self._process is not None
        return await self._process.call(op, *args)

    async def open_room(self, room_id: str, kind: str) -> None:
        await self._call("open_room", room_id, kind)

    async def join(self, room_id: str, participant_id: str, role: str) -> None:
        await self._call("join", room_id, participant_id, role)

    async def publish(
        self, room_id: str, participant_id: str, offer_sdp: str, sources: dict[str, str]
    ) -> str:
        return str(await self._call("publish", room_id, participant_id, offer_sdp, sources))

    async def subscriber_answer(self, room_id: str, participant_id: str, sdp: str) -> None:
        await self._call("subscriber_answer", room_id, participant_id, sdp)

    async def close(self) -> None:
        if self._process is not None:
            await self._process.stop()


# --- one measurement --------------------------------------------------------------------------


class Measurement:
    """Publisher + N subscribers on one system, measured over a fixed window."""

    def __init__(
        self, loadgens: list[Process], subscribers: int, simulcast_mix: list[str] | None = None
    ) -> None:
        self.loadgens = loadgens
        self.ids = [f"s{i}" for i in range(subscribers)]
        self.home = {pid: loadgens[i % len(loadgens)] for i, pid in enumerate(self.ids)}
        self.simulcast = simulcast_mix is not None
        """A simulcast publisher, and subscribers preferring its layers (`preferred`)."""
        self.preferred = preferred_layers(self.ids, simulcast_mix) if simulcast_mix else {}
        self.system: SystemUnderTest | None = None
        self.answered: set[str] = set()
        self.failures: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def on_offer(self, participant_id: str, event: dict[str, Any]) -> None:
        if event.get("type") != "offer" or participant_id not in self.home:
            return
        task = asyncio.ensure_future(self._answer(participant_id, event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, participant_id: str, event: dict[str, Any]) -> None:
        assert self.system is not None
        try:
            sdp = await self.home[participant_id].call("offer", participant_id, event)
            cap = LAYER_CAPS_KBPS.get(self.preferred.get(participant_id, ""))
            if cap is not None:
                sdp = capped_answer(sdp, cap)
            await self.system.subscriber_answer(ROOM, participant_id, sdp)
            self.answered.add(participant_id)
        except Exception as exc:
            self.failures.append(f"{participant_id}: {exc}")

    async def counts(self) -> tuple[list[int], list[int], float]:
        video, audio, cpu, _ = await self.counts_and_heights()
        return video, audio, cpu

    async def counts_and_heights(
        self,
    ) -> tuple[list[int], list[int], float, list[int | None]]:
        """Per subscriber (in `ids` order): video and audio frames so far, the height of the
        last keyframe it received (which simulcast layer it is on); the generators' CPU."""
        results = await asyncio.gather(*(lg.call("counts") for lg in self.loadgens))
        by_id: dict[str, tuple[int, int, int | None]] = {}
        for lg, r in zip(self.loadgens, results, strict=True):
            mine = [pid for pid in self.ids if self.home[pid] is lg]
            heights = r.get("heights") or [None] * len(r["video"])
            for pid, v, a, h in zip(mine, r["video"], r["audio"], heights, strict=False):
                by_id[pid] = (v, a, h)
        rows = [by_id.get(pid, (0, 0, None)) for pid in self.ids]
        return (
            [v for v, _, _ in rows], [a for _, a, _ in rows],
            sum(r["cpu_s"] for r in results), [h for _, _, h in rows],
        )

    async def run(
        self, system: SystemUnderTest, duration: float, warmup: float, progress: Progress
    ) -> dict[str, Any]:
        self.system = system
        video_clip, audio_clip = load_clip("vp8"), load_clip("opus")
        log = FrameLog(keep_order=False)

        async def publish_offer(sdp: str, sources: dict[str, str]) -> str:
            return await system.publish(ROOM, PUBLISHER, sdp, sources)

        async def no_answer(sdp: str) -> None:
            return None

        await system.open_room(ROOM, "class")
        await system.join(ROOM, PUBLISHER, "teacher")
        publisher: PeerClient | SimulcastPublisher
        if self.simulcast:
            simulcast = publisher = SimulcastPublisher(
                PUBLISHER, publish_offer, config=PeerConfig(), frame_log=log
            )
            if isinstance(system, RelayUnderTest):
                system.publisher_events = simulcast.on_event
            await simulcast.publish()

            def connected() -> bool:
                return simulcast.state == "connected"
        else:
            client = publisher = PeerClient(
                PUBLISHER, publish_offer=publish_offer, send_answer=no_answer,
                config=PeerConfig(), keep_digests=False,
            )
            await client.publish(
                {
                    "camera": ClipTrack(video_clip, on_frame=log.recorder("camera")),
                    "mic": ClipTrack(audio_clip, on_frame=log.recorder("mic")),
                }
            )

            def connected() -> bool:
                return client.up_state == "connected"

        await _until(connected, 20, "the publisher to connect")
        await asyncio.sleep(1.0)
        rss_before = rss_mb(system.pid)
        for lg in self.loadgens:
            await lg.call("add", [pid for pid in self.ids if self.home[pid] is lg])
        for i, pid in enumerate(self.ids):
            await system.join(ROOM, pid, "assistant")
            if i % 4 == 3:
                await asyncio.sleep(0.2)
        progress(f"{len(self.ids)} subscribers joined, waiting for their first frames")
        deadline = time.monotonic() + 60 + len(self.ids)
        while True:
            video, _, _ = await self.counts()
            receiving = sum(1 for v in video if v > 0)
            if receiving == len(self.ids):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"only {receiving} of {len(self.ids)} subscribers receive video"
                    f" ({'; '.join(self.failures[:3])})"
                )
            await asyncio.sleep(1.0)
        progress(f"all receiving; warming up {warmup:.0f} s, then measuring {duration:.0f} s")
        await asyncio.sleep(warmup)
        m0 = time.monotonic()
        t0, (user0, sys0) = time.time(), cpu_times(system.pid)
        threads0 = other_threads_cpu(system.pid)
        sent0 = dict(log.counts)
        video0, audio0, lg_cpu0 = await self.counts()
        layer_sent0 = _layer_counters(publisher)
        await asyncio.sleep(duration)
        t1, (user1, sys1) = time.time(), cpu_times(system.pid)
        threads1 = other_threads_cpu(system.pid)
        m1 = time.monotonic()
        sent1 = dict(log.counts)
        video1, audio1, lg_cpu1, heights = await self.counts_and_heights()
        layer_sent1 = _layer_counters(publisher)
        rss_after = rss_mb(system.pid)
        samples = [
            s for lg in self.loadgens for s in await lg.call("samples", t0, t1, timeout=120.0)
        ]
        stalls = [
            lag for lg in self.loadgens for _, lag in await lg.call("stalls", t0, t1)
        ]
        latencies = sorted(
            lat for digest, at in samples if (lat := log.latency_ms(bytes(digest), at)) is not None
        )
        for lg in self.loadgens:
            await lg.call("remove_all", timeout=120.0)
        await publisher.close()
        await system.close()

        window = t1 - t0
        n = len(self.ids)
        sent_video = sent1["camera"] - sent0["camera"]
        sent_audio = sent1["mic"] - sent0["mic"]
        got_video = sum(b - a for a, b in zip(video0, video1, strict=True))
        got_audio = sum(b - a for a, b in zip(audio0, audio1, strict=True))
        cpu_ms = (user1 - user0 + sys1 - sys0) * 1000
        per_sub_second = cpu_ms / (n * window)
        per_subscriber = [
            _pct(b - a, sent_video) for a, b in zip(video0, video1, strict=True)
        ]
        spread = [p for p in per_subscriber if p is not None]
        links: dict[str, list[dict[str, Any]]] | None = getattr(system, "links", None)
        stats: dict[str, dict[str, Any]] = getattr(system, "stats", {})
        return {
            "subscribers": n,
            "started_at": round(t0, 3),
            "window_s": round(window, 2),
            "delivered_pct": _pct(got_video + got_audio, n * (sent_video + sent_audio)),
            "video_delivered_pct": _pct(got_video, n * sent_video),
            "audio_delivered_pct": _pct(got_audio, n * sent_audio),
            "cpu_ms_per_subscriber_second": round(per_sub_second, 3),
            "subscribers_per_core": round(1000 / per_sub_second, 1) if per_sub_second else None,
            "process_cpu_pct": round(cpu_ms / window / 10, 1),
            "other_threads_cpu_ms_per_subscriber_second": round(
                (threads1 - threads0) * 1000 / (n * window), 3
            ),
            "process_kernel_share_pct": round(100 * (sys1 - sys0) * 1000 / cpu_ms, 1)
            if cpu_ms
            else None,
            "loadgen_cpu_pct": round((lg_cpu1 - lg_cpu0) / window * 100, 1),
            "loadgen_stalls": len(stalls),
            "loadgen_stall_max_ms": max(stalls, default=0.0),
            "latency_p50_ms": _percentile(latencies, 50),
            "latency_p95_ms": _percentile(latencies, 95),
            "latency_samples": len(latencies),
            "rss_mb": round(rss_after, 1),
            "rss_mb_per_subscriber": round(max(0.0, rss_after - rss_before) / n, 3),
            "failures": self.failures[:5],
            "video_delivered_pct_min": min(spread) if spread else None,
            "video_delivered_pct_max": max(spread) if spread else None,
            "video_delivered_pct_by_subscriber": per_subscriber,
            **(rung_summary(links, self.ids, m0, m1) if links is not None else {}),
            **({"publisher": "simulcast", "layers": layer_summary(
                self.ids, self.preferred, heights,
                [b - a for a, b in zip(video0, video1, strict=True)],
                [b - a for a, b in zip(audio0, audio1, strict=True)],
                sent_video, _packets_per_frame(layer_sent0, layer_sent1), cpu_ms, window,
            )} if self.simulcast else {"publisher": "clip"}),
            **({"estimate_kbps_by_subscriber": [
                round(stats[pid]["estimate_bps"] / 1000) if pid in stats else None
                for pid in self.ids
            ]} if links is not None else {}),
        }


def rung_summary(
    links: dict[str, list[dict[str, Any]]], ids: list[str], start: float, end: float
) -> dict[str, Any]:
    """What the adaptation did to each subscriber, from its `link` events: how many ended the
    window on each rung, how many rung switches fell in the window, and for each subscriber
    that was ever below `full` (or paused), its switches as `rung/reason@seconds` (from the
    window's start; negative before it)."""
    final: dict[str, int] = {}
    switches = 0
    stepped: dict[str, list[str]] = {}
    for pid in ids:
        events = [e for e in links.get(pid, []) if e["at"] <= end]
        rung = str(events[-1]["rung"]) if events else "none"
        final[rung] = final.get(rung, 0) + 1
        switches += sum(1 for e in events if e["at"] >= start)
        if any(e["rung"] != "full" or e.get("paused") for e in events):
            stepped[pid] = [
                f"{e['rung']}/{e['reason']}@{e['at'] - start:+.1f}"
                f"({e['estimate_kbps']:.0f}k,{e['loss_pct']:.1f}%,{e['rtt_ms']:.0f}ms)"
                for e in events
            ][-8:]
    return {"rungs_final": final, "rung_switches": switches, "stepped_down": stepped}


def adaptation_order(mode: str, rounds: int) -> list[bool]:
    """The relay's measurements, adaptation on (True) or off, in the order they run: `both`
    alternates, on-off then off-on (ABBA), so a machine that gets busier or quieter during the
    run weighs on both alike."""
    if mode != "both":
        return [mode == "on"] * rounds
    order: list[bool] = []
    for i in range(rounds):
        order += [True, False] if i % 2 == 0 else [False, True]
    return order


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose CPU per subscriber-second is the median (the lower middle one of an even
    count), so the figures reported together come from one measurement."""
    ordered = sorted(runs, key=lambda r: r["cpu_ms_per_subscriber_second"])
    return ordered[(len(ordered) - 1) // 2]


COMPARED = (
    "cpu_ms_per_subscriber_second", "delivered_pct", "video_delivered_pct",
    "video_delivered_pct_min", "other_threads_cpu_ms_per_subscriber_second",
    "loadgen_stalls", "loadgen_stall_max_ms",
)
"""The figures `compare_adaptation` reports for each run and as medians."""


def step_downs(stepped: dict[str, list[str]]) -> dict[str, int]:
    """How many switches of `rung_summary`'s `stepped_down` went to each `rung/reason`
    (starts left out): why subscribers left `full`, in one line per run."""
    counts: dict[str, int] = {}
    for switches in stepped.values():
        for switch in switches:
            key = switch.split("@", 1)[0]
            if not key.endswith("/start"):
                counts[key] = counts.get(key, 0) + 1
    return counts


def compare_adaptation(
    on: list[dict[str, Any]], off: list[dict[str, Any]]
) -> dict[str, Any]:
    """The figures of `--adaptation both`: each side's medians, every run's figures, and the
    on/off ratio of the median CPU per subscriber-second (1.0: adaptation costs nothing)."""

    def medians(runs: list[dict[str, Any]]) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for key in COMPARED:
            values = [r[key] for r in runs if r.get(key) is not None]
            out[key] = round(statistics.median(values), 3) if values else None
        return out

    on_m, off_m = medians(on), medians(off)
    layers = (
        {"layers_on": median_run(on)["layers"], "layers_off": median_run(off)["layers"]}
        if on and off and "layers" in on[0] and "layers" in off[0]
        else {}
    )
    on_cpu, off_cpu = on_m["cpu_ms_per_subscriber_second"], off_m["cpu_ms_per_subscriber_second"]
    return {
        "adaptation": "both",
        "adaptation_on": on_m,
        "adaptation_off": off_m,
        "adaptation_runs": [
            {"adaptation": r["adaptation"], **{k: r.get(k) for k in COMPARED},
             "rungs_final": r.get("rungs_final"), "rung_switches": r.get("rung_switches"),
             "step_downs": step_downs(r.get("stepped_down") or {}),
             **({"layers": r["layers"]} if "layers" in r else {})}
            for r in sorted(on + off, key=lambda r: r["started_at"])
        ],
        "on_off_cpu_ratio": round(on_cpu / off_cpu, 3) if on_cpu and off_cpu else None,
        **layers,
    }


def _pct(part: int, whole: int) -> float | None:
    return round(min(100.0, 100.0 * part / whole), 2) if whole else None


def _percentile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 2)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 2)


async def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


Progress = Callable[[str], None]


def _prepare_profile_dir(path: str) -> str:
    directory = Path(path).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    return str(directory)


def _progress(message: str) -> None:
    sys.stderr.write(f"[bench relay] {message}\n")
    sys.stderr.flush()


async def _with_loadgens(
    count: int, remb: bool, body: Callable[[list[Process]], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    loadgens = [
        await Process.spawn(loadgen_main, "127.0.0.1", 3, remb, on_event=lambda e: None)
        for _ in range(count)
    ]
    try:
        return await body(loadgens)
    finally:
        await asyncio.gather(*(lg.stop() for lg in loadgens), return_exceptions=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure the relay (adaptation on, off, or both interleaved), then aiortc's own path,
    and compare."""
    progress: Progress = _progress
    progress("preparing the clips (encoded once, then cached)")
    load_clip("vp8")
    load_clip("opus")
    profile_dir = _prepare_profile_dir(args.profile) if args.profile else None
    if profile_dir:
        os.environ[PROFILE_ENV] = profile_dir

    simulcast = getattr(args, "publisher", "clip") == "simulcast"
    mix = layer_mix(getattr(args, "layer_mix", "q,h,f")) if simulcast else None
    if simulcast:
        progress("preparing the simulcast layers' clips (encoded once, then cached)")
        SimulcastPublisher.prepare()

    async def relay_phase(loadgens: list[Process], adaptation: bool) -> dict[str, Any]:
        measurement = Measurement(loadgens, args.subscribers, mix)
        system = RelayUnderTest(measurement.on_offer, adaptation)
        await system.start()
        try:
            progress(
                f"relay worker pid={system.pid}: {args.subscribers} subscribers, adaptation"
                f" {'on' if adaptation else 'off'}"
            )
            result = await measurement.run(system, args.duration, args.warmup, progress)
            result["adaptation"] = "on" if adaptation else "off"
            return result
        finally:
            await system.close()

    async def baseline_phase(loadgens: list[Process]) -> dict[str, Any]:
        measurement = Measurement(loadgens, args.baseline_subscribers)  # aiortc: one layer
        system = BaselineUnderTest(measurement.on_offer)
        await system.start()
        try:
            progress(f"aiortc MediaRelay baseline: {args.baseline_subscribers} subscribers")
            return await measurement.run(system, args.baseline_duration, args.warmup, progress)
        finally:
            await system.close()

    mode = getattr(args, "adaptation", "on")
    order = adaptation_order(mode, max(1, getattr(args, "rounds", 1)))
    runs: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    try:
        for adaptation in order:
            runs[adaptation].append(
                await _with_loadgens(
                    args.loadgens, args.remb, functools.partial(relay_phase, adaptation=adaptation)
                )
            )
    finally:
        os.environ.pop(PROFILE_ENV, None)
    relay = median_run(runs[True] or runs[False])
    result: dict[str, Any] = dict(relay)
    if mode == "both":
        result.update(compare_adaptation(runs[True], runs[False]))
    result["valid"] = (relay["delivered_pct"] or 0) >= MIN_DELIVERED_PCT
    if not result["valid"]:
        progress(
            f"delivery {relay['delivered_pct']}% < {MIN_DELIVERED_PCT}%: the load generators or"
            " the machine could not keep up; the figure is not valid, try fewer subscribers"
        )
    if not args.no_baseline:
        baseline = await _with_loadgens(1, args.remb, baseline_phase)
        result.update(
            {
                "baseline_subscribers": baseline["subscribers"],
                "baseline_delivered_pct": baseline["delivered_pct"],
                "baseline_cpu_ms_per_subscriber_second": baseline["cpu_ms_per_subscriber_second"],
                "baseline_subscribers_per_core": baseline["subscribers_per_core"],
                "baseline_latency_p95_ms": baseline["latency_p95_ms"],
                "baseline_rss_mb_per_subscriber": baseline["rss_mb_per_subscriber"],
                "ratio": round(
                    baseline["cpu_ms_per_subscriber_second"]
                    / relay["cpu_ms_per_subscriber_second"],
                    1,
                )
                if relay["cpu_ms_per_subscriber_second"]
                else None,
            }
        )
    result["clip"] = {
        "video": "VP8 640x360 30 fps",
        "video_kbps": round(load_clip("vp8").bitrate / 1000),
    } if not simulcast else {
        "video": "VP8 simulcast q/h/f 320x180, 640x360, 1280x720 30 fps L1T3",
        "video_kbps": SimulcastPublisher.layer_kbps(),
        "layer_mix": mix,
    }
    if profile_dir:
        result["profile_dir"] = profile_dir
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__)
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
