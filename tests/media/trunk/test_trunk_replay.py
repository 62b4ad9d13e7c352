"""Each trunk datagram is opened once (media/trunk/replay.py, wire.Opener)."""

from __future__ import annotations

import pytest

from media.trunk.replay import WINDOW, ReplayWindow
from media.trunk.wire import PREFIXES_KEPT, Kind, Opener, Sealer


@pytest.mark.parametrize(
    ("arrivals", "accepted"),
    [
        ([0, 1, 2], [True, True, True]),
        ([0, 1, 1], [True, True, False]),  # a copy
        ([5, 3, 4, 3], [True, True, True, False]),  # reordered, then a copy
        ([0, 10, 0], [True, True, False]),
        ([1000, 1000 - WINDOW + 1, 1000 - WINDOW], [True, True, False]),  # the window's edge
        ([0, 10_000, 5], [True, True, False]),  # far behind
        ([7, 7 + WINDOW, 7], [True, True, False]),  # slid out
        ([7, 7 + WINDOW - 1, 7], [True, True, False]),  # still inside, seen
        ([7, 7 + WINDOW - 1, 8], [True, True, True]),  # still inside, new
    ],
)
def test_a_counter_is_accepted_once_within_the_window(
    arrivals: list[int], accepted: list[bool]
) -> None:
    window = ReplayWindow()
    got = []
    for counter in arrivals:
        ok = window.check(counter)
        if ok:
            window.record(counter)
        got.append(ok)
    assert got == accepted


def test_a_datagram_opens_once_and_a_restarted_sender_starts_afresh() -> None:
    secret = b"s" * 32
    opener = Opener(secret, "room", "origin")
    first = Sealer(secret, "room", "origin")
    datagram = first.seal(Kind.ANNOUNCE, b"old state")
    assert opener.open(datagram) == (Kind.ANNOUNCE, b"old state")
    assert opener.open(datagram) is None and opener.replayed == 1
    restarted = Sealer(secret, "room", "origin")  # a new prefix, its counter from 0 again
    assert opener.open(restarted.seal(Kind.MEDIA, b"x")) == (Kind.MEDIA, b"x")
    assert opener.open(datagram) is None, "the first sender's window is still kept"
    forged = datagram[:-1] + bytes([datagram[-1] ^ 1])
    fresh = Opener(secret, "room", "origin")
    assert fresh.open(forged) is None and fresh.replayed == 0
    assert fresh.open(datagram) is not None, "a datagram that did not open moves no window"
    for _ in range(PREFIXES_KEPT):
        Sealer(secret, "room", "origin")  # (restarts the opener never heard from: no state)
    assert len(fresh._windows) == 1
