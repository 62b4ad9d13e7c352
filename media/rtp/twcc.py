"""Transport-wide congestion control (draft-holmer-rmcat-transport-wide-cc-extensions-01).

A sender numbers every RTP packet of a transport (all SSRCs, RTX and padding probes
included) with the transport-wide sequence number header extension; the receiver reports
back, in RTCP transport-cc feedback (RTPFB, PT=205, FMT=15), which of them arrived and when.
From that the sender's delay-based estimator and prober (Chromium's GoogCC) ramp its send
rate within seconds, where loss-based control alone ramps ~8 %/s.

This module is the wire format, pure: reading the sequence number from a raw RTP packet
(`read_transport_sequence`, one-byte and two-byte header extension forms), building feedback
from arrival times (`feedback_from_arrivals`, 250 µs delta ticks, 64 ms reference time,
split where a packet would grow too big or a delta would not fit), and encoding and decoding
the feedback packet (`encode_feedback`, `decode_feedback`; the decoder serves tests and
round trips). Which packets a feedback covers, and when it is sent, is
`media.peers.twcc_feedback`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

TRANSPORT_CC_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"

RTCP_RTPFB = 205
FMT_TRANSPORT_CC = 15

NOT_RECEIVED = 0
SMALL_DELTA = 1
"""Received, delta 0..255 ticks (one byte)."""
LARGE_DELTA = 2
"""Received, delta negative or above 255 ticks (two bytes, signed)."""
NO_DELTA = 3
"""Reserved in the draft; decoded as received without a delta (as Pion does)."""

TICK_US = 250
"""A receive delta's unit."""
REFERENCE_US = 64_000
"""The reference time's unit."""
TICKS_PER_REFERENCE = REFERENCE_US // TICK_US
MAX_RECEIVED = 250
"""Received packets (deltas) per feedback packet: with its chunks, well under one MTU."""
MAX_STATUSES = 0xFFFF
"""What the 16-bit packet status count can say."""

_HEADER = struct.Struct("!BBHIIHHI")
"""V/P/FMT, PT, length, sender SSRC, media SSRC, base seq, status count, ref time|fb count."""
_MAX_RUN = 0x1FFF
_ONE_BIT_CAPACITY = 14
_TWO_BIT_CAPACITY = 7


def read_transport_sequence(packet: bytes, ext_id: int) -> int | None:
    """The transport-wide sequence number of a raw (decrypted) RTP packet, carried in the
    header extension element `ext_id` (one-byte `0xBEDE` or two-byte `0x100x` form), or None
    when it has none or the packet is malformed."""
    if ext_id <= 0 or len(packet) < 12 or not packet[0] & 0x10:
        return None
    pos = 12 + 4 * (packet[0] & 0x0F)
    if pos + 4 > len(packet):
        return None
    profile = int.from_bytes(packet[pos : pos + 2], "big")
    end = pos + 4 + 4 * int.from_bytes(packet[pos + 2 : pos + 4], "big")
    if end > len(packet):
        return None
    i = pos + 4
    if profile == 0xBEDE:
        while i < end:
            element = packet[i]
            if element == 0:  # padding
                i += 1
                continue
            element_id, length = element >> 4, (element & 0x0F) + 1
            if element_id == 15:
                return None
            if element_id == ext_id:
                return int.from_bytes(packet[i + 1 : i + 3], "big") if length == 2 \
                    and i + 3 <= end else None
            i += 1 + length
        return None
    if profile & 0xFFF0 == 0x1000:
        while i < end:
            element_id = packet[i]
            if element_id == 0:  # padding
                i += 1
                continue
            if i + 2 > end:
                return None
            length = packet[i + 1]
            if element_id == ext_id:
                return int.from_bytes(packet[i + 2 : i + 4], "big") if length == 2 \
                    and i + 4 <= end else None
            i += 2 + length
    return None


