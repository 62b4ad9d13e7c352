"""Which packets answer a subscriber's NACK (`answer_nack`), and the RTX payload form.

A NACK names outbound sequence numbers. Each is turned back into the source's number
(`SeqMap.reverse`) and looked up in the source track's history; a packet gone from the
history, or older than `RETRANSMIT_MAX_AGE_S`, is left to a keyframe instead (the answer says
so), and on a layer-dropping stream a packet gets the picture ids it was first sent with (one
of a frame left out is not sent at all). Sending is the stream's (`OutboundStream.retransmit`),
which holds its answers while the downlink's pacer is behind (`RETRANSMIT_BACKLOG_MAX_S`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from aiortc.rtp import RtpPacket

from media.rtp.header import SEQUENCE

RETRANSMIT_BACKLOG_MAX_S = 0.2
"""While the downlink's pacer holds more than this many seconds of video, NACKs are not
answered (`OutboundStream.retransmit`): the link is already behind, and its answers would
only queue behind the video they repair. On a 300 kbit/s classroom losing 3% at random, the
NACKs of a queue's losses came faster than the link carried their answers (84 NACKed in 3 s,
the pacer's queue at 26 KB, 0.6 s; RTT 300 ms; loss 21%, then 87%) and the camera paused. A
receiver NACKs a missing packet again about once an RTT: what is held now is answered once
the queue has drained, if still within `RETRANSMIT_MAX_AGE_S`."""
RETRANSMIT_MAX_AGE_S = 1.0
"""A NACKed packet this much older than the track's newest is not sent again: the subscriber's
jitter buffer has moved on, and after a cut, retransmitting the cut's seconds of packets
flooded the link as it came back (the pacer trimmed half of it for 5 s); a keyframe
repairs it instead."""


class History(Protocol):
    """A source track's recent packets (`InboundTrack`)."""

    def from_history(self, seq: int) -> RtpPacket | None: ...

    def age_s(self, packet: RtpPacket) -> float: ...


@dataclass(slots=True)
class NackAnswer:
    resend: list[tuple[int, RtpPacket, bytes]] = field(default_factory=list)
    """(outbound sequence number, source packet, payload to send) for each packet to resend."""
    asked: int = 0
    """Sequence numbers the NACK named."""
    unrepaired: bool = False
    """Some of them cannot be resent: a keyframe has to repair them."""


def answer_nack(
    lost: Iterable[int],
    reverse: Callable[[int], int | None],
    history: History,
    resent_payload: Callable[[bytes], bytes | None] | None = None,
    max_age_s: float = RETRANSMIT_MAX_AGE_S,
) -> NackAnswer:
    """The packets to resend for outbound numbers `lost`: `reverse` maps ours to the source's,
    `resent_payload` (a layer-dropping stream's) gives a payload its sent ids, or None for a
    frame never sent."""
    answer = NackAnswer()
    for out in lost:
        answer.asked += 1
        out &= 0xFFFF
        seq = reverse(out)
        packet = history.from_history(seq) if seq is not None else None
        if packet is None or history.age_s(packet) > max_age_s:
            answer.unrepaired = True
            continue
        payload = packet.payload
        if resent_payload is not None:
            rewritten = resent_payload(payload)
            if rewritten is None:
                continue  # a frame we left out (or too old to place)
            payload = rewritten
        answer.resend.append((out, packet, payload))
    return answer


def rtx_payload(out: int, payload: bytes) -> bytes:
    """An RTX payload (RFC 4588): the original sequence number, then the original payload."""
    return SEQUENCE.pack(out) + payload
