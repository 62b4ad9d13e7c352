"""`tongxin bench weaklink`: what a classroom behind a weak link sees and hears, with the
relay's bandwidth adaptation on and off, side by side.

One run per (profile, adaptation): a weak-link lab (`bench.lab.netlab`) is opened; a real node
(`tongxin serve --demo --adaptation on|off`, the demo class) runs in the lab's server
namespace; the teacher joins there through the demo teacher link and publishes camera +
screen + mic (headless Chromium: VP8 with L1T3 temporal layers and Opus, the fake camera
playing a y4m clip with motion; or an aiortc client playing pre-encoded clips); the classroom
joins through its link from the client namespace, behind the impaired link (Chromium, QoE
from its getStats every 250 ms; or an aiortc receiver counting frames). Once the classroom
receives the teacher's camera, the profile is played and the window measured; QoE is computed
by `bench.lab.qoe`. The steady profiles are impaired from the window's start (the cap "drops" at
0 s); flap and drop run good for 15 s first.

    tongxin bench weaklink --profile all                   # the table
    tongxin bench weaklink --json --profile weak --duration 15 --adaptation on \\
        --publisher aiortc --subscriber aiortc
    tongxin bench weaklink --down-kbps 300 --up-kbps 200 --loss-pct 2 --duration 40

`--path direct|both` measures a direct Chromium-to-Chromium call (no relay, `bench.lab.direct`)
on the same link, after the relay's run; `--sweep` runs steady links over a grid of rates x
losses instead of the profiles, one fresh lab per (cell, path), and prints per cell the figures
and the verdict of `bench.lab.sweep` (`--heatmap PNG` draws them; `--from-json` shows a saved
sweep again):

    tongxin bench weaklink --sweep --rates 200,500,1000,2000 --losses 0,3,6 --path both \
        --duration 25 --heatmap test-artifacts/weaklink-sweep.png

Needs root, iproute2, nftables (and /usr/bin/chromium for the browsers).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.lab import qoe, sweep
from bench.lab.linkprofile import GOOD, Profile, custom_profile, drop_profile, flap_profile
from bench.lab.netlab import SERVER_IP, Side, WeakLink, lab_available
from bench.processes import node_env, stop_popen

ROOT = Path(__file__).resolve().parents[1]
PORT = 8080
ORIGIN = f"http://{SERVER_IP}:{PORT}"
NODE_START_TIMEOUT_S = 60.0
RECEIVING_TIMEOUT_S = 60.0
STEADY_DURATION_S = 45.0
CHANGE_AT_S = 15.0
"""When flap and drop leave the good link."""
AFTER_CHANGE_S = 20.0
"""How long flap and drop are measured after their last change."""
BASELINE_S = 5.0
"""Seconds before a drop whose frame rate and height are 'full' for recovery."""
TEACHER_LINK = "教师"
CLASSROOM_LINK = "教学点 1 "
LINK_LINE = re.compile(r"^\s+(\S.*?)\s{2,}(https?://\S+/join/\S+)\s*$")
NOTICE_MOST_PCT = 80
"""very-weak: a camera paused with the notice for this share of the window counts as 'audio
only with the notice' even when the window ends during a probe of the low rung."""
STEADY = ("good", "village-4g", "weak", "very-weak")
PROFILE_NAMES = (*STEADY, "flap", "drop")
MODES = {"on": ("on",), "off": ("off",), "both": ("on", "off")}
SWEEP_DURATION_S = 25.0
"""Measured seconds per sweep cell and path."""
SWEEP_SETTLE_S = 5.0
"""Seconds on a sweep cell's link before its window: the figures are of the steady state (how
fast adaptation happens is the flap profile's)."""


def bench_profiles() -> dict[str, Profile]:
    """The lab's profiles, flap and drop changing at CHANGE_AT_S (good 15 s first)."""
    return {
        "good": custom_profile(10_000, 10_000, 0.0, name="good"),
        "village-4g": custom_profile(2_000, 1_000, 1.0, name="village-4g"),
        "weak": custom_profile(500, 256, 3.0, name="weak"),
        "very-weak": custom_profile(200, 128, 5.0, name="very-weak"),
        "flap": flap_profile(after_s=CHANGE_AT_S, low_kbps=150.0, low_for_s=20.0),
        "drop": drop_profile(after_s=CHANGE_AT_S, cut_for_s=5.0),
    }


def default_duration(profile: Profile) -> float:
    """Steady links: 45 s; scheduled ones: until 20 s after their last change."""
    if profile.schedule:
        return profile.settled_after_s + AFTER_CHANGE_S
    return STEADY_DURATION_S


@dataclass(frozen=True, slots=True)
class Timeline:
    """When, in seconds from the window's start, the link got worse and better again."""

    drop_at: float | None
    lift_at: float | None
    cut: bool


def timeline(profile: Profile) -> Timeline:
    """The drop and lift of a profile: a steady impaired link drops at 0 and never lifts."""
    if not profile.schedule:
        impaired = profile.state != GOOD and (
            profile.state.down_kbps is not None or profile.state.down_loss_pct > 0
        )
        return Timeline(0.0 if impaired and profile.name != "good" else None, None, False)
    drop_at, worse = profile.schedule[0]
    lift_at = profile.schedule[1][0] if len(profile.schedule) > 1 else None
    return Timeline(drop_at, lift_at, worse.cut)


# --- QoE of one run (pure) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """What the classroom saw, as counters over wall-clock time."""

    camera_frames: list[qoe.Point]
    camera_heights: list[qoe.Point]
    video_bytes: list[qoe.Point]
    """All video (camera + screen), cumulative bytes."""
    screen_frames: list[qoe.Point]
    audio_received: list[qoe.Point]
    """Browser: totalSamplesReceived; aiortc: audio frames."""
    audio_concealed: list[qoe.Point] | None
    """Browser: concealedSamples; aiortc: None (computed from frame counts)."""
    chrome_freezes: list[qoe.Point] | None
    chrome_freeze_s: list[qoe.Point] | None
    connected_at_end: bool
    camera_bytes: list[qoe.Point] = field(default_factory=list)
    """The camera's own cumulative bytes (empty when unknown)."""
    camera_widths: list[qoe.Point] = field(default_factory=list)


