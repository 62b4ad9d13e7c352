"""The trunk microbench (tests/media/trunk/trunk_cost.py) runs and measures every figure (no
timing is asserted: the figures are for reading side by side)."""

from __future__ import annotations

from tests.media.trunk.trunk_cost import measure


async def test_the_microbench_measures_every_figure() -> None:
    figures = await measure(200)
    assert len(figures) == 7 and all(ns > 0 for ns in figures.values())
