"""The figures of `tongxin bench lecture`, from raw counts: plain functions, tested with tables.

Inputs are two snapshots (start and end of a measured window) of: the frames the teacher's
clips handed to aiortc per kind, each receiver's counts (node it ended on, frames, packets,
loss) and each node's process-tree CPU seconds. Outputs: delivered % per kind (frames
received / frames sent x receivers; the lean receiver's sequence gaps give packet loss too),
CPU per node as ms per second and ms per subscriber-second, join-to-first-frame percentiles,
and the run's checks: origin CPU flat (within `ORIGIN_FLAT_TOLERANCE`) while subscribers
double, an edge's CPU per subscriber-second within `EDGE_TOLERANCE` of a single node's, and
delivery at least `MIN_DELIVERED_PCT`. `render` prints it all as a table.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

MIN_DELIVERED_PCT = 99.0
ORIGIN_FLAT_TOLERANCE = 0.20
EDGE_TOLERANCE = 0.25


def pct(part: float, whole: float) -> float | None:
    """100 x part / whole, capped at 100, two decimals; None when nothing was expected."""
    return round(min(100.0, 100.0 * part / whole), 2) if whole > 0 else None


def percentile(values: Sequence[float], q: int) -> float | None:
    """The q-th percentile (inclusive method), None for no values."""
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(sorted(values), n=100, method="inclusive")[q - 1], 1)


def delta(before: Mapping[str, Any] | None, after: Mapping[str, Any], key: str) -> int | None:
    """after[key] - before[key] (a receiver absent before counts from zero); None when the
    receiver kind does not count this (aiortc receivers have no packet counts)."""
    end = after.get(key)
    if end is None:
        return None
    start = (before or {}).get(key) or 0
    return int(end) - int(start)


def window_counts(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]],
                  node_names: Mapping[str, str]) -> list[dict[str, Any]]:
    """Per receiver (those in `after`): the node name it ended on and what it received in the
    window (frames and packets per kind, loss, expected packets)."""
    start = {r["id"]: r for r in before}
    out = []
    for r in after:
        b = start.get(r["id"])
        out.append({
            "id": r["id"],
            "node": node_names.get(str(r.get("node", "")).rstrip("/"), "?"),
            "rung": r.get("rung"),
            **{key: delta(b, r, key) for key in ("video_frames", "audio_frames",
                                                 "video_packets", "audio_packets", "lost",
                                                 "expected")},
            "roster_entries": r.get("roster_entries"),
            "session_frames": r.get("session_frames"),
            "session_bytes_per_entry": r.get("session_bytes_per_entry"),
        })
    return out


def delivered(counts: Sequence[Mapping[str, Any]], sent: Mapping[str, int]) -> dict[str, Any]:
    """Delivered % per kind (frames) over these receivers, and packet loss % when counted."""
    n = len(counts)
    out: dict[str, Any] = {
        kind: pct(sum(c[f"{kind}_frames"] or 0 for c in counts), n * sent.get(kind, 0))
        for kind in ("video", "audio")
    }
    lost = [c["lost"] for c in counts if c.get("lost") is not None]
    expected = [c["expected"] for c in counts if c.get("expected") is not None]
    out["packet_loss"] = pct(sum(lost), sum(expected)) if lost and sum(expected) > 0 else None
    return out


def node_cpu(cpu_before: Mapping[str, float], cpu_after: Mapping[str, float],
             subscribers: Mapping[str, int], window_s: float) -> dict[str, dict[str, Any]]:
    """Per node: subscribers, CPU ms per second, CPU ms per subscriber-second (None with no
    subscriber)."""
    out = {}
    for name, end in cpu_after.items():
        ms_per_s = (end - cpu_before.get(name, end)) * 1000 / window_s if window_s > 0 else 0.0
        subs = subscribers.get(name, 0)
        out[name] = {"subscribers": subs, "cpu_ms_per_s": round(ms_per_s, 1),
                     "cpu_ms_per_subscriber_second": round(ms_per_s / subs, 3) if subs else None}
    return out


def rungs(counts: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many receivers the relay's adaptation has on each rung (`none`: no `link` yet)."""
    by: dict[str, int] = {}
    for c in counts:
        rung = str(c.get("rung") or "none")
        by[rung] = by.get(rung, 0) + 1
    return by


