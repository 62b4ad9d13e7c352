"""Sequence numbers and timestamps of one outbound stream, continuous across its sources.

A subscriber sees one sequence and one clock per stream although the stream starts at a
keyframe, switches between sources (the track and its low rendition), pauses and resumes, and
drops packets (temporal layers). `Continuity` owns that: the `SeqMap` (source -> outbound
sequence numbers), the timestamp offset chosen when a source starts (`timing.continuation_offset`)
and the last timestamp sent and when, from which sender reports extrapolate.
"""

from __future__ import annotations

from media.rtp.seqmap import SeqMap
from media.rtp.timing import MASK32, continuation_offset


class Continuity:
    """Where the next packet of a (re)started source lands in the outbound sequence and clock."""

    __slots__ = ("clock_rate", "last_at", "last_ts", "offset", "out_ts", "seqmap", "waiting")

    def __init__(self, first_seq: int, clock_rate: int) -> None:
        self.seqmap = SeqMap(first_seq)
        self.clock_rate = clock_rate
        self.offset = 0
        """Added to a source timestamp (mod 2^32) to give ours."""
        self.waiting = True
        """No source packet placed since the last `restart`: the next one starts a source
        (a keyframe, for video)."""
        self.out_ts = 0
        """The timestamp of the packet `place` placed last."""
        self.last_ts: int | None = None
        """The same, None before the first."""
        self.last_at: float | None = None
        """Wall-clock time the packet with `last_ts` was sent."""

    def restart(self) -> None:
        """The next packet placed starts a source: it follows the last one sent."""
        self.waiting = True
        self.seqmap.restart()

    def start(self, ts: int, now: float) -> None:
        """A source starts with source timestamp `ts` at `now`: our clock keeps running."""
        self.waiting = False
        self.offset = continuation_offset(self.last_ts, self.last_at, now, self.clock_rate, ts)

    def place(self, seq: int, ts: int, now: float) -> int | None:
        """The outbound sequence number for source packet (`seq`, `ts`) sent at `now`, its
        timestamp left in `out_ts`; None if it cannot be placed (then nothing is sent)."""
        out = self.seqmap.map(seq)
        if out is None:
            return None
        self.out_ts = self.last_ts = (ts + self.offset) & MASK32
        self.last_at = now
        return out

    def timestamp(self, ts: int) -> int:
        """Our timestamp for source timestamp `ts`."""
        return (ts + self.offset) & MASK32

    def rtp_timestamp_at(self, now: float) -> int:
        """Our clock at wall-clock `now`, extrapolated from the last packet sent (0 before)."""
        if self.last_ts is None or self.last_at is None:
            return 0
        return (self.last_ts + int((now - self.last_at) * self.clock_rate)) & MASK32
