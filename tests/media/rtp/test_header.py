"""Forwarded headers parse back (with aiortc's own parser) to the subscriber's ids and values."""

from __future__ import annotations

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from media.rtp.header import (
    FIXED_HEADER,
    URI_ABS_SEND_TIME,
    URI_AUDIO_LEVEL,
    URI_MID,
    ExtensionLayout,
    extension_tail,
    with_abs_send_time,
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


def forwarded(ids: dict[str, int], kind: str = "video", mid: str = "0") -> bytes:
    """A packet as the forwarder builds it, with abs-send-time 0x123456 where negotiated."""
    layout = ExtensionLayout.negotiated(mid, ids, kind)
    tail = extension_tail(layout.variant, 0x123456, (True, 30))
    return FIXED_HEADER.pack(layout.first_byte, 100, 7, 9000, 1234) + layout.head() + tail + b"x"


@pytest.mark.parametrize(
    ("ids", "kind", "mid"),
    [
        ({URI_MID: 1, URI_ABS_SEND_TIME: 3}, "video", "0"),
        ({URI_MID: 9, URI_ABS_SEND_TIME: 14}, "video", "12345"),  # after a longer element
        ({URI_ABS_SEND_TIME: 3}, "video", "0"),
        ({URI_MID: 1, URI_ABS_SEND_TIME: 3, URI_AUDIO_LEVEL: 2}, "audio", "1"),
    ],
)
def test_abs_send_time_is_rewritten_in_place_and_nothing_else(
    ids: dict[str, int], kind: str, mid: str
) -> None:
    data = forwarded(ids, kind, mid)
    out = with_abs_send_time(data, ids[URI_ABS_SEND_TIME], 0xABCDEF)
    assert len(out) == len(data)
    assert sum(a != b for a, b in zip(out, data, strict=True)) == 3
    packet = parse(out, ids)
    assert packet.extensions.abs_send_time == 0xABCDEF
    assert packet.extensions.mid == (mid if URI_MID in ids else None)
    assert (packet.sequence_number, packet.timestamp, packet.payload) == (7, 9000, b"x")
    if kind == "audio":
        assert packet.extensions.audio_level == (True, 30)


def _with_csrcs(data: bytes, count: int) -> bytes:
    return bytes([data[0] | count]) + data[1:12] + b"\x00\x00\x00\x2a" * count + data[12:]


def test_abs_send_time_is_found_after_csrcs_and_padding_bytes() -> None:
    ids = {URI_ABS_SEND_TIME: 3}
    data = _with_csrcs(forwarded(ids), 2)
    out = with_abs_send_time(data, 3, 0x000102)
    assert out[:-5] == data[:-5] and out[-4:-1] == b"\x00\x01\x02"
    # padding (zero bytes) before an element is skipped: two padding bytes, then the element
    # (its header at 26, its value at 27..29), then padding to the second word's end
    padded = data[:20] + b"\xbe\xde\x00\x02" + b"\x00\x00\x32\x12\x34\x56\x00\x00" + b"x"
    out = with_abs_send_time(padded, 3, 0xABCDEF)
    assert out == padded[:27] + b"\xab\xcd\xef" + padded[30:]


@pytest.mark.parametrize(
    ("data", "ext_id"),
    [
        (forwarded({URI_MID: 1}), 3),  # no abs-send-time element
        (forwarded({URI_MID: 1, URI_ABS_SEND_TIME: 3}), 5),  # another id
        (forwarded({URI_MID: 1, URI_ABS_SEND_TIME: 3}), 0),  # not negotiated
        (forwarded({}), 3),  # no extension at all (no X bit)
        (forwarded({URI_MID: 1, URI_ABS_SEND_TIME: 3})[:14], 3),  # truncated
        # the two-byte header form (profile 0x100x): not what the relay writes, left alone
        (FIXED_HEADER.pack(0x90, 100, 7, 9000, 1234) + b"\x10\x00\x00\x01\x03\x03\x12\x34"
         + b"\x56x", 3),
        # an element of the right id but another length is not abs-send-time
        (FIXED_HEADER.pack(0x90, 100, 7, 9000, 1234) + b"\xbe\xde\x00\x01\x31\x12\x34\x00x", 3),
        # id 15 ends the parse: what follows is not read
        (FIXED_HEADER.pack(0x90, 100, 7, 9000, 1234) + b"\xbe\xde\x00\x02\xf0\x00\x00\x00"
         + b"\x32\x12\x34\x56x", 3),
        # a length that claims more than the packet holds
        (FIXED_HEADER.pack(0x90, 100, 7, 9000, 1234) + b"\xbe\xde\x00\x09\x32\x12\x34", 3),
    ],
)
def test_a_packet_without_that_abs_send_time_element_is_left_unchanged(
    data: bytes, ext_id: int
) -> None:
    assert with_abs_send_time(data, ext_id, 0xABCDEF) == data
