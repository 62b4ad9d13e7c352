"""Forwarded headers parse back (with aiortc's own parser) to the subscriber's ids and values."""

from __future__ import annotations

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from media.rtpheader import (
    FIXED_HEADER,
    URI_ABS_SEND_TIME,
    URI_AUDIO_LEVEL,
    URI_MID,
    ExtensionLayout,
    extension_tail,
)


def parse(data: bytes, ids: dict[str, int]) -> RtpPacket:
    ext_map = HeaderExtensionsMap()
    ext_map.configure(
        RTCRtpParameters(
            headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for u, i in ids.items()]
        )
    )
    return RtpPacket.parse(data, ext_map)


@pytest.mark.parametrize(
    ("kind", "ids", "mid", "level", "expect_mid", "expect_abs", "expect_level"),
    [
        ("video", {URI_MID: 1, URI_ABS_SEND_TIME: 3}, "0", None, "0", 0x123456, None),
        ("video", {URI_MID: 9, URI_ABS_SEND_TIME: 14}, "12345", None, "12345", 0x123456, None),
        ("audio", {URI_MID: 1, URI_AUDIO_LEVEL: 2}, "3", (True, 40), "3", None, (True, 40)),
        # audio level negotiated but absent from the source packet: padding, not a value
        ("audio", {URI_MID: 1, URI_AUDIO_LEVEL: 2}, "3", None, "3", None, None),
        # only abs-send-time
        ("video", {URI_ABS_SEND_TIME: 3}, "0", None, None, 0x123456, None),
        # audio level is not sent on video
        ("video", {URI_MID: 1, URI_AUDIO_LEVEL: 2}, "7", (False, 9), "7", None, None),
    ],
)
def test_forwarded_header_extensions_parse_back(
    kind, ids, mid, level, expect_mid, expect_abs, expect_level
) -> None:
    layout = ExtensionLayout.negotiated(mid, ids, kind)
    tail = extension_tail(layout.variant, 0x123456, level)
    data = FIXED_HEADER.pack(layout.first_byte, 0x80 | 100, 7, 9000, 1234) + layout.head()
    data += tail + b"payload"
    packet = parse(data, ids)
    assert (packet.payload_type, packet.marker, packet.sequence_number) == (100, 1, 7)
    assert (packet.timestamp, packet.ssrc, packet.payload) == (9000, 1234, b"payload")
    assert packet.extensions.mid == expect_mid
    assert packet.extensions.abs_send_time == expect_abs
    assert packet.extensions.audio_level == expect_level


def test_no_extensions_means_no_x_bit() -> None:
    layout = ExtensionLayout.negotiated("0", {}, "video")
    assert layout.head() == b""
    assert layout.first_byte == 0x80
    data = FIXED_HEADER.pack(layout.first_byte, 100, 1, 2, 3)
    data += extension_tail(layout.variant, 5, None)
    assert parse(data + b"x", {}).payload == b"x"
