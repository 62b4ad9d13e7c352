"""The weak-link sweep's pure parts (bench.lab.sweep, bench.weaklink's sweep helpers): the
grid from the options, camera time outside pauses, the verdict per cell by the issue's rule,
the predominant mode, the goals against the direct call, the table and the heatmap's data
layout. No root, no network, no browser (matplotlib only where it is installed)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import weaklink
from bench.lab import qoe, sweep

# --- the grid ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("100,200,300", [100, 200, 300]),
        (" 2000, 500 ,500,", [2000, 500]),  # order kept, duplicates and blanks dropped
        ("0,1.5,6", [0, 1.5, 6]),
    ],
)
def test_numbers_are_parsed_in_order_without_duplicates(text: str, numbers: list[float]) -> None:
    assert sweep.parse_numbers(text, what="--x", lowest=0) == numbers


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("100,fast", "'fast' is not a number"),
        ("", "no value given"),
        ("-1", "out of range"),
        ("101", "out of range [0, 100]"),
    ],
)
def test_malformed_numbers_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="--losses") as caught:
        sweep.parse_numbers(text, what="--losses", lowest=0, highest=100)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("down", "ratio", "up"),
    [(100, None, 50), (500, None, 250), (2000, None, 1000), (4000, None, 1000),
     (500, 0.5, 250), (4000, 0.5, 2000), (300, 1.0, 300)],
)  # fmt: skip
def test_the_up_rate_is_half_the_down_rate_capped_at_1000_or_the_given_ratio(
    down: float, ratio: float | None, up: float
) -> None:
    assert sweep.up_rate(down, ratio) == up


def test_the_grid_runs_rates_best_first_each_with_its_losses() -> None:
    cells = sweep.grid([200, 2000, 500], [3, 0])
    assert [(c.down_kbps, c.loss_pct) for c in cells] == [
        (2000, 0), (2000, 3), (500, 0), (500, 3), (200, 0), (200, 3),
    ]  # fmt: skip
    assert cells[0].name == "2000/1000k 0%"
    assert cells[-1].up_kbps == 100


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    weaklink.configure_parser(parser)
    return parser.parse_args(argv)


def test_the_sweep_defaults_are_the_issues_grid() -> None:
    args = _args(["--sweep"])
    cells = weaklink.sweep_grid(args)
    assert sorted({c.down_kbps for c in cells}) == [100, 200, 300, 500, 800, 1200, 2000]
    assert sorted({c.loss_pct for c in cells}) == [0, 1, 3, 6]
    assert len(cells) == 28
    # no --settle: a sweep settles SWEEP_SETTLE_S, a single run's window starts at once
    assert (args.path, args.settle) == ("relay", None)
    assert weaklink.sweep_settle(args) == weaklink.SWEEP_SETTLE_S
    assert weaklink.sweep_settle(_args(["--sweep", "--settle", "12"])) == 12.0


@pytest.mark.parametrize(
    "argv",
    [["--rates", "100,x"], ["--losses", "120"], ["--up-ratio", "0"], ["--rates", "0"]],
)
def test_a_malformed_grid_stops_before_anything_runs(argv: list[str]) -> None:
    with pytest.raises(SystemExit, match="tongxin bench weaklink"):
        weaklink.sweep_grid(_args(["--sweep", *argv]))


# --- camera time outside pauses ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("paused", "free"),
    [
        ([], [(0.0, 10.0)]),
        ([(2.0, 4.0)], [(0.0, 2.0), (4.0, 10.0)]),
        ([(-5.0, 3.0), (8.0, 20.0)], [(3.0, 8.0)]),
        ([(2.0, 5.0), (4.0, 6.0)], [(0.0, 2.0), (6.0, 10.0)]),  # overlapping spans
        ([(0.0, 10.0)], []),
    ],
)
def test_unpaused_is_the_window_less_the_paused_spans(
    paused: list[tuple[float, float]], free: list[tuple[float, float]]
) -> None:
    assert sweep.unpaused(0.0, 10.0, paused) == free


def test_the_frame_rate_counts_only_the_unpaused_time() -> None:
    # 30 fps for 0-5 s, nothing from 5 s (the camera paused 5-10 s)
    frames = [(t / 30, float(t)) for t in range(0, 151)] + [(10.0, 150.0)]
    assert sweep.rate_over(frames, [(0.0, 5.0)]) == pytest.approx(30, abs=0.3)
    assert sweep.rate_over(frames, [(0.0, 10.0)]) == pytest.approx(15, abs=0.3)
    assert sweep.rate_over(frames, []) is None


@pytest.mark.parametrize(
    ("freezes", "paused", "longest"),
    [
        ([], [], 0.0),
        ([qoe.Freeze(2.0, 4.0)], [], 4.0),
        ([qoe.Freeze(2.0, 4.0)], [(3.0, 10.0)], 1.0),  # paused 1 s into the freeze
        ([qoe.Freeze(2.0, 4.0)], [(0.0, 10.0)], 0.0),  # paused throughout
        ([qoe.Freeze(0.0, 1.0), qoe.Freeze(5.0, 3.5)], [(6.0, 6.5)], 2.0),
    ],
)
def test_the_longest_freeze_leaves_out_the_paused_stretches(
    freezes: list[qoe.Freeze], paused: list[tuple[float, float]], longest: float
) -> None:
    assert sweep.longest_unpaused(freezes, paused) == pytest.approx(longest)


# --- the verdict ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fps", "freeze", "paused_share", "free_s", "mark", "why"),
    [
        (25.0, 0.5, 0.0, 25.0, "ok", ""),
        (10.0, 3.0, 0.0, 25.0, "ok", ""),  # the bounds themselves pass
        (9.9, 0.5, 0.0, 25.0, "FAIL", "9.9 fps < 10"),
        (20.0, 3.1, 0.0, 25.0, "FAIL", "freeze 3.1 s > 3"),
        (4.0, 5.0, 0.3, 17.5, "FAIL", "4.0 fps < 10 and freeze 5.0 s > 3"),
        (2.0, 8.0, 0.95, 1.25, "paused", "camera paused 95%"),  # paused nearly all along
        (None, 0.0, 1.0, 0.0, "paused", "camera paused 100%"),
        (0.0, 0.5, 0.5, 0.5, "paused", "camera paused 50%"),  # too little camera time to judge
        (12.0, 1.0, 0.5, 12.5, "ok", ""),  # paused half the time, playing well otherwise
    ],
)
def test_a_cell_passes_when_the_camera_plays_10_fps_without_a_3_s_freeze_or_is_paused(
    fps: float | None, freeze: float, paused_share: float, free_s: float, mark: str, why: str
) -> None:
    got_mark, got_why = sweep.verdict(fps, freeze, paused_share, free_s)
    assert got_mark == mark
    assert why in got_why
    if mark == "FAIL":
        assert got_why.endswith("with the camera not paused")


@pytest.mark.parametrize(
    ("events", "mode"),
    [
        ([], None),
        ([[-3.0, "full"]], "full"),  # set before the window, held throughout
        ([[-3.0, "full"], [2.0, "low"]], "low"),
        ([[-1.0, "low"], [6.0, "full"]], "full"),  # low 6 s, full 19 s of 25
        ([[-4.0, "full"], [-2.0, "audio_only"]], "audio_only"),
        ([[0.0, "reduced_fps"], [10.0, "low"], [14.0, "reduced_fps"]], "reduced_fps"),
    ],
)
def test_the_mode_is_the_rung_held_longest_in_the_window(
    events: list[list[Any]], mode: str | None
) -> None:
    assert sweep.predominant_mode(events, 25.0) == mode


# --- the camera figures of a run -----------------------------------------------------------------


def _samples(fps: Any, end: float = 30.0) -> list[dict[str, Any]]:
    """Browser samples every 0.25 s from t=1000 with a 640x360 camera at `fps(t)`."""
    rows, frames, t = [], 0.0, 0.0
    while t <= end + 1e-9:
        rows.append({
            "t": 1000 + t, "pc": "connected",
            "tracks": {
                "camera": {"frames": int(frames), "bytes": frames * 1000, "width": 640,
                           "height": 360},
                "mic": {"samples": t * 48_000, "concealed": 0},
            },
        })  # fmt: skip
        frames += fps(t) * 0.25
        t += 0.25
    return rows


def test_camera_figures_of_a_smooth_run_pass() -> None:
    got = weaklink.received_from_browser(_samples(lambda t: 30.0))
    figures = weaklink.camera_figures(got, 1005.0, 1030.0)
    assert figures["resolution"] == "640x360"
    assert figures["unpaused_fps"] == pytest.approx(30, abs=0.5)
    assert (figures["max_freeze_s"], figures["verdict"], figures["why"]) == (0.0, "ok", "")


def test_camera_figures_judge_only_the_time_the_camera_was_not_paused() -> None:
    # frozen from 15 s on; the relay paused the camera from 16 s: a 1 s freeze unpaused
    got = weaklink.received_from_browser(_samples(lambda t: 0.0 if t >= 15 else 20.0))
    paused = [(1016.0, 1030.0)]
    figures = weaklink.camera_figures(got, 1005.0, 1030.0, paused)
    assert figures["max_freeze_s"] == pytest.approx(15.0, abs=0.3)
    assert figures["max_unpaused_freeze_s"] == pytest.approx(1.0, abs=0.3)
    assert figures["unpaused_fps"] == pytest.approx(20 * 10 / 11, abs=0.5)
    assert figures["verdict"] == "ok"
    # without the pause the same run breaks the rule
    assert weaklink.camera_figures(got, 1005.0, 1030.0)["verdict"] == "FAIL"


def test_a_sweep_row_of_the_direct_call_has_no_mode_and_an_error_row_keeps_its_cell() -> None:
    cell = sweep.Cell(500, 250, 3)
    run = {"video_kbps": 250, "fps": 20.0, "verdict": "ok", "why": "", "mode": None}
    row = weaklink.sweep_cell(cell, run, "direct")
    assert (row["cell"], row["path"], row["mode"], row["fps"]) == ("500/250k 3%", "direct",
                                                                    "n/a", 20.0)  # fmt: skip
    failed = weaklink.sweep_cell(cell, {"error": "boom"}, "relay")
    assert failed == {"cell": "500/250k 3%", "down_kbps": 500, "up_kbps": 250, "loss_pct": 3,
                      "path": "relay", "error": "boom", "retried": None,
                      "survived": False}  # fmt: skip


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        (["ok"], {"fps": 30.0}),
        (["join timed out", "ok"], {"fps": 30.0, "retried": "join timed out"}),
        (["join timed out", "no frame"], {"error": "no frame", "retried": "join timed out"}),
    ],
)
async def test_a_failed_sweep_cell_is_run_once_more_and_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, outcomes: list[str],
    expected: dict[str, Any],
) -> None:
    calls = iter(outcomes)

    async def run_once(spec: Any, log_dir: Path) -> dict[str, Any]:
        outcome = next(calls)
        if outcome != "ok":
            raise RuntimeError(outcome)
        return {"fps": 30.0}

    monkeypatch.setattr(weaklink, "run_once", run_once)
    spec = argparse.Namespace(path="relay")
    assert await weaklink._run_cell(spec, tmp_path, "500/250k 3%") == expected  # type: ignore[arg-type]
    assert next(calls, None) is None  # no third try


@pytest.mark.parametrize(
    ("join_shaped", "says"),
    [(False, "after 10 s settling, 2026-12-07"),
     (True, "after 10 s settling, joined on the link, 2026-12-07")],
)
def test_the_heatmap_title_says_whether_the_classroom_joined_on_its_link(
    join_shaped: bool, says: str
) -> None:
    settings = {"duration_s": 15, "settle_s": 10, "join_shaped": join_shaped}
    assert says in weaklink.sweep_title(settings, "2026-12-07")


# --- goals, table, heatmap -----------------------------------------------------------------------


def _cell(path: str, down: float, loss: float, **figures: Any) -> dict[str, Any]:
    base = {
        "cell": f"{down:g}/{sweep.up_rate(down):g}k {loss:g}%", "down_kbps": down,
        "up_kbps": sweep.up_rate(down), "loss_pct": loss, "path": path, "video_kbps": 500,
        "camera_kbps": 500, "resolution": "640x360", "height": 360, "fps": 28.0,
        "max_freeze_s": 0.0, "freezes": 0, "audio_concealed_pct": 0.5,
        "mode": "full" if path == "relay" else "n/a", "camera_paused_pct": 0,
        "verdict": "ok", "why": "",
    }  # fmt: skip
    return {**base, **figures}


def _goals(cells: list[dict[str, Any]]) -> dict[str, bool | None]:
    return {c["goal"]: c["met"] for c in sweep.goals(cells)}


def test_the_goals_compare_the_relay_with_the_direct_call_cell_by_cell() -> None:
    cells = [
        _cell("relay", 2000, 1, camera_kbps=900, fps=29.0),
        _cell("direct", 2000, 1, camera_kbps=1000, fps=29.0),
        _cell("relay", 500, 3, fps=26.0, audio_concealed_pct=1.2),
        _cell("direct", 500, 3, audio_concealed_pct=0.9),
        _cell("relay", 200, 6, fps=3.0, verdict="FAIL", why="3.0 fps < 10",
              audio_concealed_pct=4.0),
    ]  # fmt: skip
    goals = _goals(cells)
    assert goals["2000k 1%: relay >= 90% of the direct call's camera kbit/s"] is True
    assert goals["2000k 1%: relay height >= direct's"] is True
    assert goals["2000k 1%: relay fps >= direct's"] is True
    assert goals["500k 3%: relay >= 25 fps"] is True
    assert goals["500/250k 3%: audio concealed <= the direct call's"] is False  # 1.2 > 0.9+0.2
    assert goals["500/250k 3%: audio concealed <= 1%"] is False
    assert "200/100k 6%: audio concealed <= 1%" not in goals  # under 300 kbit/s
    assert goals["200/100k 6%: fps >= 10 and no freeze > 3 s, or camera paused"] is False
    assert goals["2000/1000k 1%: fps >= 10 and no freeze > 3 s, or camera paused"] is True


def test_the_bitrate_goal_fails_under_90_percent_and_errors_are_left_out() -> None:
    cells = [
        _cell("relay", 2000, 1, camera_kbps=700),
        _cell("direct", 2000, 1, camera_kbps=1000),
        {"cell": "500/250k 3%", "down_kbps": 500, "up_kbps": 250, "loss_pct": 3,
         "path": "relay", "error": "boom"},
    ]  # fmt: skip
    goals = _goals(cells)
    assert goals["2000k 1%: relay >= 90% of the direct call's camera kbit/s"] is False
    assert not any(g.startswith("500") for g in goals)


def test_the_table_has_a_row_per_cell_and_path_then_the_goals() -> None:
    cells = [_cell("relay", 500, 3, mode="low"), _cell("direct", 500, 3),
             {"cell": "200/100k 6%", "down_kbps": 200, "up_kbps": 100, "loss_pct": 6,
              "path": "relay", "error": "boom"}]  # fmt: skip
    lines = sweep.format_table(cells, sweep.goals(cells)).splitlines()
    assert lines[0].split()[:3] == ["link", "path", "kbit/s"]
    assert lines[2].split() == ["500/250k", "3%", "relay", "500", "640x360", "28.0", "0.0",
                                "0", "0.5", "low", "0", "ok"]  # fmt: skip
    assert lines[3].split()[2] == "direct"
    assert lines[4].endswith("error: boom")
    assert any(line.startswith("goal 500k 3%: relay >= 25 fps: met") for line in lines)


def test_the_heatmap_has_rates_as_rows_losses_as_columns_and_a_ratio_panel_with_both() -> None:
    cells = [
        _cell("relay", 500, 0, fps=25.0), _cell("relay", 500, 3, fps=12.0, mode="low"),
        _cell("relay", 200, 0, fps=0.0, verdict="paused", mode="audio_only",
              camera_paused_pct=95),
        _cell("direct", 500, 0, camera_kbps=400), _cell("direct", 500, 3, fps=20.0),
        _cell("direct", 200, 0, fps=5.0, verdict="FAIL"),
    ]  # fmt: skip
    relay, direct, ratio = sweep.heatmap_panels(cells)
    assert (relay.rates, relay.losses) == ([200.0, 500.0], [0.0, 3.0])
    assert relay.values == [[0.0, None], [25.0, 12.0]]  # 200k 3% did not run
    assert relay.labels[0] == ["0 fps (p)\naudio, 95% p.", ""]
    assert relay.labels[1][1] == "12 fps\nlow"
    assert direct.labels[0][0] == "5 fps FAIL\nn/a"
    assert ratio.values == [[1.0, None], [1.25, 1.0]]
    assert ratio.labels[1][0] == "1.25\n500/400k"


def test_a_single_path_has_no_ratio_panel() -> None:
    panels = sweep.heatmap_panels([_cell("direct", 500, 0)])
    assert [p.title for p in panels] == ["direct: classroom fps"]


def test_the_heatmap_is_a_png_when_matplotlib_is_there(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is the bench extra")
    out = tmp_path / "sweep.png"
    sweep.write_heatmap([_cell("relay", 500, 0), _cell("direct", 500, 0)], out, "test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_heatmap_without_matplotlib_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    with pytest.raises(RuntimeError, match=r"tongxin\[bench\]"):
        sweep.write_heatmap([_cell("relay", 500, 0)], tmp_path / "x.png")


@pytest.mark.parametrize(
    ("sends", "shown"),
    [
        ({}, None),
        ({"estimate_kbps": 420, "video-1": {"limited": "bandwidth"}}, "bandwidth, est 420k"),
        ({"video-2": {"limited": "cpu"}, "video-1": {"limited": "none"}}, "none"),
        ({"video-1:q": {"height": 180, "limited": "none"},
          "video-1:h": {"height": 360, "limited": "cpu"}}, "cpu"),
    ],
)
def test_the_row_says_what_limits_the_teachers_camera(
    sends: dict[str, Any], shown: str | None
) -> None:
    assert weaklink.teacher_limited(sends) == shown


async def test_a_saved_sweep_is_shown_again_without_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "sweep.json"
    cells = [_cell("relay", 500, 3, fps=14.0), _cell("direct", 500, 3)]
    saved.write_text(
        json.dumps({"sweep": {"duration_s": 25, "settle_s": 5}, "cells": cells, "note": "n"}),
        encoding="utf-8",
    )
    shown = await weaklink.run(_args(["--from-json", str(saved)]))
    assert shown == {"note": "n"}
    out = capsys.readouterr().out
    assert "500/250k 3%   relay" in out
    assert "goal 500k 3%: relay >= 25 fps: NOT met (14.0)" in out
    again = await weaklink.run(_args(["--json", "--from-json", str(saved)]))
    assert again["cells"] == cells and again["goals"][0]["met"] is False
