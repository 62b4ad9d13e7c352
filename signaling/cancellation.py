"""Stopping a background task for sure.

A loop that retries on store errors can swallow a cancel: in Python 3.11 a cancel that lands
while `asyncio.timeout` expires comes out as TimeoutError (here StoreUnavailable), and the loop
goes round again. `cancel_and_wait` cancels until the task has really ended.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any], tries: int = 20) -> None:
    """Cancel `task` until it ends: a cancel that lands while a store call times out can be
    turned into a timeout (asyncio.timeout in Python 3.11) and swallowed by a retry loop."""
    for _ in range(tries):
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=0.5)
        if done:
            break
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: the loop logs its own failures
