"""The RTCP a subscriber sends the relay, parsed with as little work as possible.

Receiver reports, REMB, NACK, PLI and FIR are what the relay acts on; everything else in a
compound packet (SDES, BYE, XR, ...) is skipped. Malformed parts are skipped too, never
raised: a subscriber's garbage must not cost more than reading it.
"""

from __future__ import annotations

from dataclasses import dataclass
from struct import unpack_from

RTCP_SR = 200
RTCP_RR = 201
RTCP_RTPFB = 205
RTCP_PSFB = 206
FMT_NACK = 1
FMT_PLI = 1
FMT_FIR = 4
FMT_APP = 15


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report block about one of our SSRCs."""

    ssrc: int
    fraction_lost: int
    """Loss since the previous report, in 1/256."""
    packets_lost: int
    highest_seq: int
    jitter: int
    lsr: int
    """Middle 32 bits of the NTP time of our last sender report it saw (0: none)."""
    dlsr: int
    """Delay since that report, in 1/65536 s."""


@dataclass(frozen=True, slots=True)
class Remb:
    bitrate: int
    ssrcs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Nack:
    media_ssrc: int
    lost: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class KeyframeRequest:
    """PLI or FIR about `media_ssrc`."""

    media_ssrc: int


Feedback = ReportBlock | Remb | Nack | KeyframeRequest


def _report_blocks(data: bytes, pos: int, count: int, end: int) -> list[ReportBlock]:
    blocks = []
    for _ in range(count):
        if pos + 24 > end:
            break
        ssrc, lost_word, highest, jitter, lsr, dlsr = unpack_from("!LLLLLL", data, pos)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 1 << 24
        blocks.append(ReportBlock(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr))
        pos += 24
    return blocks


def parse_feedback(data: bytes) -> list[Feedback]:
    """Every piece of feedback in a (decrypted, compound) RTCP packet, in order."""
    items: list[Feedback] = []
    pos = 0
    size = len(data)
    while pos + 4 <= size:
        first, packet_type, length = data[pos], data[pos + 1], unpack_from("!H", data, pos + 2)[0]
        end = pos + 4 + 4 * length
        if first >> 6 != 2 or end > size:
            break
        count = first & 0x1F
        if packet_type == RTCP_RR:
            items += _report_blocks(data, pos + 8, count, end)
        elif packet_type == RTCP_SR:
            items += _report_blocks(data, pos + 28, count, end)
        elif packet_type == RTCP_PSFB and end >= pos + 12:
            media_ssrc = unpack_from("!L", data, pos + 8)[0]
            if count == FMT_PLI:
                items.append(KeyframeRequest(media_ssrc))
            elif count == FMT_FIR:
                for fci in range(pos + 12, end - 7, 8):
                    items.append(KeyframeRequest(unpack_from("!L", data, fci)[0]))
            elif count == FMT_APP and end >= pos + 20 and data[pos + 12 : pos + 16] == b"REMB":
                n = data[pos + 16]
                exponent = data[pos + 17] >> 2
                mantissa = ((data[pos + 17] & 3) << 16) | unpack_from("!H", data, pos + 18)[0]
                if pos + 20 + 4 * n <= end:
                    ssrcs = unpack_from(f"!{n}L", data, pos + 20)
                    items.append(Remb(mantissa << exponent, ssrcs))
        elif packet_type == RTCP_RTPFB and count == FMT_NACK and end >= pos + 12:
            media_ssrc = unpack_from("!L", data, pos + 8)[0]
            lost: list[int] = []
            for fci in range(pos + 12, end - 3, 4):
                pid, blp = unpack_from("!HH", data, fci)
                lost.append(pid)
                for bit in range(16):
                    if blp >> bit & 1:
                        lost.append((pid + bit + 1) & 0xFFFF)
            items.append(Nack(media_ssrc, tuple(lost)))
        pos = end
    return items