@dataclass(frozen=True, slots=True)
class TransportFeedback:
    """One transport-cc feedback packet, as on the wire."""

    sender_ssrc: int
    media_ssrc: int
    base_seq: int
    """The first packet's transport-wide sequence number (16 bits)."""
    reference_time: int
    """The first delta's origin, in 64 ms units (24 bits)."""
    feedback_count: int
    """This feedback's number, 8 bits, +1 per packet sent."""
    statuses: tuple[int, ...]
    """Per packet from `base_seq`: NOT_RECEIVED, SMALL_DELTA, LARGE_DELTA (or NO_DELTA)."""
    deltas: tuple[int, ...]
    """Per packet with a delta: its arrival minus the previous one's (the first: minus the
    reference time), in 250 µs ticks."""

    def arrivals_us(self) -> list[int | None]:
        """Per packet from `base_seq`: its arrival in µs of the sender's time base, or None
        (not received, or received without a delta)."""
        ticks = self.reference_time * TICKS_PER_REFERENCE
        deltas = iter(self.deltas)
        out: list[int | None] = []
        for status in self.statuses:
            if status in (SMALL_DELTA, LARGE_DELTA):
                ticks += next(deltas)
                out.append(ticks * TICK_US)
            else:
                out.append(None)
        return out


def _status_of(delta: int) -> int:
    return SMALL_DELTA if 0 <= delta <= 0xFF else LARGE_DELTA


def feedback_from_arrivals(
    base_seq: int,
    arrivals_us: Sequence[int | None],
    feedback_count: int,
    sender_ssrc: int,
    media_ssrc: int,
    *,
    max_received: int = MAX_RECEIVED,
) -> list[TransportFeedback]:
    """The feedback packets reporting `arrivals_us` (arrival of packet `base_seq + i` in µs,
    a non-negative time base; None: not received), numbered from `feedback_count`.

    A packet is split off before a received packet whose delta would not fit 16 bits (more
    than ~8 s from the previous one) or once it holds `max_received` received packets; the
    losses just before that packet open the next one. Losses after the last received packet
    are not reported (the next feedback starts with them), and nothing is sent for a range
    with no received packet. `arrivals_us` must not be longer than `MAX_STATUSES`.
    """
    out: list[TransportFeedback] = []
    first: int | None = None  # index of the current packet's first status
    reference = 0
    previous_ticks = 0
    statuses: list[int] = []
    deltas: list[int] = []
    losses_from: int | None = None  # first index of the losses since the last received

    def close() -> None:
        if first is not None and deltas:
            out.append(TransportFeedback(
                sender_ssrc, media_ssrc, (base_seq + first) & 0xFFFF, reference & 0xFFFFFF,
                (feedback_count + len(out)) & 0xFF, tuple(statuses), tuple(deltas),
            ))

    for index, arrival in enumerate(arrivals_us):
        if arrival is None:
            if losses_from is None:
                losses_from = index
            continue
        losses = [NOT_RECEIVED] * (index - losses_from if losses_from is not None else 0)
        losses_from = None
        ticks = arrival // TICK_US
        delta = ticks - previous_ticks
        if first is None or len(deltas) >= max_received or not -0x8000 <= delta <= 0x7FFF:
            close()
            first = index - len(losses)
            reference = arrival // REFERENCE_US
            previous_ticks = reference * TICKS_PER_REFERENCE
            delta = ticks - previous_ticks
            statuses, deltas = losses, []
        else:
            statuses += losses
        statuses.append(_status_of(delta))
        deltas.append(delta)
        previous_ticks = ticks
    close()
    return out


