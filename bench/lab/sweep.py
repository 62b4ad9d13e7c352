"""The weak-link lab as a sweep (pure): a grid of steady links (down rate x loss), a verdict
per cell for the issue's rule, the sweep's goals against the direct call, its table and the
heatmap's data (matplotlib, a bench-only extra, is imported only to draw it).

The rule (issue "Picture quality on every link"): no cell where the classroom's camera plays
under 10 fps or freezes for more than 3 s while the camera is not paused. The camera counts as
paused while the relay says so (the page shows the notice); the frame rate and the freezes are
therefore taken over the rest of the window only (`unpaused`, `longest_unpaused`). A cell whose
camera was paused nearly all the window passes as `paused`.

Goals of a sweep with both paths (`goals`): at 2000 kbit/s down, 1% loss the classroom through
the relay receives at least 90% of the direct call's video bitrate and at least its picture
height and frame rate; at 500 kbit/s, 3% loss at least 25 fps; audio concealed never above the
direct call's (`AUDIO_SLACK_PCT` for the noise of two runs) and at most 1% wherever the down
rate is 300 kbit/s or more.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.lab import qoe

DEFAULT_RATES = (100, 200, 300, 500, 800, 1200, 2000)
"""Down rates, kbit/s."""
DEFAULT_LOSSES = (0, 1, 3, 6)
"""Random loss both ways, percent."""
MAX_UP_KBPS = 1000.0
MIN_FPS = 10.0
MAX_FREEZE_S = 3.0
PAUSED_MOST = 0.9
"""A cell whose camera was paused this share of the window is `paused` (passes)."""
MIN_UNPAUSED_S = 1.0
"""Less camera time than this outside pauses is too little to judge: the cell is `paused`."""
AUDIO_SLACK_PCT = 0.2
"""Audio concealed may exceed the direct call's by this much (two runs, one after the other)."""
PATHS = {"relay": ("relay",), "direct": ("direct",), "both": ("relay", "direct")}
MODES = ("full", "reduced_fps", "low", "audio_only")


def parse_numbers(
    text: str, *, what: str, lowest: float, highest: float | None = None
) -> list[float]:
    """`"100,200,500"` as numbers (kept in the given order, duplicates dropped); ValueError
    naming `what` for anything else or out of [lowest, highest]."""
    numbers: list[float] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            number = float(part)
        except ValueError:
            raise ValueError(f"{what}: {part!r} is not a number") from None
        if number < lowest or (highest is not None and number > highest):
            bound = f"[{lowest:g}, {highest:g}]" if highest is not None else f">= {lowest:g}"
            raise ValueError(f"{what}: {part} is out of range {bound}")
        if number not in numbers:
            numbers.append(number)
    if not numbers:
        raise ValueError(f"{what}: no value given")
    return numbers


def up_rate(down_kbps: float, up_ratio: float | None = None) -> float:
    """The up cap of a cell: `up_ratio` of the down rate, or min(down / 2, 1000)."""
    if up_ratio is not None:
        return round(down_kbps * up_ratio, 1)
    return min(down_kbps / 2, MAX_UP_KBPS)


@dataclass(frozen=True, slots=True)
class Cell:
    """One steady link of the grid."""

    down_kbps: float
    up_kbps: float
    loss_pct: float

    @property
    def name(self) -> str:
        """E.g. `500/250k 3%`."""
        return f"{self.down_kbps:g}/{self.up_kbps:g}k {self.loss_pct:g}%"


def grid(
    rates: Sequence[float], losses: Sequence[float], up_ratio: float | None = None
) -> list[Cell]:
    """Every (rate, loss) cell, rates first (each rate's losses together), best first."""
    return [
        Cell(rate, up_rate(rate, up_ratio), loss)
        for rate, loss in itertools.product(sorted(rates, reverse=True), sorted(losses))
    ]


# --- camera time outside pauses ----------------------------------------------------------------


