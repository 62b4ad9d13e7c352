"""When to ask a publisher for a keyframe: coalesced and rate-limited per published track.

Any number of subscribers may want a keyframe (joining, switching source, PLI/FIR, loss the
relay cannot repair); the publisher gets at most one PLI per `min_interval` seconds, and the
request is repeated at that pace until a keyframe actually arrives.
"""

from __future__ import annotations

DEFAULT_MIN_INTERVAL = 0.4


class KeyframeRequests:
    """Decides, for one published track, whether to send a PLI now."""

    __slots__ = ("_last_sent", "_wanted", "min_interval")

    def __init__(self, min_interval: float = DEFAULT_MIN_INTERVAL) -> None:
        self.min_interval = min_interval
        self._last_sent: float | None = None
        self._wanted = False

    @property
    def wanted(self) -> bool:
        """A keyframe was asked for and none has arrived since."""
        return self._wanted

    def want(self, now: float) -> bool:
        """Someone needs a keyframe; True if a PLI should go out now."""
        self._wanted = True
        return self.due(now)

    def defer(self) -> None:
        """Someone needs a keyframe, but no PLI may go now (the source is paused): `due`
        says yes once asked again."""
        self._wanted = True

    def due(self, now: float) -> bool:
        """True (and counted as sent) if a keyframe is still wanted and the interval passed."""
        if not self._wanted:
            return False
        if self._last_sent is not None and now - self._last_sent < self.min_interval:
            return False
        self._last_sent = now
        return True

    def next_check(self) -> float | None:
        """When `due` may next say yes, while a keyframe is wanted."""
        if not self._wanted or self._last_sent is None:
            return None
        return self._last_sent + self.min_interval

    def keyframe_seen(self) -> None:
        """A keyframe started arriving: everyone waiting gets it."""
        self._wanted = False
