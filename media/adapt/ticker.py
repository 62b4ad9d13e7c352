"""`Ticker`: one function called every `interval_s` on the event loop until stopped.

Per-subscriber adaptation decisions and a publisher's REMB cap both run this way. `start` is
idempotent; `stop` cancels and waits; a tick that raises is logged and the next one runs (a
bad figure from one subscriber must not end its adaptation for the rest of the session).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Ticker:
    """Calls `tick()` every `interval_s` seconds between `start()` and `stop()`."""

    def __init__(self, tick: Callable[[], object], interval_s: float, what: str) -> None:
        self.interval_s = interval_s
        """Read before each sleep, so a test may shorten it after construction."""
        self._tick = tick
        self._what = what
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start ticking (idempotent)."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop ticking and wait for the task to end (idempotent)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self._tick()
            except Exception:
                logger.exception("%s failed", self._what)
