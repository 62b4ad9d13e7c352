"""RTCP reports of one outbound stream: the sender reports we fill, and what the subscriber's
receiver reports and REMB say back (loss, jitter, RTT, bitrate).

aiortc's sender never sees a forwarded packet, so its sender reports would say zero; the
stream fills them from its own counters and clock (`sender_info`). Each one sent is remembered
for a while by its middle NTP bits, so a receiver report echoing it (LSR, DLSR) gives the round
trip time (`round_trip_s`).
"""

from __future__ import annotations

from aiortc.rtp import RtcpSenderInfo

from media.rtp.rtcp_feedback import ReportBlock
from media.rtp.timing import MASK32, ntp_timestamp

REPORTS_KEPT = 8
"""Sender reports remembered for RTT."""


def sender_info(ntp: int, rtp_ts: int, packets: int, octets: int) -> RtcpSenderInfo:
    """The sender-info block: our clock pair and counters (each counter modulo 2^32)."""
    return RtcpSenderInfo(
        ntp_timestamp=ntp, rtp_timestamp=rtp_ts, packet_count=packets & MASK32,
        octet_count=octets & MASK32,
    )


def round_trip_s(sent_at: float | None, dlsr: int, now: float) -> float | None:
    """The RTT a report received at `now` gives: it echoes a sender report sent at `sent_at`
    (None: not one of ours we remember), held `dlsr` 1/65536 s by the subscriber (0: no
    echo)."""
    if sent_at is None or not dlsr:
        return None
    return max(0.0, now - sent_at - dlsr / 65536)


class StreamReports:
    """The sender reports sent on one stream and the latest the subscriber said about it."""

    __slots__ = ("_sent", "fraction_lost", "jitter", "packets_lost", "remb_bps", "rtt")

    def __init__(self) -> None:
        self._sent: dict[int, float] = {}  # middle 32 bits of the NTP time -> time sent
        self.fraction_lost = 0
        self.packets_lost = 0
        self.jitter = 0
        self.rtt: float | None = None
        self.remb_bps: int | None = None

    def sent(self, now: float) -> int:
        """A sender report goes out at `now`: its NTP timestamp, remembered for RTT."""
        ntp = ntp_timestamp(now)
        self._sent[(ntp >> 16) & MASK32] = now
        if len(self._sent) > REPORTS_KEPT:
            del self._sent[next(iter(self._sent))]
        return ntp

    def received(self, report: ReportBlock, now: float) -> None:
        """A reception report about the stream, received at `now`."""
        self.fraction_lost = report.fraction_lost
        self.packets_lost = report.packets_lost
        self.jitter = report.jitter
        rtt = round_trip_s(self._sent.get(report.lsr), report.dlsr, now)
        if rtt is not None:
            self.rtt = rtt
