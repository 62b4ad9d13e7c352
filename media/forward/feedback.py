"""The one RTCP dispatcher: each piece of a subscriber's feedback to the stream it is about.

Feedback arrives two ways: as the bytes of a (decrypted) compound packet, parsed by
`rtcp_feedback.parse_feedback` when the relay's fast path receives the downlink's RTCP
(`deliver_feedback`), or as packets aiortc parsed and routed to one sender (`from_aiortc`
turns them into the same items). Either way `dispatch` hands each item to its stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)

from media.rtp.rtcp_feedback import (
    Feedback,
    KeyframeRequest,
    Nack,
    Remb,
    ReportBlock,
    parse_feedback,
)


class FeedbackTarget(Protocol):
    """What a subscriber's feedback about one of its streams acts on (`OutboundStream`)."""

    def on_report(self, report: ReportBlock) -> None: ...

    def on_remb(self, bps: int) -> None: ...

    def retransmit(self, lost: Iterable[int]) -> None: ...

    def keyframe_wanted(self) -> None: ...


def dispatch(items: Iterable[Feedback], streams: Mapping[int, FeedbackTarget]) -> None:
    """Hand each item to the stream (by SSRC) it is about; items about others are ignored."""
    for item in items:
        if type(item) is ReportBlock:
            stream = streams.get(item.ssrc)
            if stream is not None:
                stream.on_report(item)
        elif type(item) is Remb:
            for ssrc in item.ssrcs:
                stream = streams.get(ssrc)
                if stream is not None:
                    stream.on_remb(item.bitrate)
        elif type(item) is Nack:
            stream = streams.get(item.media_ssrc)
            if stream is not None:
                stream.retransmit(item.lost)
        elif type(item) is KeyframeRequest:
            stream = streams.get(item.media_ssrc)
            if stream is not None:
                stream.keyframe_wanted()


def deliver_feedback(data: bytes, streams: Mapping[int, FeedbackTarget]) -> None:
    """Hand each piece of a subscriber's (decrypted) RTCP to the stream it is about."""
    dispatch(parse_feedback(data), streams)


def from_aiortc(packet: AnyRtcpPacket) -> list[Feedback]:
    """The feedback in one RTCP packet as aiortc parsed it, as `parse_feedback` gives it."""
    if isinstance(packet, RtcpRtpfbPacket):
        if packet.fmt == RTCP_RTPFB_NACK:
            return [Nack(packet.media_ssrc, tuple(packet.lost))]
    elif isinstance(packet, RtcpPsfbPacket):
        if packet.fmt == RTCP_PSFB_PLI:
            return [KeyframeRequest(packet.media_ssrc)]
        if packet.fmt == RTCP_PSFB_FIR:
            # the SSRCs asked for are in the FCI entries (8 bytes each)
            fci = packet.fci
            ssrcs = [int.from_bytes(fci[i : i + 4], "big") for i in range(0, len(fci) - 7, 8)]
            return [KeyframeRequest(ssrc) for ssrc in ssrcs or [packet.media_ssrc]]
        if packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return []
            return [Remb(bitrate, tuple(ssrcs))]
    elif isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
        return [
            ReportBlock(
                r.ssrc, r.fraction_lost, r.packets_lost, r.highest_sequence, r.jitter, r.lsr,
                r.dlsr,
            )
            for r in packet.reports
        ]
    return []
