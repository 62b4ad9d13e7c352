"""The figures of `tongxin bench load` from its participants' results (pure functions): join
to first frame by percentile, step and role, CPU per participant-second per node, video
delivered, errors by kind."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def percentile(values: Sequence[float], q: int) -> float | None:
    """The q-th percentile (inclusive method); None without values."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(sorted(values), n=100, method="inclusive")[q - 1]


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
    cpu_wait_share: dict[str, float | None] = field(default_factory=dict)
    """Of the time the nodes' (and load generators') processes wanted a CPU in the window,
    the share they waited for one: high means the machine set the pace."""

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
            "cpu_wait_share": self.cpu_wait_share,
            "errors": dict(sorted(errors.items())),
            "error_count": sum(errors.values()),
        }


def wait_share(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    """Runqueue wait over (run + wait) between two `schedstat` readings (None: no change)."""
    run, wait = after[0] - before[0], after[1] - before[1]
    return round(wait / (run + wait), 2) if run + wait > 0 else None


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
