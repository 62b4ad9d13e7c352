"""The waiting room's estimate (pure): how long until a doctor takes a request, from its
position in the queue, the doctors' free places and recent consult durations."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

DEFAULT_SERVICE_S = 600.0
"""Assumed consult duration while there is no history (10 minutes)."""

PICKUP_S = 60.0
"""Expected time for a free doctor to notice and claim a request."""

SERVICE_WINDOW = 50
"""Recent consult durations kept per specialty for the estimate."""


def typical_service_s(recent_durations: Sequence[float]) -> float:
    """Median of recent consult durations (robust to one very long call), or the default."""
    usable = [d for d in recent_durations if d > 0 and math.isfinite(d)]
    return statistics.median(usable) if usable else DEFAULT_SERVICE_S


def estimate_wait_s(
    position: int, free_places: int, total_capacity: int, recent_durations: Sequence[float]
) -> float:
    """Seconds until the request at 0-based `position` is likely taken.

    The first `free_places` requests go to doctors with room now (a pickup delay). Later ones
    wait for consults to finish: every `total_capacity` requests ahead cost one typical consult.
    With nobody on duty the estimate assumes one place, which is optimistic: escalation then
    moves the request to where doctors are.
    """
    if position < free_places:
        return PICKUP_S
    rounds = (position - max(free_places, 0)) // max(total_capacity, 1) + 1
    return PICKUP_S + rounds * typical_service_s(recent_durations)
