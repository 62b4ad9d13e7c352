"""`tongxin bench weaklink --sweep` for real in the lab (root, nftables, tc, Chromium): a tiny
grid (two cells, the relay path, a few seconds each) and the direct call on one cell, checking
the output's shape only — no QoE thresholds (the figures are the benchmark's). Skips with the
reason without root, the tools or Chromium (fails under CI=true, which must run them)."""

from __future__ import annotations

import argparse
import os
from typing import Any

import pytest

from bench import weaklink
from bench.lab.browser import chromium_available

pytestmark = [pytest.mark.netem, pytest.mark.browser, pytest.mark.slow]

ROW_KEYS = {
    "cell", "down_kbps", "up_kbps", "loss_pct", "path", "video_kbps", "camera_kbps",
    "resolution", "fps", "max_freeze_s", "freezes", "audio_concealed_pct", "mode",
    "camera_paused_pct", "verdict", "why", "survived",
}  # fmt: skip


@pytest.fixture
def chromium_ready(lab_ready: None) -> None:
    present, why = chromium_available()
    if present:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the browser bench: {why}")
    pytest.skip(why)


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    weaklink.configure_parser(parser)
    return parser.parse_args(["--json", "--sweep", "--settle", "1", *argv])


def _check_rows(result: dict[str, Any], cells: list[tuple[float, float]], path: str) -> None:
    assert set(result) >= {"sweep", "cells", "goals", "wall_s", "note"}
    rows = result["cells"]
    assert [(r["down_kbps"], r["loss_pct"], r["path"]) for r in rows] == [
        (down, loss, path) for down, loss in cells
    ]
    for row in rows:
        assert "error" not in row, row.get("error")
        assert set(row) >= ROW_KEYS
        assert row["verdict"] in ("ok", "paused", "FAIL")
        assert row["survived"] is True, row
        if path == "relay":
            assert row["mode"] in (*weaklink.sweep.MODES, None)
        else:
            assert row["mode"] == "n/a"


@pytest.mark.timeout(420)
async def test_a_two_cell_sweep_through_the_relay_gives_a_row_per_cell(
    chromium_ready: None,
) -> None:
    result = await weaklink.run(_args(["--rates", "300,1000", "--losses", "1", "--duration", "4"]))
    _check_rows(result, [(1000, 1), (300, 1)], "relay")
    assert result["sweep"]["rates"] == [300, 1000]


@pytest.mark.timeout(240)
async def test_the_direct_call_is_measured_on_a_sweep_cell_joined_on_its_link(
    chromium_ready: None,
) -> None:
    result = await weaklink.run(_args([
        "--rates", "500", "--losses", "3", "--duration", "4", "--path", "direct",
        "--join-shaped",
    ]))  # fmt: skip
    _check_rows(result, [(500, 3)], "direct")
    (row,) = result["cells"]
    assert row["fps"] > 0 and row["codec"]
    assert result["sweep"]["join_shaped"] is True