def _chunks(statuses: Sequence[int]) -> list[int]:
    """The 16-bit packet chunks for `statuses`: run-length chunks for runs, else status
    vectors (14 one-bit symbols, or 7 two-bit ones when a large delta is among them)."""
    chunks: list[int] = []
    pending: list[int] = []

    def can_add(status: int) -> bool:
        size = len(pending)
        if size < _TWO_BIT_CAPACITY:
            return True
        if size < _ONE_BIT_CAPACITY and status < LARGE_DELTA \
                and all(s < LARGE_DELTA for s in pending):
            return True
        return size < _MAX_RUN and all(s == status for s in pending)

    def run_length() -> int:
        return (pending[0] << 13) | len(pending)

    def vector(symbols: Sequence[int], two_bit: bool) -> int:
        chunk = 0xC000 if two_bit else 0x8000
        bits, capacity = (2, _TWO_BIT_CAPACITY) if two_bit else (1, _ONE_BIT_CAPACITY)
        for i, symbol in enumerate(symbols):
            chunk |= symbol << (bits * (capacity - 1 - i))
        return chunk

    def emit_full() -> None:
        nonlocal pending
        if all(s == pending[0] for s in pending):
            chunks.append(run_length())
            pending = []
        elif len(pending) == _ONE_BIT_CAPACITY and all(s < LARGE_DELTA for s in pending):
            chunks.append(vector(pending, False))
            pending = []
        else:
            chunks.append(vector(pending[:_TWO_BIT_CAPACITY], True))
            pending = pending[_TWO_BIT_CAPACITY:]

    for status in statuses:
        if not can_add(status):
            emit_full()
        pending.append(status)
    while pending:
        if all(s == pending[0] for s in pending):
            chunks.append(run_length())
            pending = []
        elif len(pending) <= _TWO_BIT_CAPACITY:
            chunks.append(vector(pending, True))
            pending = []
        elif all(s < LARGE_DELTA for s in pending):
            chunks.append(vector(pending, False))
            pending = []
        else:
            emit_full()
    return chunks


def encode_feedback(feedback: TransportFeedback) -> bytes:
    """The RTCP packet (padded to 32 bits, P bit set and the pad count in its last byte, as
    libwebrtc writes it)."""
    body = bytearray()
    for chunk in _chunks(feedback.statuses):
        body += chunk.to_bytes(2, "big")
    deltas = iter(feedback.deltas)
    for status in feedback.statuses:
        if status == SMALL_DELTA:
            body.append(next(deltas))
        elif status == LARGE_DELTA:
            body += next(deltas).to_bytes(2, "big", signed=True)
    size = _HEADER.size + len(body)
    padding = -size % 4
    if padding:
        body += bytes(padding - 1) + bytes([padding])
    header = _HEADER.pack(
        (0xA0 if padding else 0x80) | FMT_TRANSPORT_CC, RTCP_RTPFB, (size + padding) // 4 - 1,
        feedback.sender_ssrc, feedback.media_ssrc, feedback.base_seq & 0xFFFF,
        len(feedback.statuses), ((feedback.reference_time & 0xFFFFFF) << 8)
        | (feedback.feedback_count & 0xFF),
    )
    return header + bytes(body)


def _chunk_statuses(chunk: int, remaining: int) -> list[int]:
    if not chunk & 0x8000:
        return [(chunk >> 13) & 0x3] * min(chunk & _MAX_RUN, remaining)
    if chunk & 0x4000:
        symbols = [(chunk >> (2 * (_TWO_BIT_CAPACITY - 1 - i))) & 0x3
                   for i in range(_TWO_BIT_CAPACITY)]
    else:
        symbols = [(chunk >> (_ONE_BIT_CAPACITY - 1 - i)) & 0x1
                   for i in range(_ONE_BIT_CAPACITY)]
    return symbols[:remaining]


def decode_feedback(data: bytes) -> TransportFeedback | None:
    """The feedback in one RTCP transport-cc packet, or None when `data` is not one or is
    malformed."""
    if len(data) < _HEADER.size:
        return None
    first, packet_type, length, sender, media, base, count, ref_fb = _HEADER.unpack_from(data)
    size = 4 * (length + 1)
    if first >> 6 != 2 or first & 0x1F != FMT_TRANSPORT_CC or packet_type != RTCP_RTPFB \
            or size > len(data):
        return None
    end = size  # the padding count is not trusted (Pion's vectors get it wrong), as Pion
    pos = _HEADER.size
    statuses: list[int] = []
    while len(statuses) < count:
        if pos + 2 > end:
            return None
        statuses += _chunk_statuses(int.from_bytes(data[pos : pos + 2], "big"),
                                    count - len(statuses))
        pos += 2
    deltas: list[int] = []
    for status in statuses:
        if status == SMALL_DELTA:
            if pos + 1 > end:
                return None
            deltas.append(data[pos])
            pos += 1
        elif status == LARGE_DELTA:
            if pos + 2 > end:
                return None
            deltas.append(int.from_bytes(data[pos : pos + 2], "big", signed=True))
            pos += 2
    return TransportFeedback(
        sender, media, base, ref_fb >> 8, ref_fb & 0xFF, tuple(statuses), tuple(deltas)
    )
