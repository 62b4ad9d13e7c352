"""Transport-cc wire format: the sequence number extension, feedback encode/decode and split.

The decode vectors are Pion's (pion/rtcp transport_layer_cc_test.go, as webrtc-rs carries
them); the chunk vectors are the draft's section 3.1.3 examples.
"""

from __future__ import annotations

import struct

import pytest

from media.rtp.twcc import (
    LARGE_DELTA,
    NO_DELTA,
    NOT_RECEIVED,
    SMALL_DELTA,
    TransportFeedback,
    _chunks,
    decode_feedback,
    encode_feedback,
    feedback_from_arrivals,
    read_transport_sequence,
)

R, L, N, X = SMALL_DELTA, LARGE_DELTA, NOT_RECEIVED, NO_DELTA
SENDER, MEDIA = 4195875351, 423483579


def rtp(extension: bytes, csrcs: int = 0) -> bytes:
    header = struct.pack("!BBHII", 0x90 | csrcs, 96, 1, 2, 3) + b"\x00\x00\x00\x01" * csrcs
    return header + extension + b"payload"


def one_byte(*elements: bytes) -> bytes:
    body = b"".join(elements)
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("!HH", 0xBEDE, len(body) // 4) + body


def two_byte(*elements: bytes) -> bytes:
    body = b"".join(elements)
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("!HH", 0x1000, len(body) // 4) + body


@pytest.mark.parametrize(
    ("packet", "ext_id", "expected"),
    [
        (rtp(one_byte(b"\x51\x12\x34")), 5, 0x1234),
        # after a mid element and padding
        (rtp(one_byte(b"\x10a", b"\x00", b"\x31\xff\xfe")), 3, 0xFFFE),
        (rtp(one_byte(b"\x51\x12\x34"), csrcs=2), 5, 0x1234),
        (rtp(one_byte(b"\x51\x12\x34")), 4, None),  # another id
        (rtp(one_byte(b"\x52\x12\x34\x56")), 5, None),  # wrong length
        (rtp(one_byte(b"\xf0", b"\x51\x12\x34")), 5, None),  # id 15 ends the parse
        (rtp(two_byte(b"\x01\x01a", b"\x07\x02\xab\xcd")), 7, 0xABCD),
        (rtp(two_byte(b"\x00\x07\x02\x00\x05")), 7, 5),  # padding first
        (rtp(two_byte(b"\x07\x01\xab")), 7, None),  # wrong length
        (struct.pack("!BBHII", 0x80, 96, 1, 2, 3) + b"x" * 8, 5, None),  # no X bit
        (rtp(one_byte(b"\x51\x12\x34"))[:16], 5, None),  # truncated extension
        (b"\x90\x60", 5, None),
        (rtp(one_byte(b"\x51\x12\x34")), 0, None),
    ],
)
def test_read_transport_sequence(packet: bytes, ext_id: int, expected: int | None) -> None:
    assert read_transport_sequence(packet, ext_id) == expected


@pytest.mark.parametrize(
    ("statuses", "chunks"),
    [
        ([N] * 221, [0x00DD]),  # draft example 1: run of 221 not received
        ([R] * 7, [0x2007]),
        ([L, L], [0x4002]),
        ([N] * 0x1FFF + [N], [0x1FFF, 0x0001]),
        # one-bit vector: 14 symbols, no large delta (draft example: R N N N N N N N N N N N N N)
        ([R] + [N] * 5 + [R] * 8, [0xA0FF]),
        # two-bit vector when a large delta is among them (draft example)
        ([R, L, N, N, N, N, N], [0xD800]),
        # a run follows a mixed start
        # a one-bit vector fills up to 14 symbols before the run takes over
        ([R, N] + [R] * 20, [0xAFFF, 0x2008]),
        ([L, N] + [R] * 12, [0xC000 | (L << 12) | 0x155, 0x2007]),
        ([], []),
    ],
)
def test_chunks(statuses: list[int], chunks: list[int]) -> None:
    assert _chunks(statuses) == chunks


PION = [
    # example1: one packet, small delta, padding 1
    (
        bytes([0xAF, 0xCD, 0x0, 0x5, 0xFA, 0x17, 0xFA, 0x17, 0x43, 0x3, 0x2F, 0xA0, 0x0, 0x99,
               0x0, 0x1, 0x3D, 0xE8, 0x2, 0x17, 0x20, 0x1, 0x94, 0x1]),
        TransportFeedback(4195875351, 1124282272, 153, 4057090, 23, (R,), (148,)),
    ),
    # example2: two two-bit vectors, a large delta and "received without delta" symbols
    (
        bytes([0xAF, 0xCD, 0x0, 0x6, 0xFA, 0x17, 0xFA, 0x17, 0x19, 0x3D, 0xD8, 0xBB, 0x1,
               0x74, 0x0, 0xE, 0x45, 0xB1, 0x5A, 0x40, 0xD8, 0x0, 0xF0, 0xFF, 0xD0, 0x0, 0x0,
               0x3]),
        TransportFeedback(SENDER, MEDIA, 372, 4567386, 64,
                          (R, L, N, N, N, N, N, X, N, N, X, X, X, X), (208, 0)),
    ),
    # example3: two runs, large deltas
    (
        bytes([0xAF, 0xCD, 0x0, 0x7, 0xFA, 0x17, 0xFA, 0x17, 0x19, 0x3D, 0xD8, 0xBB, 0x1,
               0x74, 0x0, 0x6, 0x45, 0xB1, 0x5A, 0x40, 0x40, 0x2, 0x20, 0x04, 0x1F, 0xFE,
               0x1F, 0x9A, 0xD0, 0x0, 0xD0, 0x0]),
        TransportFeedback(SENDER, MEDIA, 372, 4567386, 64, (L, L, R, R, R, R),
                          (8190, 8090, 208, 0, 208, 0)),
    ),
    # example4: a run of 7 small deltas, padding 3
    (
        bytes([0xAF, 0xCD, 0x0, 0x7, 0xFA, 0x17, 0xFA, 0x17, 0x19, 0x3D, 0xD8, 0xBB, 0x0, 0x4,
               0x0, 0x7, 0x10, 0x63, 0x6E, 0x1, 0x20, 0x7, 0x4C, 0x24, 0x24, 0x10, 0xC, 0xC,
               0x10, 0x0, 0x0, 0x3]),
        TransportFeedback(SENDER, MEDIA, 4, 1074030, 1, (R,) * 7, (76, 36, 36, 16, 12, 12, 16)),
    ),
    # example5: a one-bit vector
    (
        bytes([0xAF, 0xCD, 0x0, 0x6, 0xFA, 0x17, 0xFA, 0x17, 0x19, 0x3D, 0xD8, 0xBB, 0x0, 0x1,
               0x0, 0xE, 0x10, 0x63, 0x6D, 0x0, 0xBA, 0x0, 0x10, 0xC, 0xC, 0x10, 0x0, 0x3]),
        TransportFeedback(SENDER, MEDIA, 1, 1074029, 0, (R, R, R, N, R) + (N,) * 9,
                          (16, 12, 12, 16)),
    ),
]


@pytest.mark.parametrize(("data", "feedback"), PION)
def test_decode_pion_vectors(data: bytes, feedback: TransportFeedback) -> None:
    assert decode_feedback(data) == feedback


@pytest.mark.parametrize(("data", "feedback"), [PION[0], PION[3], PION[4]])
def test_encode_matches_pion_vectors(data: bytes, feedback: TransportFeedback) -> None:
    encoded = encode_feedback(feedback)
    assert encoded[:-1] == data[:-1]
    # the pad count, which Pion's example 5 (2 bytes of padding) gets wrong
    assert encoded[-1] == len(encoded) - 20 - 2 * len(_chunks(feedback.statuses)) - sum(
        1 if status == SMALL_DELTA else 2 for status in feedback.statuses if status in (R, L)
    )


@pytest.mark.parametrize(
    "feedback",
    [
        TransportFeedback(1, 2, 65535, 0xFFFFFF, 255, (R, N, L, L, R), (0, -5, 300, 255)),
        TransportFeedback(1, 2, 0, 5, 0, (R,) + (N,) * 9000 + (L,), (3, -32768)),
        TransportFeedback(1, 2, 7, 5, 9, (L,) * 20 + (R, N) * 30, (32767,) * 20 + (1,) * 30),
    ],
)
def test_round_trip(feedback: TransportFeedback) -> None:
    data = encode_feedback(feedback)
    assert len(data) % 4 == 0
    assert decode_feedback(data) == feedback


@pytest.mark.parametrize(
    "data",
    [
        b"",
        PION[0][0][:20],
        PION[3][0][:-4],  # the length says more than there is
        bytes([0x81, 0xCD, 0x0, 0x4]) + bytes(16),  # FMT 1 (NACK)
        bytes([0x8F, 0xC9, 0x0, 0x4]) + bytes(16),  # PT 201 (RR)
        bytes([0x8F, 0xCD, 0x0, 0x4]) + bytes(8) + b"\x00\x00\x00\x05" + bytes(4),  # no chunks
        bytes([0x8F, 0xCD, 0x0, 0x5]) + bytes(8) + b"\x00\x00\x00\x01" + bytes(4)
        + b"\x20\x01\x00\x00",  # a small delta announced, none there? (0x00 is one)
    ],
)
def test_decode_rejects_what_is_not_feedback(data: bytes) -> None:
    if data.endswith(b"\x20\x01\x00\x00"):
        assert decode_feedback(data) is not None  # the delta byte 0x00 is there
    else:
        assert decode_feedback(data) is None


def test_decode_empty_feedback() -> None:
    decoded = decode_feedback(bytes([0x8F, 0xCD, 0x0, 0x4]) + bytes(16))
    assert decoded is not None and decoded.statuses == () and decoded.deltas == ()


MS = 1000


@pytest.mark.parametrize(
    ("arrivals", "expected"),
    [
        # in order, 1 ms apart: reference 64 ms units, deltas in 250 µs ticks
        ([100 * MS, 101 * MS, 102 * MS], [(0, 1, (R, R, R), (144, 4, 4))]),
        # a loss in the middle, a leading loss reported with the first received packet
        ([None, 100 * MS, None, 103 * MS], [(0, 1, (N, R, N, R), (144, 12))]),
        # reordered: negative delta is a large one
        ([100 * MS, 99 * MS, 150 * MS], [(0, 1, (R, L, R), (144, -4, 204))]),
        # trailing losses are not reported
        ([100 * MS, None, None], [(0, 1, (R,), (144,))]),
        ([None, None], []),
        # more than 8.19 s between two received packets: a second feedback, from the loss
        # just before the late packet
        ([100 * MS, None, 9000 * MS],
         [(0, 1, (R,), (144,)), (1, 140, (N, R), (160,))]),
    ],
)
def test_feedback_from_arrivals(
    arrivals: list[int | None], expected: list[tuple[int, int, tuple[int, ...], tuple[int, ...]]]
) -> None:
    built = feedback_from_arrivals(65535, arrivals, 7, SENDER, MEDIA)
    assert [(f.base_seq, f.reference_time, f.statuses, f.deltas) for f in built] == [
        ((65535 + offset) & 0xFFFF, ref, statuses, deltas)
        for offset, ref, statuses, deltas in expected
    ]
    assert [f.feedback_count for f in built] == [7 + i for i in range(len(built))]
    # what the sender reads back: each received packet's arrival to the 250 µs tick
    decoded: list[int | None] = []
    for f in built:
        again = decode_feedback(encode_feedback(f))
        assert again is not None
        decoded += [None if t is None else t for t in again.arrivals_us()]
    received = [t for t in arrivals if t is not None]
    assert [t for t in decoded if t is not None] == [t // 250 * 250 for t in received]


def test_feedback_split_by_received_count() -> None:
    arrivals = [1_000_000 + 500 * i for i in range(600)]
    built = feedback_from_arrivals(10, arrivals, 0, SENDER, MEDIA, max_received=250)
    assert [len(f.statuses) for f in built] == [250, 250, 100]
    assert [f.base_seq for f in built] == [10, 260, 510]
    assert all(len(encode_feedback(f)) < 1200 for f in built)
