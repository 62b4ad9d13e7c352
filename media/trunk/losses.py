"""Packets of a remote track lost on the trunk, told from the sequence numbers that arrive.

The owner keeps each video track's recent packets (`InboundTrack.from_history`), so the
receiving node asks for the ones that did not arrive (a trunk NACK) and the owner sends them
again, to that node only. `gap` is the pure decision: given the highest sequence number seen
and the one just arrived, the new highest and the numbers missing in between. A jump of more
than `MAX_GAP` (a new SSRC or a restart, or a burst no history would cover) asks for nothing.
"""

from __future__ import annotations

MAX_GAP = 64
"""The most packets one arrival may reveal missing (more: a restart, not a loss)."""


def gap(highest: int | None, seq: int) -> tuple[int, list[int]]:
    """(new highest sequence number, the numbers missing before `seq`), modulo 2^16. A late
    or repeated packet changes nothing and reveals nothing."""
    if highest is None:
        return seq, []
    ahead = (seq - highest) & 0xFFFF
    if ahead == 0 or ahead >= 0x8000:
        return highest, []
    if ahead > MAX_GAP:
        return seq, []
    return seq, [(highest + i) & 0xFFFF for i in range(1, ahead)]