def subscribers_by_node(counts: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    by: dict[str, int] = {}
    for c in counts:
        by[c["node"]] = by.get(c["node"], 0) + 1
    return by


def step_figures(*, subscribers: int, window_s: float, sent: Mapping[str, int],
                 counts: Sequence[Mapping[str, Any]], roles: Mapping[str, str],
                 cpu_before: Mapping[str, float], cpu_after: Mapping[str, float],
                 first_frame_s: Sequence[float], receiver_cpu_s: float,
                 failures: Sequence[str]) -> dict[str, Any]:
    """One step's figures (see the module docstring)."""
    by_node = subscribers_by_node(counts)
    nodes = node_cpu(cpu_before, cpu_after, by_node, window_s)
    for name, figures in nodes.items():
        figures["role"] = roles.get(name, "?")
        mine = [c for c in counts if c["node"] == name]
        figures["delivered_pct"] = delivered(mine, sent) if mine else None
    receiver_ms = receiver_cpu_s * 1000 / window_s if window_s > 0 else 0.0
    return {
        "subscribers": subscribers,
        "window_s": round(window_s, 2),
        "sent_frames": dict(sent),
        "delivered_pct": delivered(counts, sent),
        "rungs": rungs(counts),
        "roster_pushes": roster_pushes(counts),
        "nodes": nodes,
        "join_to_first_frame_ms": {
            "median": percentile([s * 1000 for s in first_frame_s], 50),
            "p95": percentile([s * 1000 for s in first_frame_s], 95),
            "joined": len(first_frame_s),
        },
        "receiver_cpu_ms_per_s": round(receiver_ms, 1),
        "receiver_cpu_ms_per_receiver_second": round(receiver_ms / subscribers, 3)
        if subscribers else None,
        "failures": list(failures)[:10],
    }


def redis_load(at_join: int, before: int, after: int, joined: int,
               window_s: float) -> dict[str, float | None]:
    """Redis commands per viewer joined (from the step's first join to the window, warm-up
    included) and per second over the window (INFO's counter, this bench's reads included)."""
    return {"commands_per_join": round((before - at_join) / joined, 1) if joined else None,
            "commands_per_s": round((after - before) / window_s, 1) if window_s > 0 else None}


def roster_pushes(counts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What signaling sent the viewers so far: `session` frames and the participants listed
    in them (every viewer present is listed, so a class of N viewers joining one by one
    sends on the order of N^2 / 2 entries to each node's viewers), summed, and the JSON
    bytes per listed participant."""
    frames = [c["session_frames"] for c in counts if c.get("session_frames") is not None]
    entries = [c["roster_entries"] for c in counts if c.get("roster_entries") is not None]
    sizes = [c["session_bytes_per_entry"] for c in counts
             if c.get("session_bytes_per_entry") is not None]
    return {"session_frames": sum(frames), "roster_entries": sum(entries),
            "bytes_per_entry": round(statistics.fmean(sizes), 1) if sizes else None}


def role_figure(step: Mapping[str, Any], role: str, key: str) -> float | None:
    """The mean of `key` over the nodes of `role` in a step (None if none has it)."""
    values = [n[key] for n in step["nodes"].values()
              if n.get("role") == role and n.get(key) is not None]
    return round(statistics.fmean(values), 3) if values else None


def origin_flatness(steps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Origin CPU ms/s at each step, its ratio to the first step's, and whether every step
    stays within `ORIGIN_FLAT_TOLERANCE` of it (None with fewer than two steps)."""
    cpu = [role_figure(s, "origin", "cpu_ms_per_s") for s in steps]
    base = cpu[0] if cpu else None
    ratios = [round(c / base, 3) if c is not None and base else None for c in cpu]
    flat = None
    if len(steps) > 1 and all(r is not None for r in ratios):
        flat = all(abs(r - 1) <= ORIGIN_FLAT_TOLERANCE for r in ratios if r is not None)
    return {"subscribers": [s["subscribers"] for s in steps], "origin_cpu_ms_per_s": cpu,
            "ratio_to_first": ratios, "flat": flat}


def edge_vs_single(lecture: Sequence[Mapping[str, Any]],
                   single: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per subscriber count measured both ways: the edges' mean CPU per subscriber-second,
    the single node's, their ratio and whether it is within `EDGE_TOLERANCE`."""
    single_by = {s["subscribers"]: s for s in single}
    out = []
    for step in lecture:
        other = single_by.get(step["subscribers"])
        if other is None:
            continue
        edge = role_figure(step, "edge", "cpu_ms_per_subscriber_second")
        alone = role_figure(other, "single", "cpu_ms_per_subscriber_second")
        ratio = round(edge / alone, 3) if edge is not None and alone else None
        out.append({"subscribers": step["subscribers"], "edge": edge, "single": alone,
                    "ratio": ratio,
                    "within": None if ratio is None else abs(ratio - 1) <= EDGE_TOLERANCE})
    return out


def marginal(steps: Sequence[Mapping[str, Any]], role: str) -> list[dict[str, Any]]:
    """Between successive steps: the added CPU ms per second of the nodes of `role` (summed)
    per added subscriber on them, the cost of one more viewer without the node's fixed cost
    (the publisher's uplink, the trunk, the idle service), which weighs on ms/sub-s at small
    counts."""
    def totals(step: Mapping[str, Any]) -> tuple[float, int]:
        nodes = [n for n in step["nodes"].values() if n.get("role") == role]
        return sum(n["cpu_ms_per_s"] for n in nodes), sum(n["subscribers"] for n in nodes)

    out = []
    for a, b in itertools.pairwise(steps):
        (cpu_a, subs_a), (cpu_b, subs_b) = totals(a), totals(b)
        added = subs_b - subs_a
        out.append({"from": a["subscribers"], "to": b["subscribers"],
                    "cpu_ms_per_added_subscriber_second":
                    round((cpu_b - cpu_a) / added, 3) if added > 0 else None})
    return out


def delivered_ok(steps: Sequence[Mapping[str, Any]]) -> bool | None:
    """Every step delivered at least `MIN_DELIVERED_PCT` of video and audio."""
    values = [s["delivered_pct"].get(k) for s in steps for k in ("video", "audio")]
    if not values or any(v is None for v in values):
        return None
    return all(v >= MIN_DELIVERED_PCT for v in values if v is not None)


def checks(phases: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The issue's three checks over the phases that ran."""
    lecture = phases.get("lecture", {}).get("steps", [])
    single = phases.get("single", {}).get("steps", [])
    return {
        "delivered_ok": delivered_ok(lecture),
        "origin": origin_flatness(lecture) if lecture else None,
        "edge_vs_single": edge_vs_single(lecture, single),
        "marginal_edge": marginal(lecture, "edge"),
        "marginal_single": marginal(single, "single"),
    }


def _fmt(value: Any, width: int) -> str:
    text = "-" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))
    return text.rjust(width)


COLUMNS = (("phase", 14), ("subs", 5), ("node", 8), ("role", 7), ("n", 4), ("cpu ms/s", 9),
           ("ms/sub-s", 9), ("video%", 7), ("audio%", 7), ("loss%", 6), ("ttff50", 7),
           ("ttff95", 7), ("rx ms/rx-s", 10))


def table_rows(result: Mapping[str, Any]) -> list[list[Any]]:
    """A row per (phase, step, node), then the step's totals (node `all`)."""
    rows: list[list[Any]] = []
    for phase_name, phase in result.get("phases", {}).items():
        label = f"{phase_name}/{phase.get('receiver', '?')}"
        for step in phase.get("steps", []):
            for name, node in step["nodes"].items():
                d = node.get("delivered_pct") or {}
                rows.append([label, step["subscribers"], name, node.get("role"),
                             node["subscribers"], node["cpu_ms_per_s"],
                             node["cpu_ms_per_subscriber_second"], d.get("video"),
                             d.get("audio"), d.get("packet_loss"), None, None, None])
            d = step["delivered_pct"]
            ttff = step["join_to_first_frame_ms"]
            rows.append([label, step["subscribers"], "all", f"ld{step.get('load_avg_1m', '')}",
                         step["subscribers"], None, None,
                         d.get("video"), d.get("audio"), d.get("packet_loss"), ttff["median"],
                         ttff["p95"], step["receiver_cpu_ms_per_receiver_second"]])
    return rows


def render(result: Mapping[str, Any]) -> str:
    """The result as a table, then the checks."""
    lines = ["  ".join(name.rjust(width) for name, width in COLUMNS)]
    for row in table_rows(result):
        lines.append("  ".join(_fmt(v, w) for v, (_, w) in zip(row, COLUMNS, strict=True)))
    c = result.get("checks") or {}
    origin = c.get("origin") or {}
    lines.append("")
    lines.append(f"delivered >= {MIN_DELIVERED_PCT}% on every lecture step: "
                 f"{c.get('delivered_ok')}")
    lines.append(f"origin CPU ms/s by step {origin.get('origin_cpu_ms_per_s')}, ratio to the "
                 f"first {origin.get('ratio_to_first')}, flat within "
                 f"{ORIGIN_FLAT_TOLERANCE:.0%}: {origin.get('flat')}")
    for e in c.get("edge_vs_single") or []:
        lines.append(f"{e['subscribers']} subscribers: edge {e['edge']} vs single {e['single']}"
                     f" ms/sub-s, ratio {e['ratio']}, within {EDGE_TOLERANCE:.0%}: {e['within']}")
    for phase_name, phase in result.get("phases", {}).items():
        for st in phase.get("steps", []):
            if any(st.get("udp_drops", {}).values()):
                lines.append(f"{phase_name} {st['subscribers']}: UDP datagrams dropped by the"
                             f" kernel (full receive buffers): {st['udp_drops']}")
        if phase.get("stopped"):
            lines.append(f"{phase_name} stopped at {phase['stopped']}")
    for key in ("marginal_edge", "marginal_single"):
        for m in c.get(key) or []:
            lines.append(f"{key.split('_')[1]} {m['from']}->{m['to']} subscribers: "
                         f"{m['cpu_ms_per_added_subscriber_second']} ms per added "
                         "subscriber-second")
    for key in ("clip", "notes"):
        if key in result:
            lines.append(f"{key}: {result[key]}")
    return "\n".join(lines)
