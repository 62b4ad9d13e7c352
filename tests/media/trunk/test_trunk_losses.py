"""Which packets of a remote track the trunk lost (media/trunk/losses.py)."""

from __future__ import annotations

import pytest

from media.trunk.losses import MAX_GAP, gap


@pytest.mark.parametrize(
    ("highest", "seq", "expected"),
    [
        (None, 100, (100, [])),  # the first packet
        (100, 101, (101, [])),  # in order
        (100, 104, (104, [101, 102, 103])),  # three lost
        (65534, 1, (1, [65535, 0])),  # lost across the wrap
        (100, 100, (100, [])),  # a repeat
        (100, 99, (100, [])),  # late (a loss being repaired)
        (5, 65530, (5, [])),  # late across the wrap
        (100, 100 + MAX_GAP, (100 + MAX_GAP, list(range(101, 100 + MAX_GAP)))),
        (100, 101 + MAX_GAP, (101 + MAX_GAP, [])),  # a jump: a restart, not a loss
        (100, 100 + 0x7FFF, (100 + 0x7FFF, [])),
    ],
)
def test_what_an_arrival_reveals_missing(
    highest: int | None, seq: int, expected: tuple[int, list[int]]
) -> None:
    assert gap(highest, seq) == expected