def _series(rows: Sequence[dict[str, Any]], source: str, field: str) -> list[qoe.Point]:
    return [
        (float(r["t"]), float(r["tracks"][source][field]))
        for r in rows
        if field in r.get("tracks", {}).get(source, {})
    ]


def _summed(a: list[qoe.Point], b: list[qoe.Point]) -> list[qoe.Point]:
    times = sorted({t for t, _ in a} | {t for t, _ in b})
    return [(t, qoe.value_at(a, t) + qoe.value_at(b, t)) for t in times]


def received_from_browser(samples: Sequence[dict[str, Any]]) -> Received:
    """Counters from the classroom page's getStats samples (see weaklink_browser)."""

    def counter(source: str, field: str) -> list[qoe.Point]:
        return qoe.monotonic(_series(samples, source, field))

    last = samples[-1] if samples else {}
    return Received(
        camera_frames=counter("camera", "frames"),
        camera_heights=_series(samples, "camera", "height"),
        video_bytes=_summed(counter("camera", "bytes"), counter("screen", "bytes")),
        screen_frames=counter("screen", "frames"),
        audio_received=counter("mic", "samples"),
        audio_concealed=counter("mic", "concealed"),
        chrome_freezes=counter("camera", "freezes"),
        chrome_freeze_s=counter("camera", "freeze_s"),
        connected_at_end=last.get("pc") == "connected",
        camera_bytes=counter("camera", "bytes"),
        camera_widths=_series(samples, "camera", "width"),
    )


def received_from_peer(result: dict[str, Any]) -> Received:
    """Counters from the aiortc subscriber's result line (see weaklink_peer)."""
    tracks = result.get("tracks", {})

    def counter(source: str, field: str) -> list[qoe.Point]:
        return [(float(t), float(v)) for t, v in tracks.get(source, {}).get(field, [])]

    return Received(
        camera_frames=counter("camera", "frames"),
        camera_heights=[],
        video_bytes=_summed(counter("camera", "bytes"), counter("screen", "bytes")),
        screen_frames=counter("screen", "frames"),
        audio_received=counter("mic", "frames"),
        audio_concealed=None,
        chrome_freezes=None,
        chrome_freeze_s=None,
        connected_at_end=result.get("state", {}).get("down") == "connected",
        camera_bytes=counter("camera", "bytes"),
    )


def heard_audio(got: Received) -> list[qoe.Point]:
    """Audio that really arrived: a browser's samples received minus those concealed (its
    total grows while it conceals), or the aiortc receiver's frame count."""
    if got.audio_concealed is None:
        return got.audio_received
    times = sorted({t for t, _ in got.audio_received} | {t for t, _ in got.audio_concealed})
    return [
        (t, qoe.value_at(got.audio_received, t) - qoe.value_at(got.audio_concealed, t))
        for t in times
    ]


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _height(heights: list[qoe.Point], start: float, end: float) -> int | None:
    seen = [v for t, v in heights if start <= t <= end and v > 0]
    return int(statistics.median(seen)) if seen else None


def frames_about(links: Sequence[dict[str, Any]], me: str) -> list[dict[str, Any]]:
    """The adaptation frames about `me` (every frame when `me` is empty; a frame without a
    participant is about whoever receives it)."""
    return [f for f in links if not me or f.get("participant") in (me, None)]


def says_camera_paused(frame: dict[str, Any]) -> bool:
    """Whether an adaptation frame says a camera is paused (the page shows the notice)."""
    return any(str(t).endswith(":camera") for t in frame.get("paused") or ())


def rung_events(
    links: Sequence[dict[str, Any]], me: str, start: float
) -> list[tuple[float, str]]:
    """(seconds from `start`, rung) of the adaptation frames about `me`, changes only."""
    events: list[tuple[float, str]] = []
    for frame in frames_about(links, me):
        rung = str(frame.get("rung", ""))
        if not events or events[-1][1] != rung:
            events.append((round(float(frame["t"]) - start, 2), rung))
    return events


def camera_paused_at_end(links: Sequence[dict[str, Any]], me: str) -> bool:
    """Whether the last adaptation frame about `me` says a camera is paused for it."""
    mine = frames_about(links, me)
    return bool(mine) and says_camera_paused(mine[-1])


def camera_paused_spans(
    links: Sequence[dict[str, Any]], me: str, start: float, end: float
) -> list[tuple[float, float]]:
    """The stretches of [start, end] (wall clock) during which the adaptation frames about
    `me` said a camera was paused for it (the page showing the notice), each frame holding
    until the next."""
    spans: list[tuple[float, float]] = []
    since: float | None = None  # paused since then
    for frame in sorted(frames_about(links, me), key=lambda f: float(f["t"])):
        at = min(max(float(frame["t"]), start), end)
        paused = says_camera_paused(frame)
        if paused and since is None:
            since = at
        elif not paused and since is not None:
            spans.append((since, at))
            since = None
    if since is not None:
        spans.append((since, end))
    return spans


def spans_share(spans: Sequence[tuple[float, float]], start: float, end: float) -> float:
    """The share of [start, end] that `spans` (within it, not overlapping) cover."""
    if end <= start:
        return 0.0
    return sum(b - a for a, b in spans) / (end - start)


def camera_paused_share(
    links: Sequence[dict[str, Any]], me: str, start: float, end: float
) -> float:
    """The share of [start, end] covered by `camera_paused_spans`."""
    return spans_share(camera_paused_spans(links, me, start, end), start, end)


def first_event(
    events: Sequence[tuple[float, str]], after: float, want: Callable[[str], bool]
) -> float | None:
    """Seconds from `after` to the first event at or after it whose rung satisfies `want`."""
    for at, rung in events:
        if at >= after and want(rung):
            return round(at - after, 2)
    return None


def audio_gaps_and_concealed(got: Received, start: float, end: float) -> tuple[int, float]:
    """(audio gaps, share of [start, end] concealed): from a browser's concealment counters,
    or from the aiortc receiver's frame count."""
    if got.audio_concealed is not None:
        return qoe.audio_from_concealment(got.audio_received, got.audio_concealed, start, end)
    return qoe.audio_from_frame_counts(got.audio_received, start, end)


