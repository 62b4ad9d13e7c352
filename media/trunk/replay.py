"""Replay protection for trunk datagrams: each nonce counter is accepted once.

A sender's nonces are a random prefix chosen when it starts and a counter (`wire.Sealer`), so
per prefix the receiver keeps the highest counter seen and which of the `WINDOW` below it
arrived, as SRTP does: a datagram copied off the wire and sent again (an old ANNOUNCE that
would undo the newer state, audio played twice) is dropped, and so is one older than the
window; datagrams reordered within the window are accepted. Only datagrams that opened (so
were sealed with the peer's key) move the window.
"""

from __future__ import annotations

WINDOW = 256
"""How far behind the highest counter a late datagram is still accepted."""


class ReplayWindow:
    """The counters seen under one nonce prefix."""

    __slots__ = ("_seen", "highest")

    def __init__(self) -> None:
        self.highest = -1
        self._seen = 0
        """Bit i: counter `highest - i` arrived."""

    def check(self, counter: int) -> bool:
        """Whether `counter` is new (neither seen nor too old); does not record it."""
        behind = self.highest - counter
        if behind < 0:
            return True
        return behind < WINDOW and not (self._seen >> behind) & 1

    def record(self, counter: int) -> None:
        """Note `counter` as seen (after `check` and after the datagram opened)."""
        ahead = counter - self.highest
        if ahead > 0:
            self._seen = ((self._seen << ahead) | 1) & ((1 << WINDOW) - 1)
            self.highest = counter
        else:
            self._seen |= 1 << -ahead
