"""`Ticker`: ticks until stopped, survives a failing tick, start and stop are idempotent."""

from __future__ import annotations

import asyncio

import pytest

from media.adapt.ticker import Ticker

pytestmark = pytest.mark.timeout(30)


async def test_a_failing_tick_is_logged_and_the_next_one_runs(caplog) -> None:
    calls: list[int] = []

    def tick() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise ValueError("a bad figure")

    ticker = Ticker(tick, 0.01, "test tick")
    ticker.start()
    ticker.start()
    for _ in range(1000):
        if len(calls) >= 3:
            break
        await asyncio.sleep(0.01)
    await ticker.stop()
    await ticker.stop()
    assert len(calls) >= 3 and not ticker.running
    assert "test tick failed" in caplog.text
    after = len(calls)
    await asyncio.sleep(0.05)
    assert len(calls) == after, "no tick after stop"
