"""The relay reads subscribers' RTCP (as aiortc and browsers write it) without aiortc's parser."""

from __future__ import annotations

import struct

import pytest
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpByePacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    pack_remb_fci,
)

from media.rtp.rtcp_feedback import KeyframeRequest, Nack, Remb, ReportBlock, parse_feedback

INFO = RtcpReceiverInfo(
    ssrc=1111, fraction_lost=25, packets_lost=-3, highest_sequence=70000, jitter=42,
    lsr=0xABCD1234, dlsr=65536,
)
BLOCK = ReportBlock(1111, 25, -3, 70000, 42, 0xABCD1234, 65536)
NACK_WRAP = struct.pack("!BBHLLHHHH", 0x81, 205, 4, 9, 1111, 65535, 1, 3, 0)
FIR = struct.pack("!BBHLL", 0x84, 206, 4, 9, 0) + struct.pack("!LBxxx", 2222, 7)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (bytes(RtcpRrPacket(ssrc=9, reports=[INFO])), [BLOCK]),
        (bytes(RtcpRrPacket(ssrc=9, reports=[])), []),
        (
            bytes(RtcpSrPacket(ssrc=9, sender_info=RtcpSenderInfo(1, 2, 3, 4), reports=[INFO])),
            [BLOCK],
        ),
        (
            bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=9, media_ssrc=0,
                                 fci=pack_remb_fci(1_234_567, [1111, 2222]))),
            [Remb(1_234_560, (1111, 2222))],
        ),
        (
            bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=9, media_ssrc=2222)),
            [KeyframeRequest(2222)],
        ),
        (FIR, [KeyframeRequest(2222)]),
        (
            bytes(RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=9, media_ssrc=1111,
                                  lost=[5, 6, 9, 100])),
            [Nack(1111, (5, 6, 9, 100))],
        ),
        # NACK across the sequence wrap: (PID 65535, BLP bit 0) then PID 3
        (NACK_WRAP, [Nack(1111, (65535, 0, 3))]),
        # compound: RR + SDES + REMB, SDES skipped
        (
            bytes(RtcpRrPacket(ssrc=9, reports=[INFO]))
            + bytes(RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=9, items=[(1, b"cname")])]))
            + bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=9, media_ssrc=0,
                                   fci=pack_remb_fci(300_000, [1111]))),
            [BLOCK, Remb(300_000, (1111,))],
        ),
        (bytes(RtcpByePacket(sources=[9])), []),
        # truncated or not RTCP version 2: nothing, no exception
        (bytes(RtcpRrPacket(ssrc=9, reports=[INFO]))[:20], []),
        (b"\x00\xc9\x00\x01\x00\x00\x00\x09", []),
        (b"", []),
    ],
)
def test_parse_feedback(data: bytes, expected: list) -> None:
    assert parse_feedback(data) == expected
