"""The waiting room's estimate, as a table."""

from __future__ import annotations

import pytest

from broker.wait_estimate import DEFAULT_SERVICE_S, PICKUP_S, estimate_wait_s, typical_service_s


@pytest.mark.parametrize(
    ("durations", "expected"),
    [
        ([], DEFAULT_SERVICE_S),
        ([300.0], 300.0),
        ([300.0, 400.0, 10_000.0], 400.0),  # one very long call does not skew it
        ([0.0, -5.0, float("nan")], DEFAULT_SERVICE_S),  # junk is ignored
        ([100.0, 200.0], 150.0),
    ],
)
def test_typical_service_time_is_the_median_of_recent_consults(
    durations: list[float], expected: float
) -> None:
    assert typical_service_s(durations) == expected


@pytest.mark.parametrize(
    ("position", "free", "capacity", "durations", "expected"),
    [
        (0, 1, 1, [], PICKUP_S),  # a doctor is free: only the pickup delay
        (2, 3, 5, [300.0], PICKUP_S),
        (0, 0, 1, [300.0], PICKUP_S + 300),  # everyone busy: one consult ahead finishes
        (1, 0, 1, [300.0], PICKUP_S + 600),
        (3, 0, 2, [300.0], PICKUP_S + 600),  # two places: requests 2 and 3 wait two rounds
        (4, 2, 2, [300.0], PICKUP_S + 600),
        (0, 0, 0, [], PICKUP_S + DEFAULT_SERVICE_S),  # nobody on duty: still a finite figure
        (5, 0, 0, [], PICKUP_S + 6 * DEFAULT_SERVICE_S),
    ],
)
def test_estimate_grows_with_position_and_shrinks_with_places(
    position: int, free: int, capacity: int, durations: list[float], expected: float
) -> None:
    assert estimate_wait_s(position, free, capacity, durations) == expected


def test_estimate_never_decreases_further_back_in_the_queue() -> None:
    figures = [estimate_wait_s(p, 2, 3, [240.0, 360.0]) for p in range(30)]
    assert figures == sorted(figures)