def summarize(
    got: Received,
    start: float,
    end: float,
    line: Timeline,
    events: Sequence[tuple[float, str]] = (),
    notices: Sequence[str] = (),
    camera_paused: Sequence[tuple[float, float]] = (),
) -> dict[str, Any]:
    """The QoE figures of one run over the window [start, end] (wall-clock seconds);
    `camera_paused` are the stretches during which the page said the camera was paused
    (`camera_paused_spans`)."""
    window = end - start
    frozen = qoe.freezes(got.camera_frames, start, end)
    gaps, concealed = audio_gaps_and_concealed(got, start, end)
    result: dict[str, Any] = {
        "window_s": round(window, 1),
        "video_kbps": round(qoe.rate_per_s(got.video_bytes, start, end) * 8 / 1000),
        "camera_kbps": round(qoe.rate_per_s(got.camera_bytes, start, end) * 8 / 1000),
        "fps": _round(qoe.rate_per_s(got.camera_frames, start, end)),
        "screen_fps": _round(qoe.rate_per_s(got.screen_frames, start, end)),
        "height": _height(got.camera_heights, start, end),
        "freezes": len(frozen),
        "freeze_s": round(sum(f.seconds for f in frozen), 1),
        "audio_gaps": gaps,
        "audio_concealed_pct": round(100 * concealed, 1),
        "adapt_s": None,
        "video_back_s": None,
        "max_freeze_after_adapt_s": None,
        "recover_s": None,
        "resume_s": None,
        "rung_change_s": None,
        "rung_full_again_s": None,
        "rungs": [list(e) for e in events],
        "notices": sorted(set(notices)),
    }
    if got.chrome_freezes is not None and got.chrome_freeze_s is not None:
        result["chrome_freezes"] = int(qoe.rate_per_s(got.chrome_freezes, start, end) * window)
        result["chrome_freeze_s"] = round(
            qoe.rate_per_s(got.chrome_freeze_s, start, end) * window, 1
        )
    if line.drop_at is not None:
        drop = start + line.drop_at
        until = start + line.lift_at if line.lift_at is not None else end
        if line.cut:
            back = start + (line.lift_at or 0.0)
            result["resume_s"] = _round(qoe.resumed_after(heard_audio(got), back, end), 2)
            result["video_resume_s"] = _round(qoe.resumed_after(got.camera_frames, back, end), 2)
        else:
            adapt = qoe.adapted_after(
                got.camera_frames,
                lambda a, b: audio_gaps_and_concealed(got, a, b)[1],
                camera_paused,
                drop,
                until,
            )
            result["adapt_s"] = _round(adapt, 2)
            video_back = qoe.video_back_after(got.camera_frames, drop, until)
            result["video_back_s"] = _round(video_back, 2)
            if video_back is not None:  # once the video adapted: its freezes
                result["max_freeze_after_adapt_s"] = round(
                    qoe.max_freeze_after(
                        qoe.freezes(got.camera_frames, drop, until), drop + video_back
                    ),
                    1,
                )
            result["rung_change_s"] = first_event(events, line.drop_at, lambda r: r != "full")
        if line.lift_at is not None and not line.cut:
            lift = start + line.lift_at
            base_fps = qoe.rate_per_s(got.camera_frames, drop - BASELINE_S, drop)
            base_height = _height(got.camera_heights, drop - BASELINE_S, drop) or 0
            result["before_drop"] = {"fps": round(base_fps, 1), "height": base_height or None}
            result["recover_s"] = _round(
                qoe.recovered_after(
                    got.camera_frames, got.camera_heights, lift, end, base_fps, base_height
                ),
                2,
            )
            result["rung_full_again_s"] = first_event(events, line.lift_at, lambda r: r == "full")
    video_on = qoe.flowing_at_end(got.camera_frames, end)
    audio_on = qoe.flowing_at_end(heard_audio(got), end)
    result["video_at_end"] = video_on
    result["audio_at_end"] = audio_on
    # Survived: still connected and hearing the teacher at the end (video is QoE, above).
    result["survived"] = bool(got.connected_at_end and audio_on)
    return result


def shifted(line: Timeline, settle_s: float) -> Timeline:
    """The timeline of a run whose window starts `settle_s` after the profile was applied."""
    if not settle_s:
        return line
    return Timeline(
        None if line.drop_at is None else line.drop_at - settle_s,
        None if line.lift_at is None else line.lift_at - settle_s,
        line.cut,
    )


def camera_figures(
    got: Received, start: float, end: float, paused: Sequence[tuple[float, float]] = ()
) -> dict[str, Any]:
    """The sweep's figures of the camera over [start, end]: its picture size, the longest
    freeze, the frame rate and longest freeze outside the `paused` spans, and the verdict of
    the issue's rule (`bench.lab.sweep.verdict`)."""
    frozen = qoe.freezes(got.camera_frames, start, end)
    free = sweep.unpaused(start, end, paused)
    free_s = sum(b - a for a, b in free)
    free_fps = sweep.rate_over(got.camera_frames, free)
    longest_free = sweep.longest_unpaused(frozen, paused)
    share = spans_share(
        [(max(a, start), min(b, end)) for a, b in paused if min(b, end) > max(a, start)],
        start, end,
    )  # fmt: skip
    width, height = _height(got.camera_widths, start, end), _height(got.camera_heights, start, end)
    mark, why = sweep.verdict(free_fps, longest_free, share, free_s)
    return {
        "width": width,
        "resolution": f"{width}x{height}" if width and height else None,
        "max_freeze_s": round(max((f.seconds for f in frozen), default=0.0), 1),
        "unpaused_fps": _round(free_fps),
        "max_unpaused_freeze_s": round(longest_free, 1),
        "verdict": mark,
        "why": why,
    }


# --- goals and the table (pure) ---------------------------------------------------------------


