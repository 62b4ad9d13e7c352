"""VP8 payload descriptors and H.264 keyframe starts, byte by byte."""

from __future__ import annotations

import pytest

from media.rtp import h264
from media.rtp.vp8 import Vp8Descriptor, is_keyframe_start, parse_descriptor, rewrite_ids

KEY = b"\x00\x9d\x01\x2a"  # VP8 payload header of a keyframe (P bit clear)
DELTA = b"\x01\x9d\x01\x2a"  # P bit set: interframe


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        # bare descriptor: S=1 PID=0
        (b"\x10" + KEY, Vp8Descriptor(False, True, 0, None, 0, None, None, False, None, 1)),
        # continuation packet, N bit set, partition 3
        (b"\x23" + DELTA, Vp8Descriptor(True, False, 3, None, 0, None, None, False, None, 1)),
        # 7-bit picture id (aiortc before 1.0, some Firefox builds)
        (b"\x90\x80\x45" + KEY, Vp8Descriptor(False, True, 0, 0x45, 7, None, None, False, None, 3)),
        # 15-bit picture id as aiortc sends it
        (b"\x90\x80\x92\x34" + KEY,
         Vp8Descriptor(False, True, 0, 0x1234, 15, None, None, False, None, 4)),
        # L1T3 as Chromium sends it: picture id, TL0PICIDX, TID=2 with layer sync
        (b"\x90\xe0\xff\xff\x07\xa0" + DELTA,
         Vp8Descriptor(False, True, 0, 0x7FFF, 15, 7, 2, True, None, 6)),
        # TID=1 without sync, KEYIDX 5
        (b"\x80\xf0\x81\x00\x00\x45" + DELTA,
         Vp8Descriptor(False, False, 0, 0x100, 15, 0, 1, False, 5, 6)),
        # only KEYIDX
        (b"\x80\x10\x1f" + DELTA,
         Vp8Descriptor(False, False, 0, None, 0, None, None, False, 31, 3)),
    ],
)
def test_parse_descriptor_reads_every_field(payload: bytes, expected: Vp8Descriptor) -> None:
    assert parse_descriptor(payload) == expected


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x90", b"\x90\x80", b"\x90\x80\x92", b"\x90\x40", b"\x90\x20", b"\x90\xc0\x01"],
)
def test_parse_descriptor_rejects_truncated(payload: bytes) -> None:
    with pytest.raises(ValueError):
        parse_descriptor(payload)


@pytest.mark.parametrize(
    ("payload", "keyframe"),
    [
        (b"\x10" + KEY, True),
        (b"\x90\x80\x92\x34" + KEY, True),
        (b"\x90\xe0\xff\xff\x07\x20" + KEY, True),
        (b"\x10" + DELTA, False),  # interframe
        (b"\x00" + KEY, False),  # not the start of a partition
        (b"\x11" + KEY, False),  # start of partition 1, not 0
        (b"\x90\x80\x92\x34", False),  # descriptor only, no VP8 header
        (b"", False),
    ],
)
def test_keyframe_start_is_read_from_the_payload_header(payload: bytes, keyframe: bool) -> None:
    assert is_keyframe_start(payload) is keyframe


@pytest.mark.parametrize(
    ("payload", "picture_id", "tl0", "expected"),
    [
        (b"\x90\xe0\x92\x34\x07\x20" + KEY, 0x0001, None, b"\x90\xe0\x80\x01\x07\x20" + KEY),
        (b"\x90\xe0\x92\x34\x07\x20" + KEY, None, 0x99, b"\x90\xe0\x92\x34\x99\x20" + KEY),
        (b"\x90\xe0\x92\x34\x07\x20" + KEY, 0x8005, 0x100, b"\x90\xe0\x80\x05\x00\x20" + KEY),
        # a 7-bit picture id keeps its width
        (b"\x90\xc0\x7f\x07" + DELTA, 0x80, 8, b"\x90\xc0\x00\x08" + DELTA),
        # TL0PICIDX without picture id
        (b"\x90\x40\x07" + DELTA, None, 1, b"\x90\x40\x01" + DELTA),
    ],
)
def test_rewrite_ids_changes_only_those_bytes(
    payload: bytes, picture_id: int | None, tl0: int | None, expected: bytes
) -> None:
    assert rewrite_ids(payload, picture_id, tl0) == expected


@pytest.mark.parametrize(
    ("payload", "picture_id", "tl0"), [(b"\x10" + KEY, 1, None), (b"\x90\x80\x12" + KEY, None, 3)]
)
def test_rewrite_ids_refuses_missing_fields(
    payload: bytes, picture_id: int | None, tl0: int | None
) -> None:
    with pytest.raises(ValueError):
        rewrite_ids(payload, picture_id, tl0)


@pytest.mark.parametrize(
    ("payload", "keyframe"),
    [
        (b"\x67\x42\x00\x1f", True),  # single SPS
        (b"\x65\x88\x84", True),  # single IDR slice
        (b"\x41\x9a\x02", False),  # non-IDR slice
        (b"\x68\xce\x3c\x80", False),  # PPS alone
        (b"\x7c\x85\x88\x84", True),  # FU-A start of an IDR
        (b"\x7c\x45\x88\x84", False),  # FU-A end of an IDR
        (b"\x5c\x81\x9a\x02", False),  # FU-A start of a non-IDR slice
        (b"\x78\x00\x04\x67\x42\x00\x1f\x00\x02\x68\xce", True),  # STAP-A SPS + PPS
        (b"\x78\x00\x02\x06\x05\x00\x02\x68\xce", False),  # STAP-A SEI + PPS
        (b"\x78\x00\x09\x67", False),  # truncated STAP-A
        (b"\x67", False),
    ],
)
def test_h264_keyframe_start_finds_sps_and_idr(payload: bytes, keyframe: bool) -> None:
    assert h264.is_keyframe_start(payload) is keyframe