def unpaused(
    start: float, end: float, paused: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    """The stretches of [start, end] outside the `paused` spans."""
    free: list[tuple[float, float]] = []
    at = start
    for a, b in sorted(paused):
        a, b = max(a, start), min(b, end)
        if b <= a:
            continue
        if a > at:
            free.append((at, a))
        at = max(at, b)
    if end > at:
        free.append((at, end))
    return free


def rate_over(
    points: Sequence[qoe.Point], stretches: Sequence[tuple[float, float]]
) -> float | None:
    """A counter's growth per second over the `stretches` together (None if they are empty)."""
    seconds = sum(b - a for a, b in stretches)
    if seconds <= 0:
        return None
    grown = sum(qoe.value_at(points, b) - qoe.value_at(points, a) for a, b in stretches)
    return grown / seconds


def longest_unpaused(freezes: Sequence[qoe.Freeze], paused: Sequence[tuple[float, float]]) -> float:
    """The longest stretch of any freeze outside the `paused` spans (0 if none)."""
    longest = 0.0
    for f in freezes:
        for a, b in unpaused(f.start, f.start + f.seconds, paused):
            longest = max(longest, b - a)
    return longest


# --- the verdict -------------------------------------------------------------------------------


def verdict(
    unpaused_fps: float | None,
    longest_freeze_s: float,
    paused_share: float,
    unpaused_s: float,
) -> tuple[str, str]:
    """(`ok` | `paused` | `FAIL`, why) of a cell by the issue's rule: the camera plays at least
    MIN_FPS with no freeze over MAX_FREEZE_S whenever it is not paused."""
    if paused_share >= PAUSED_MOST or unpaused_s < MIN_UNPAUSED_S or unpaused_fps is None:
        return "paused", f"camera paused {round(100 * paused_share)}% of the window"
    faults = []
    if unpaused_fps < MIN_FPS:
        faults.append(f"{unpaused_fps:.1f} fps < {MIN_FPS:g}")
    if longest_freeze_s > MAX_FREEZE_S:
        faults.append(f"freeze {longest_freeze_s:.1f} s > {MAX_FREEZE_S:g}")
    if faults:
        return "FAIL", " and ".join(faults) + " with the camera not paused"
    return "ok", ""


def predominant_mode(events: Sequence[Sequence[Any]], window_s: float) -> str | None:
    """The rung the classroom was in for most of [0, window_s], from its rung events
    ((seconds from the window's start, rung), changes only; one before 0 holds from 0)."""
    if not events:
        return None
    held: dict[str, float] = {}
    ordered = sorted((float(t), str(r)) for t, r in events)
    for i, (at, rung) in enumerate(ordered):
        until = ordered[i + 1][0] if i + 1 < len(ordered) else window_s
        seconds = min(until, window_s) - max(at, 0.0)
        if seconds > 0:
            held[rung] = held.get(rung, 0.0) + seconds
    if not held:  # every change was before the window: the last one held
        return ordered[-1][1]
    return max(held, key=lambda r: held[r])


# --- goals against the direct call --------------------------------------------------------------


def kbps(cell: dict[str, Any]) -> int:
    """The camera's kbit/s received in a cell (all video when the camera's own is unknown)."""
    value = cell.get("camera_kbps")
    return int(value if value is not None else cell.get("video_kbps") or 0)


def kbps_ratio(relay: dict[str, Any] | None, direct: dict[str, Any] | None) -> float | None:
    """The relay path's camera kbit/s over the direct call's in a cell (None if unknown)."""
    if not relay or not direct or "error" in relay or "error" in direct or not kbps(direct):
        return None
    return kbps(relay) / kbps(direct)


def _find(
    cells: Sequence[dict[str, Any]], path: str, down: float, loss: float
) -> dict[str, Any] | None:
    for c in cells:
        if (c["path"], c["down_kbps"], c["loss_pct"]) == (path, down, loss) and "error" not in c:
            return c
    return None


def goals(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's done-when checks on the cells the sweep has: [{goal, met, value}]."""
    checks: list[dict[str, Any]] = []

    def check(goal: str, met: bool | None, value: Any) -> None:
        checks.append({"goal": goal, "met": met, "value": value})

    relay, direct = _find(cells, "relay", 2000, 1), _find(cells, "direct", 2000, 1)
    if relay and direct:
        ratio = kbps_ratio(relay, direct)
        check(
            "2000k 1%: relay >= 90% of the direct call's camera kbit/s",
            ratio is not None and ratio >= 0.9,
            f"{kbps(relay)}/{kbps(direct)}",
        )
        check(
            "2000k 1%: relay height >= direct's",
            (relay["height"] or 0) >= (direct["height"] or 0),
            f"{relay['height']}/{direct['height']}",
        )
        check(
            "2000k 1%: relay fps >= direct's",
            relay["fps"] >= direct["fps"],
            f"{relay['fps']}/{direct['fps']}",
        )
    relay = _find(cells, "relay", 500, 3)
    if relay:
        check("500k 3%: relay >= 25 fps", relay["fps"] >= 25, relay["fps"])
    for c in cells:
        if c["path"] != "relay" or "error" in c:
            continue
        other = _find(cells, "direct", c["down_kbps"], c["loss_pct"])
        if other is not None:
            check(
                f"{c['cell']}: audio concealed <= the direct call's",
                c["audio_concealed_pct"] <= other["audio_concealed_pct"] + AUDIO_SLACK_PCT,
                f"{c['audio_concealed_pct']}/{other['audio_concealed_pct']}",
            )
        if c["down_kbps"] >= 300:
            check(
                f"{c['cell']}: audio concealed <= 1%",
                c["audio_concealed_pct"] <= 1.0,
                c["audio_concealed_pct"],
            )
    for c in cells:
        if c["path"] == "relay" and "error" not in c:
            check(
                f"{c['cell']}: fps >= 10 and no freeze > 3 s, or camera paused",
                c["verdict"] != "FAIL",
                c["why"] or c["verdict"],
            )
    return checks


# --- the table ---------------------------------------------------------------------------------

COLUMNS = (
    ("cell", "link", 15),
    ("path", "path", 6),
    ("video_kbps", "kbit/s", 6),
    ("resolution", "picture", 8),
    ("fps", "fps", 5),
    ("max_freeze_s", "max frz", 7),
    ("freezes", "freezes", 7),
    ("audio_concealed_pct", "concl %", 7),
    ("mode", "mode", 11),
    ("camera_paused_pct", "paused %", 8),
    ("verdict", "verdict", 7),
)


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def format_table(cells: Sequence[dict[str, Any]], checks: Sequence[dict[str, Any]] = ()) -> str:
    """The cells as a fixed-width table, then the goals."""
    header = "  ".join(f"{title:>{width}}" for _key, title, width in COLUMNS)
    lines = [header, "-" * len(header)]
    for c in cells:
        if "error" in c:
            lines.append(f"{c['cell']:>15}  {c['path']:>6}  error: {c['error']}")
            continue
        lines.append("  ".join(f"{_shown(c.get(k)):>{w}}" for k, _t, w in COLUMNS))
    for c in checks:
        mark = {True: "met", False: "NOT met", None: "n/a"}[c["met"]]
        lines.append(f"goal {c['goal']}: {mark} ({_shown(c['value'])})")
    return "\n".join(lines)


# --- the heatmap -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Panel:
    """One heatmap panel: `values[i][j]` at rate `rates[i]` (rows, lowest first) and loss
    `losses[j]` (columns), with a label per cell."""

    title: str
    rates: list[float]
    losses: list[float]
    values: list[list[float | None]]
    labels: list[list[str]]


def _label(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return ""
    if "error" in cell:
        return "error"
    mark = {"ok": "", "paused": " (p)", "FAIL": " FAIL"}.get(cell.get("verdict", ""), "")
    mode = cell.get("mode") or ""
    short = {"full": "full", "reduced_fps": "red.fps", "low": "low", "audio_only": "audio"}
    second = short.get(mode, mode)
    if cell.get("camera_paused_pct"):
        second = f"{second}, {cell['camera_paused_pct']}% p."
    return f"{cell['fps']:g} fps{mark}\n{second}".rstrip()


def heatmap_panels(cells: Sequence[dict[str, Any]]) -> list[Panel]:
    """The heatmap's data: the frame rate of each path that ran (labelled with its fps, the
    mode and the verdict), and the relay/direct video bitrate ratio when both ran."""
    rates = sorted({float(c["down_kbps"]) for c in cells})
    losses = sorted({float(c["loss_pct"]) for c in cells})
    by = {(c["path"], float(c["down_kbps"]), float(c["loss_pct"])): c for c in cells}
    paths = [p for p in ("relay", "direct") if any(c["path"] == p for c in cells)]
    panels = []
    for path in paths:
        values: list[list[float | None]] = []
        labels: list[list[str]] = []
        for rate in rates:
            row = [by.get((path, rate, loss)) for loss in losses]
            values.append([None if c is None or "error" in c else float(c["fps"]) for c in row])
            labels.append([_label(c) for c in row])
        panels.append(Panel(f"{path}: classroom fps", rates, losses, values, labels))
    if paths == ["relay", "direct"]:
        ratios: list[list[float | None]] = []
        texts: list[list[str]] = []
        for rate in rates:
            ratio_row: list[float | None] = []
            text_row: list[str] = []
            for loss in losses:
                r, d = by.get(("relay", rate, loss)), by.get(("direct", rate, loss))
                value = kbps_ratio(r, d)
                ratio_row.append(None if value is None else round(value, 2))
                text_row.append(
                    "" if value is None or not r or not d else f"{value:.2f}\n{kbps(r)}/{kbps(d)}k"
                )
            ratios.append(ratio_row)
            texts.append(text_row)
        panels.append(Panel("camera kbit/s relay / direct", rates, losses, ratios, texts))
    return panels


def write_heatmap(cells: Sequence[dict[str, Any]], path: Path, title: str = "") -> None:
    """Draw `heatmap_panels` into a PNG at `path` (needs matplotlib: the `bench` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RuntimeError(
            "--heatmap needs matplotlib: pip install 'tongxin[bench]' (or matplotlib)"
        ) from exc
    panels = heatmap_panels(cells)
    if not panels:
        raise RuntimeError("no cells to draw")
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(5.0 * len(panels) + 1, 0.8 * len(panels[0].rates) + 2.2),
        squeeze=False,
    )
    for ax, panel in zip(axes[0], panels, strict=True):
        ratio = panel.title.startswith("camera")
        data = [[float("nan") if v is None else v for v in row] for row in panel.values]
        image = ax.imshow(
            data, origin="lower", aspect="auto", cmap="RdYlGn",
            vmin=0.0, vmax=1.2 if ratio else 30.0,
        )  # fmt: skip
        ax.set_xticks(range(len(panel.losses)), [f"{x:g}%" for x in panel.losses])
        ax.set_yticks(range(len(panel.rates)), [f"{r:g}" for r in panel.rates])
        ax.set_xlabel("loss (both ways)")
        ax.set_ylabel("down kbit/s")
        ax.set_title(panel.title, fontsize=10)
        for i, row in enumerate(panel.labels):
            for j, text in enumerate(row):
                if text:
                    ax.text(j, i, text, ha="center", va="center", fontsize=6.5)
        fig.colorbar(image, ax=ax, shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
