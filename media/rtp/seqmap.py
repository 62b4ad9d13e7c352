"""Sequence-number remapping for one outbound RTP stream (like Galène's packetmap).

A subscriber sees one continuous sequence per outbound stream even though the relay drops
packets on purpose (temporal layers) and switches the stream between sources. `SeqMap.map`
turns a source sequence number into the outbound one, `SeqMap.drop` removes an in-order
packet from the outbound sequence without leaving a hole, `SeqMap.restart` makes the next
mapped packet (of a new source) follow the last outbound one, and `SeqMap.reverse` turns an
outbound number from a subscriber's NACK back into the source's number; `SeqMap.take` gives
a number to a packet of the relay's own (padding).
"""

from __future__ import annotations

MASK = 0xFFFF
HALF = 0x8000
# A forward jump larger than this is a source reset (e.g. an encoder restart), not loss.
MAX_GAP = 0x2000
# Closed intervals kept for late packets and NACK translation.
MAX_INTERVALS = 64


class SeqMap:
    """Maps source sequence numbers onto one continuous outbound sequence."""

    __slots__ = ("_delta", "_first", "_intervals", "_next_in", "_next_out", "_open")

    def __init__(self, first_out: int = 0) -> None:
        self._next_out = first_out & MASK
        self._open = False
        self._next_in = 0
        self._delta = 0
        self._first = 0
        # (first_in, end_in exclusive, delta) of intervals closed by a drop, oldest first.
        self._intervals: list[tuple[int, int, int]] = []

    @property
    def next_out(self) -> int:
        """The outbound number the next new packet will get."""
        if self._open:
            return (self._next_in + self._delta) & MASK
        return self._next_out

    def restart(self) -> None:
        """Make the next mapped packet start a new source right after the last outbound one."""
        if self._open:
            self._next_out = (self._next_in + self._delta) & MASK
        self._open = False
        self._intervals = []

    def take(self) -> int:
        """The next outbound number, for a packet of the relay's own (padding while the stream
        is paused): the current source's interval is closed, and the next source packet
        mapped follows this one."""
        self.restart()
        out = self._next_out
        self._next_out = (out + 1) & MASK
        return out

    def map(self, seq: int) -> int | None:
        """Return the outbound number for source `seq`, or None if it cannot be placed."""
        gap = (seq - self._next_in) & MASK
        if gap < MAX_GAP and self._open:
            # In order (gap 0) or after lost packets: extend the current interval.
            self._next_in = (seq + 1) & MASK
            return (seq + self._delta) & MASK
        return self._map_slow(seq, gap)

    def _map_slow(self, seq: int, gap: int) -> int | None:
        if not self._open or gap < HALF:
            # First packet of a source, or a jump too large to be loss: anchor here.
            if self._open:
                self._next_out = (self._next_in + self._delta) & MASK
            self._open = True
            self._intervals = []
            self._first = seq
            self._delta = (self._next_out - seq) & MASK
            self._next_in = (seq + 1) & MASK
            return self._next_out
        return self._lookup(seq)

    def _lookup(self, seq: int) -> int | None:
        """An old (late or retransmitted) packet: find the interval it belongs to."""
        if (seq - self._first) & MASK < (self._next_in - self._first) & MASK:
            return (seq + self._delta) & MASK
        for first, end, delta in reversed(self._intervals):
            if (seq - first) & MASK < (end - first) & MASK:
                return (seq + delta) & MASK
        return None

    def drop(self, seq: int) -> bool:
        """Leave in-order packet `seq` out of the outbound sequence; False if it is not next."""
        if not self._open or seq != self._next_in:
            return False
        if self._first != seq:
            self._intervals.append((self._first, seq, self._delta))
            if len(self._intervals) > MAX_INTERVALS:
                del self._intervals[0]
        self._delta = (self._delta - 1) & MASK
        self._next_in = self._first = (seq + 1) & MASK
        return True

    def reverse(self, out: int) -> int | None:
        """Return the source number that was sent as outbound `out`, or None if unknown."""
        if not self._open:
            return None
        seq = (out - self._delta) & MASK
        if (seq - self._first) & MASK < (self._next_in - self._first) & MASK:
            return seq
        for first, end, delta in reversed(self._intervals):
            seq = (out - delta) & MASK
            if (seq - first) & MASK < (end - first) & MASK:
                return seq
        return None
