"""Bounded waiting for conditions that become true later (no fixed sleeps, no timing asserts)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def wait_until(
    condition: Callable[[], Any | Awaitable[Any]],
    *,
    within: float = 5.0,
    interval: float = 0.02,
    what: str = "condition",
) -> float:
    """Poll `condition` (sync or async) until it is truthy; the seconds it took.

    Raises AssertionError naming `what` when `within` seconds pass first.
    """
    start = time.monotonic()
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return time.monotonic() - start
        if time.monotonic() - start > within:
            raise AssertionError(f"{what} not reached within {within:g} s")
        await asyncio.sleep(interval)
