"""`Clock`: how the domain learns the time (epoch seconds), always passed in, never read inside."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Returns the current time in epoch seconds (tests pass a settable fake)."""


def system_clock() -> float:
    """The real wall clock (epoch seconds)."""
    return time.time()


class ManualClock:
    """A clock that only moves when told to (tests, benchmarks, demos)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move forward by `seconds`; the new time."""
        self.now += seconds
        return self.now