def goals(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lab's goals (docs/measuring.md), checked on the adaptation-on runs:
    [{profile, goal, met, value}]."""
    checks: list[dict[str, Any]] = []

    def check(profile: str, goal: str, met: bool | None, value: Any) -> None:
        checks.append({"profile": profile, "goal": goal, "met": met, "value": value})

    for run in runs:
        if run.get("adaptation") != "on" or "error" in run:
            continue
        name = run["profile"]
        if name == "weak":
            check(name, "audio concealed <= 1%", run["audio_concealed_pct"] <= 1.0,
                  run["audio_concealed_pct"])
            check(name, "video >= 10 fps", run["fps"] >= 10, run["fps"])
            worst = run["max_freeze_after_adapt_s"]
            check(name, "no freeze > 1 s once adapted",
                  None if worst is None else worst <= 1.0, worst)
        elif name == "very-weak":
            check(name, "audio concealed <= 2%", run["audio_concealed_pct"] <= 2.0,
                  run["audio_concealed_pct"])
            # the camera paused with the page saying so: all video (`audio_only`, the
            # weak_network banner) or the camera alone while the slides go on (`paused`,
            # the camera_paused banner), at the end or for most of the window (a probe of
            # the low rung may be running at the end)
            audio_only = bool(run["rungs"]) and run["rungs"][-1][1] == "audio_only"
            mostly = run.get("camera_paused_pct", 0) >= NOTICE_MOST_PCT
            noticed = (
                "weak_network" in run["notices"] or audio_only or run["camera_paused"] or mostly
            )
            check(name, "video >= 5 fps or audio only with the notice",
                  run["fps"] >= 5 or noticed, run["fps"])
        elif name == "flap":
            # never within the window is a miss, not a lack of data. Adapted: audio clear
            # with the camera playing or its pause shown (the very-weak goal's state): the
            # dip (150k) is less than audio and the low rung (110k) together
            adapt, back = run["adapt_s"], run["recover_s"]
            check(name, "adapted within 3 s of the drop", adapt is not None and adapt <= 3.0,
                  adapt)
            check(name, "back to full within 10 s of the recovery",
                  back is not None and back <= 10.0, back)
        elif name == "drop":
            resumed = run["resume_s"]
            check(name, "resumes within 5 s of the link's return, no reload",
                  resumed is not None and resumed <= 5.0 and run["survived"], resumed)
    return checks


def _camera_streams(sends: dict[str, Any]) -> list[dict[str, Any]]:
    """The teacher's camera streams (the first video m-line): one, or one per simulcast
    layer (`video-<mid>:<rid>`), lowest resolution first."""
    mids = sorted({k[6:].split(":")[0] for k in sends if k.startswith("video-")},
                  key=lambda mid: int(mid or 0))
    if not mids:
        return []
    camera = [v for k, v in sends.items() if k.startswith("video-")
              and k[6:].split(":")[0] == mids[0]]
    return sorted(camera, key=lambda v: int(v.get("height") or 0))


def teacher_camera(sends: dict[str, Any]) -> str | None:
    """The teacher browser's camera as sent at the end, e.g. `320x180@3 L1T3`, or each
    simulcast layer's, e.g. `320x180@15 + 640x360@30 L1T3`."""
    streams = _camera_streams(sends)
    if not streams:
        return None
    text = " + ".join(
        f"{cam.get('width', 0)}x{cam.get('height', 0)}@{cam.get('fps', 0)}" for cam in streams
    )
    scalability = streams[-1].get("scalability")
    return f"{text} {scalability}" if scalability else text


def teacher_limited(sends: dict[str, Any]) -> str | None:
    """What limits the teacher browser's camera at the end (`bandwidth`, `cpu`, `none`; its top
    layer's when simulcast), and its send estimate, e.g. `bandwidth, est 420k`."""
    streams = _camera_streams(sends)
    if not streams:
        return None
    reason = str(streams[-1].get("limited") or "?")
    estimate = sends.get("estimate_kbps")
    return f"{reason}, est {estimate}k" if estimate is not None else reason


COLUMNS = (
    ("profile", "profile", 10),
    ("adaptation", "adapt", 6),
    ("video_kbps", "kbit/s", 6),
    ("fps", "fps", 5),
    ("height", "height", 6),
    ("freezes", "freezes", 7),
    ("freeze_s", "frozen s", 8),
    ("audio_gaps", "a.gaps", 6),
    ("audio_concealed_pct", "concl %", 7),
    ("rung_change_s", "rung s", 6),
    ("adapt_s", "adapt s", 7),
    ("video_back_s", "video s", 7),
    ("recover_s", "recov s", 7),
    ("resume_s", "resume s", 8),
    ("video_resume_s", "v.resume", 8),
    ("camera_paused_pct", "paused %", 8),
    ("survived", "survived", 8),
    ("teacher_camera", "teacher sends", 16),
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return str(value)


def format_table(runs: Sequence[dict[str, Any]], checks: Sequence[dict[str, Any]] = ()) -> str:
    """The runs as a fixed-width table (adaptation on and off of a profile next to each
    other), then the goals."""
    header = "  ".join(f"{title:>{width}}" for _key, title, width in COLUMNS)
    lines = [header, "-" * len(header)]
    for run in runs:
        if "error" in run:
            lines.append(f"{run['profile']:>10}  {run['adaptation']:>5}  error: {run['error']}")
            continue
        lines.append(
            "  ".join(f"{_cell(run.get(key)):>{width}}" for key, _title, width in COLUMNS)
        )
    for c in checks:
        mark = {True: "met", False: "NOT met", None: "n/a"}[c["met"]]
        lines.append(f"goal {c['profile']}: {c['goal']}: {mark} ({_cell(c['value'])})")
    return "\n".join(lines)


# --- the run (I/O) ----------------------------------------------------------------------------


def _progress(message: str) -> None:
    sys.stderr.write(f"[bench weaklink {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


class Node:
    """`tongxin serve --demo` in the lab's server namespace; its demo join links."""

    def __init__(
        self,
        lab: WeakLink,
        adaptation: str,
        log_dir: Path,
        *,
        trace: bool = False,
        profile: str = "",
    ) -> None:
        self.lab = lab
        self.adaptation = adaptation
        self.trace = trace
        """Run the node at DEBUG: every adaptation decision is in its log (`--trace`)."""
        self.log_path = log_dir / f"node-{profile}-{adaptation}.log"
        self.links: dict[str, str] = {}
        self.process: subprocess.Popen[str] | None = None

    async def start(self) -> None:
        env = node_env({"PYTHONUNBUFFERED": "1"})
        argv = [
            sys.executable, "-m", "signaling.cli", "serve", "--host", SERVER_IP,
            "--port", str(PORT), "--demo", "--media-workers", "1",
            "--adaptation", self.adaptation,
            *(("--log-level", "DEBUG") if self.trace else ()),
        ]  # fmt: skip
        with self.log_path.open("w", encoding="utf-8") as log:
            self.process = self.lab.popen(
                Side.SERVER, argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=log, text=True,
            )  # fmt: skip
        await asyncio.wait_for(asyncio.to_thread(self._read_banner), NODE_START_TIMEOUT_S)

    def _read_banner(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            match = LINK_LINE.match(line)
            if match:
                self.links[match.group(1)] = match.group(2)
            if "Ctrl+C" in line:
                return
        raise RuntimeError(f"tongxin serve exited: see {self.log_path}")

    def link(self, prefix: str) -> str:
        for name, url in self.links.items():
            if name.startswith(prefix):
                return url
        raise RuntimeError(f"no demo link {prefix!r} in {sorted(self.links)}")

    async def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        await asyncio.to_thread(stop_popen, process, 10.0, signal.SIGINT)


class PeerProcess:
    """A `bench.lab.peer` process inside a lab namespace, spoken to by JSON lines."""

    def __init__(self, lab: WeakLink, side: Side, role: str, link: str, log_dir: Path) -> None:
        with (log_dir / f"peer-{role}.log").open("a", encoding="utf-8") as log:
            self.process = lab.popen(
                side, [sys.executable, "-m", "bench.lab.peer", role, link],
                cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=log, text=True,
            )  # fmt: skip

    async def expect(self, event: str, timeout: float) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                with contextlib.suppress(json.JSONDecodeError):
                    record = json.loads(line)
                    if record.get("event") == event:
                        return dict(record)
            raise RuntimeError(f"the {event!r} line never came (peer exited)")

        return await asyncio.wait_for(asyncio.to_thread(read), timeout)

    async def stop(self, timeout: float = 30.0) -> dict[str, Any] | None:
        """Ask it to stop; its result line if it prints one."""
        with contextlib.suppress(OSError, ValueError):
            assert self.process.stdin is not None
            self.process.stdin.write("stop\n")
            self.process.stdin.close()
        with contextlib.suppress(Exception):
            return await self.expect("result", timeout)
        return None


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One measured run."""

    profile: Profile
    adaptation: str
    publisher: str
    subscriber: str
    duration_s: float
    save_dir: Path | None = None
    """Where to write the run's raw samples and events (`--save`)."""
    trace: bool = False
    """The node logs every adaptation decision (`--trace`; the log is under `logs`)."""
    screen: bool = True
    """The Chromium teacher shares its screen too (`--screen off`: camera and mic only, as in
    the Chrome-to-Chrome anchors in docs/measuring.md)."""
    path: str = "relay"
    """`relay` (through Tongxin) or `direct` (Chromium to Chromium, `bench.lab.direct`)."""
    settle_s: float = 0.0
    """Seconds between applying the profile and the window's start (the sweep's cells)."""
    join_shaped: bool = False
    """The link is the profile's from before anyone joins (`--join-shaped`: a classroom that
    joins on its village link); by default the browsers join on an unimpaired link and the
    profile is applied once the classroom receives (the link drops under a running call)."""


RECEIVING_JS = """(pausedOk) => {
  const w = window.__weaklink;
  const s = w && w.samples;
  const r = s && s[s.length - 1];
  if (r && r.tracks.camera && r.tracks.camera.frames) return true;
  if (!pausedOk || !r || !r.tracks.mic || !r.tracks.mic.samples) return false;
  return (w.links || []).some((f) => (f.paused || []).some((t) => String(t).endsWith(':camera')));
}"""
"""Whether the classroom receives: a camera frame decoded, or (`pausedOk`) audio played with
the relay saying the camera is paused for it."""


async def _wait_receiving_page(page: Any, within: float, paused_ok: bool = False) -> None:
    """Until the classroom receives (`RECEIVING_JS`); `paused_ok`: a classroom that joined on
    a link too weak for any picture (`--join-shaped`, 150 kbit/s with 6% loss) hears the
    class with its camera paused from the start, and is measured so."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await page.evaluate(RECEIVING_JS, paused_ok):
            return
        await asyncio.sleep(0.25)
    raise RuntimeError("the classroom received no camera frame")


async def _shape_for_join(lab: WeakLink, spec: RunSpec) -> None:
    """Before anyone joins: the profile's link if `spec.join_shaped` (see there)."""
    if spec.join_shaped:
        await asyncio.to_thread(lab.apply, spec.profile.state)


async def _measure_window(lab: WeakLink, spec: RunSpec) -> tuple[float, float, asyncio.Task[None]]:
    """Play the link's schedule, let it settle, wait the measured window: (start, end, the
    playing task, which the caller cancels when it is done). Relay and direct runs share it."""
    start = time.time()
    player = asyncio.create_task(lab.play(spec.profile))
    try:
        if spec.settle_s:
            await asyncio.sleep(spec.settle_s)
            start = time.time()
        await asyncio.sleep(spec.duration_s)
    except BaseException:
        await _stop_playing(player)
        raise
    return start, time.time(), player


async def _stop_playing(player: asyncio.Task[None] | None) -> None:
    """Stop the link schedule `_measure_window` started (if it did), whatever became of it."""
    if player is not None:
        player.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await player

async def run_once(spec: RunSpec, log_dir: Path) -> dict[str, Any]:
    """One (profile, adaptation) run: its QoE summary."""
    from playwright.async_api import async_playwright

    from bench.lab import browser as browser

    if spec.path == "direct":
        return await run_direct(spec, log_dir)
    head: dict[str, Any] = {
        "profile": spec.profile.name,
        "path": "relay",
        "adaptation": spec.adaptation,
        "publisher": spec.publisher,
        "subscriber": spec.subscriber,
    }
    async with WeakLink() as lab, async_playwright() as playwright:
        node = Node(lab, spec.adaptation, log_dir, trace=spec.trace, profile=spec.profile.name)
        browsers: list[Any] = []
        peers: list[PeerProcess] = []
        player: asyncio.Task[None] | None = None
        try:
            await _shape_for_join(lab, spec)
            await node.start()
            teacher_link, room_link = node.link(TEACHER_LINK), node.link(CLASSROOM_LINK)
            teacher_page: Any = None
            if spec.publisher == "chromium":
                camera = await asyncio.to_thread(browser.camera_clip)
                teacher_browser = await browser.launch_in(
                    playwright, lab.server_ns, ORIGIN, camera=camera
                )
                browsers.append(teacher_browser)
                _ctx, teacher_page = await browser.open_join(teacher_browser, teacher_link)
                teacher_id = await browser.participant_id(teacher_page)
                head["screen_shared"] = spec.screen and await browser.share_screen(teacher_page)
            else:
                publisher = PeerProcess(lab, Side.SERVER, "publish", teacher_link, log_dir)
                peers.append(publisher)
                teacher_id = str((await publisher.expect("joined", 60))["participant"])
            room_page: Any = None
            room_peer: PeerProcess | None = None
            if spec.subscriber == "chromium":
                room_browser = await browser.launch_in(playwright, lab.client_ns, ORIGIN)
                browsers.append(room_browser)
                _ctx, room_page = await browser.open_join(room_browser, room_link)
                room_id = await browser.participant_id(room_page)
                await browser.start_sampling(room_page, teacher_id)
                await _wait_receiving_page(room_page, RECEIVING_TIMEOUT_S, spec.join_shaped)
            else:
                room_peer = PeerProcess(lab, Side.CLIENT, "subscribe", room_link, log_dir)
                peers.append(room_peer)
                room_id = str((await room_peer.expect("joined", 60))["participant"])
                await room_peer.expect("receiving", RECEIVING_TIMEOUT_S)
            _progress(f"{spec.profile.name}/{spec.adaptation}: receiving; measuring"
                      f" {spec.duration_s:g} s")
            start, end, player = await _measure_window(lab, spec)
            if room_page is not None:
                data = await browser.collect(room_page)
                got = received_from_browser(data["samples"])
            else:
                assert room_peer is not None
                peer_result = await room_peer.stop()
                if peer_result is None:
                    raise RuntimeError("the aiortc classroom printed no result")
                data = peer_result
                got = received_from_peer(data)
            links, notices = data["links"], [n["code"] for n in data["notices"]]
            if spec.save_dir is not None:
                raw = {**head, "start": start, "end": end, "room": room_id, "raw": data}
                name = f"{spec.profile.name}-{spec.adaptation}.json"
                (spec.save_dir / name).write_text(json.dumps(raw), encoding="utf-8")
            if teacher_page is not None:
                head["teacher_sends"] = await browser.sender_stats(teacher_page)
                head["teacher_camera"] = teacher_camera(head["teacher_sends"])
            events = rung_events(links, room_id, start)
            paused = camera_paused_spans(links, room_id, start, end)
            line = shifted(timeline(spec.profile), spec.settle_s)
            summary = summarize(got, start, end, line, events, notices, paused)
            summary["camera_paused"] = camera_paused_at_end(links, room_id)
            summary["camera_paused_pct"] = round(100 * spans_share(paused, start, end))
            summary.update(camera_figures(got, start, end, paused))
            summary["mode"] = sweep.predominant_mode(events, end - start)
            summary["mode_end"] = events[-1][1] if events else None
            return {**head, **summary}
        finally:
            await _stop_playing(player)
            await asyncio.gather(*(p.stop(5.0) for p in peers), return_exceptions=True)
            await browser.close_quietly(*browsers)
            await node.stop()


async def run_direct(spec: RunSpec, log_dir: Path) -> dict[str, Any]:
    """One run of the direct call (`bench.lab.direct`) on `spec`'s link: its QoE summary,
    read from the classroom's getStats as the relay path's."""
    from playwright.async_api import async_playwright

    from bench.lab import browser as browser
    from bench.lab import direct as direct

    head: dict[str, Any] = {
        "profile": spec.profile.name,
        "path": "direct",
        "adaptation": "direct",
        "publisher": "chromium",
        "subscriber": "chromium",
    }
    async with WeakLink() as lab, async_playwright() as playwright:
        browsers: list[Any] = []
        player: asyncio.Task[None] | None = None
        try:
            await _shape_for_join(lab, spec)
            camera = await asyncio.to_thread(browser.camera_clip)
            extra = direct.CHROMIUM_DIRECT_ARGS
            teacher_browser = await browser.launch_in(
                playwright, lab.server_ns, ORIGIN, camera=camera, extra_args=extra
            )
            browsers.append(teacher_browser)
            room_browser = await browser.launch_in(
                playwright, lab.client_ns, ORIGIN, extra_args=extra
            )
            browsers.append(room_browser)
            _ctx, teacher_page = await direct.open_page(teacher_browser, ORIGIN, camera=True)
            _ctx, room_page = await direct.open_page(room_browser, ORIGIN, camera=True)
            await direct.connect(teacher_page, room_page, RECEIVING_TIMEOUT_S)
            await direct.start_sampling(room_page)
            await _wait_receiving_page(room_page, RECEIVING_TIMEOUT_S)
            head["codec"] = await direct.received_codec(room_page)
            _progress(f"{spec.profile.name}/direct: receiving; measuring {spec.duration_s:g} s")
            start, end, player = await _measure_window(lab, spec)
            data = await browser.collect(room_page)
            got = received_from_browser(data["samples"])
            if spec.save_dir is not None:
                raw = {**head, "start": start, "end": end, "raw": data}
                name = f"{spec.profile.name}-direct.json"
                (spec.save_dir / name).write_text(json.dumps(raw), encoding="utf-8")
            head["teacher_sends"] = await direct.sender_stats(teacher_page)
            head["teacher_camera"] = teacher_camera(head["teacher_sends"])
            line = shifted(timeline(spec.profile), spec.settle_s)
            summary = summarize(got, start, end, line)
            summary.update(camera_paused=False, camera_paused_pct=0, mode=None, mode_end=None)
            summary.update(camera_figures(got, start, end))
            return {**head, **summary}
        finally:
            await _stop_playing(player)
            await browser.close_quietly(*browsers)


def chosen_profiles(args: argparse.Namespace) -> list[Profile]:
    """The profiles named by --profile (repeatable, or `all`), or the custom link."""
    if args.down_kbps is not None or args.up_kbps is not None or args.loss_pct:
        return [custom_profile(args.down_kbps, args.up_kbps, args.loss_pct or 0.0)]
    names = args.profile or ["all"]
    known = bench_profiles()
    if "all" in names:
        return list(known.values())
    return [known[name] for name in dict.fromkeys(names)]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", action="append", choices=(*PROFILE_NAMES, "all"),
        help="link profile (repeatable; default all)",
    )  # fmt: skip
    parser.add_argument("--down-kbps", type=float, help="custom link: down cap, kbit/s")
    parser.add_argument("--up-kbps", type=float, help="custom link: up cap, kbit/s")
    parser.add_argument("--loss-pct", type=float, help="custom link: random loss both ways, %%")
    parser.add_argument(
        "--duration", type=float,
        help="measured seconds per run (default 45; flap and drop: 20 s after their last change)",
    )  # fmt: skip
    parser.add_argument("--publisher", choices=("chromium", "aiortc"), default="chromium")
    parser.add_argument("--subscriber", choices=("chromium", "aiortc"), default="chromium")
    parser.add_argument(
        "--adaptation", choices=tuple(MODES), default="both",
        help="the relay's adaptation (default both; a sweep runs one: on, unless off)",
    )  # fmt: skip
    parser.add_argument("--save", metavar="DIR", help="write each run's raw samples into DIR")
    parser.add_argument(
        "--screen", choices=("on", "off"),
        help="the Chromium teacher also shares its screen (default on; a sweep: off, as the"
        " direct call)",
    )  # fmt: skip
    parser.add_argument(
        "--path", choices=tuple(sweep.PATHS), default="relay",
        help="relay (through Tongxin), direct (Chromium to Chromium, no relay) or both, back"
        " to back on the same link (default relay)",
    )  # fmt: skip
    parser.add_argument(
        "--sweep", action="store_true",
        help="steady links over a grid of --rates x --losses instead of the profiles",
    )  # fmt: skip
    parser.add_argument(
        "--rates", default=",".join(map(str, sweep.DEFAULT_RATES)),
        help="sweep: down rates, kbit/s (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--losses", default=",".join(map(str, sweep.DEFAULT_LOSSES)),
        help="sweep: random loss both ways, %% (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--up-ratio", type=float,
        help="sweep: up rate as a share of the down rate (default min(down/2, 1000 kbit/s))",
    )  # fmt: skip
    parser.add_argument(
        "--settle", type=float, default=None,
        help=f"seconds on the link before the measured window (sweep default {SWEEP_SETTLE_S:g};"
        " a single run's window starts with the first frame unless given)",
    )  # fmt: skip
    parser.add_argument(
        "--from-json", metavar="JSON",
        help="sweep: no runs; the table, goals and --heatmap of a saved `--sweep --json` result",
    )  # fmt: skip
    parser.add_argument(
        "--heatmap", metavar="PNG",
        help="sweep: draw fps per cell (and relay/direct bitrate) into PNG (needs matplotlib)",
    )  # fmt: skip
    parser.add_argument(
        "--join-shaped", action="store_true",
        help="shape the link before anyone joins (a classroom joining on its village link);"
        " by default the link drops to the profile once the classroom receives",
    )  # fmt: skip
    parser.add_argument(
        "--trace", action="store_true",
        help="run the node at DEBUG: each adaptation decision is in its log (under `logs`)",
    )  # fmt: skip


def sweep_settle(args: argparse.Namespace) -> float:
    """Seconds a sweep's cell settles before its window: --settle, else `SWEEP_SETTLE_S`."""
    return max(0.0, SWEEP_SETTLE_S if args.settle is None else args.settle)


def sweep_grid(args: argparse.Namespace) -> list[sweep.Cell]:
    """The sweep's cells from --rates, --losses and --up-ratio (SystemExit if malformed)."""
    try:
        rates = sweep.parse_numbers(args.rates, what="--rates", lowest=1)
        losses = sweep.parse_numbers(args.losses, what="--losses", lowest=0, highest=100)
    except ValueError as exc:
        raise SystemExit(f"tongxin bench weaklink: {exc}") from None
    if args.up_ratio is not None and args.up_ratio <= 0:
        raise SystemExit("tongxin bench weaklink: --up-ratio must be > 0")
    return sweep.grid(rates, losses, args.up_ratio)


def sweep_cell(cell: sweep.Cell, run: dict[str, Any], path: str) -> dict[str, Any]:
    """A sweep row: the cell's link, the path and the run's figures the table shows."""
    head = {"cell": cell.name, "down_kbps": cell.down_kbps, "up_kbps": cell.up_kbps,
            "loss_pct": cell.loss_pct, "path": path}  # fmt: skip
    if "error" in run:
        return {**head, "error": run["error"], "retried": run.get("retried"), "survived": False}
    keys = ("video_kbps", "camera_kbps", "resolution", "height", "fps", "max_freeze_s",
            "freezes", "freeze_s", "audio_gaps", "audio_concealed_pct", "mode", "mode_end",
            "camera_paused_pct", "unpaused_fps", "max_unpaused_freeze_s", "verdict", "why",
            "rungs", "survived", "teacher_camera", "codec", "adaptation",
            "retried")  # fmt: skip
    row = {**head, **{k: run.get(k) for k in keys}}
    row["teacher_limited"] = teacher_limited(run.get("teacher_sends") or {})
    if path == "direct":
        row["mode"] = row["mode_end"] = "n/a"
    return row


CELL_TRIES = 2
"""A sweep cell whose run failed (a browser that did not join within a minute on a loaded
machine, say) is run once more; its row keeps the first failure as `retried`."""


async def _run_cell(spec: RunSpec, log_dir: Path, name: str) -> dict[str, Any]:
    """One sweep cell on one path, tried up to CELL_TRIES times: the run, or its error."""
    failures: list[str] = []
    for _ in range(CELL_TRIES):
        try:
            run_result = await run_once(spec, log_dir)
        except Exception as exc:
            _progress(f"{name} {spec.path} failed: {exc!r} (logs in {log_dir})")
            failures.append(str(exc) or type(exc).__name__)
            continue
        return {**run_result, "retried": failures[0]} if failures else run_result
    return {"error": failures[-1], "retried": failures[0]}


async def run_sweep(
    args: argparse.Namespace, log_dir: Path, save_dir: Path | None
) -> dict[str, Any]:
    """Every cell of the grid on each path: the cells, the goals and (not --json) the table."""
    cells = sweep_grid(args)
    mode = "off" if args.adaptation == "off" else "on"
    if (args.publisher, args.subscriber) != ("chromium", "chromium"):
        raise SystemExit("tongxin bench weaklink: a sweep runs Chromium on both sides")
    if args.heatmap:  # fail before the runs, not after them
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise SystemExit(
                "tongxin bench weaklink: --heatmap needs matplotlib"
                " (pip install 'tongxin[bench]')"
            ) from None
    duration = args.duration or SWEEP_DURATION_S
    settle = sweep_settle(args)
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    for cell in cells:
        name = f"sweep-{cell.down_kbps:g}k-{cell.loss_pct:g}pct"
        profile = custom_profile(cell.down_kbps, cell.up_kbps, cell.loss_pct, name=name)
        for path in sweep.PATHS[args.path]:
            spec = RunSpec(profile, mode, "chromium", "chromium", duration, save_dir,
                           trace=getattr(args, "trace", False),
                           screen=(args.screen or "off") == "on", path=path,
                           settle_s=settle,
                           join_shaped=getattr(args, "join_shaped", False))  # fmt: skip
            _progress(f"{cell.name} {path}")
            run_result = await _run_cell(spec, log_dir, cell.name)
            row = sweep_cell(cell, run_result, path)
            rows.append(row)
            _progress(" ".join(f"{k}={row.get(k)}" for k in (
                "video_kbps", "resolution", "fps", "max_freeze_s", "audio_concealed_pct",
                "mode", "verdict", "error") if k in row))  # fmt: skip
    checks = sweep.goals(rows)
    settings = {
        "rates": sorted({c.down_kbps for c in cells}),
        "losses": sorted({c.loss_pct for c in cells}),
        "duration_s": duration, "settle_s": settle, "path": args.path,
        "adaptation": mode, "screen": (args.screen or "off"),
        "join_shaped": getattr(args, "join_shaped", False),
    }  # fmt: skip
    result: dict[str, Any] = {
        "sweep": settings,
        "cells": rows,
        "goals": checks,
        "wall_s": round(time.monotonic() - started, 1),
        "logs": str(log_dir),
        "note": "shared, noisy 2-core machine: figures vary between runs",
    }
    if args.heatmap:
        title = sweep_title(settings, time.strftime("%Y-%m-%d"))
        sweep.write_heatmap(rows, Path(args.heatmap), title)
        result["heatmap"] = args.heatmap
    if not getattr(args, "json", False):
        print(sweep.format_table(rows, checks))
        return {k: result[k] for k in ("wall_s", "logs", "note", *result.keys() & {"heatmap"})}
    return result


def sweep_title(settings: dict[str, Any], day: str) -> str:
    """The heatmap's title: how the sweep was measured."""
    joined = "joined on the link, " if settings.get("join_shaped") else ""
    return (
        f"tongxin bench weaklink --sweep: {settings['duration_s']:g} s per cell after"
        f" {settings['settle_s']:g} s settling, {joined}{day} (loaded 2-core machine);"
        " p. = camera paused"
    )


def replot(args: argparse.Namespace) -> dict[str, Any]:
    """A saved sweep (`--from-json`): its table and goals again, and `--heatmap` drawn."""
    saved = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
    cells = saved["cells"]
    checks = sweep.goals(cells)
    result: dict[str, Any] = {**saved, "goals": checks}
    if args.heatmap:
        day = time.strftime("%Y-%m-%d", time.localtime(Path(args.from_json).stat().st_mtime))
        try:
            sweep.write_heatmap(cells, Path(args.heatmap), sweep_title(saved["sweep"], day))
        except RuntimeError as exc:
            raise SystemExit(f"tongxin bench weaklink: {exc}") from None
        result["heatmap"] = args.heatmap
    if not getattr(args, "json", False):
        print(sweep.format_table(cells, checks))
        return {k: result[k] for k in result.keys() & {"heatmap", "note"}}
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every chosen profile with each adaptation mode (or the sweep's grid, `--sweep`); the
    runs, goals and (not --json) the printed table."""
    if getattr(args, "from_json", None):
        return replot(args)
    ok, why = lab_available()
    if not ok:
        raise SystemExit(f"tongxin bench weaklink: {why}")
    if getattr(args, "sweep", False):
        sweep_grid(args)  # malformed options fail before anything starts
    elif getattr(args, "heatmap", None):
        raise SystemExit("tongxin bench weaklink: --heatmap draws a --sweep")
    if "chromium" in (args.publisher, args.subscriber) or getattr(args, "path", "relay") != "relay":
        from bench.lab.browser import chromium_available

        present, detail = chromium_available()
        if not present:
            raise SystemExit(f"tongxin bench weaklink: {detail}")
    log_dir = Path(tempfile.mkdtemp(prefix="tongxin-weaklink-"))
    save_dir = Path(args.save) if getattr(args, "save", None) else None
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
    if getattr(args, "sweep", False):
        return await run_sweep(args, log_dir, save_dir)
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    path = getattr(args, "path", "relay")
    for profile in chosen_profiles(args):
        duration = args.duration or default_duration(profile)
        plan = [("relay", m) for m in MODES[args.adaptation] if path != "direct"]
        plan += [("direct", "direct")] if path != "relay" else []
        for way, mode in plan:
            spec = RunSpec(profile, mode, args.publisher, args.subscriber, duration, save_dir,
                           trace=getattr(args, "trace", False),
                           screen=(getattr(args, "screen", None) or "on") == "on", path=way,
                           settle_s=max(0.0, getattr(args, "settle", None) or 0.0),
                           join_shaped=getattr(args, "join_shaped", False))
            _progress(f"{profile.name}: {way}, adaptation {mode}")
            try:
                runs.append(await run_once(spec, log_dir))
            except Exception as exc:
                _progress(f"{profile.name}/{mode} failed: {exc!r} (logs in {log_dir})")
                runs.append({"profile": profile.name, "adaptation": mode, "path": way,
                             "publisher": args.publisher, "subscriber": args.subscriber,
                             "error": str(exc) or type(exc).__name__, "survived": False})
    checks = goals(runs)
    result = {
        "runs": runs,
        "goals": checks,
        "wall_s": round(time.monotonic() - started, 1),
        "logs": str(log_dir),
        "note": "shared, noisy 2-core machine: figures vary between runs",
    }
    if not getattr(args, "json", False):
        print(format_table(runs, checks))
        return {"wall_s": result["wall_s"], "logs": result["logs"], "note": result["note"]}
    return result
