"""Byte layout of forwarded RTP packets: the fixed header and the header extensions.

A forwarded packet is `fixed header + extension head + tail + payload`. The head (profile,
length, and the subscriber's MID) is constant per outbound stream; the tail (abs-send-time,
audio level) is built once per incoming packet and shared by every subscriber with the same
negotiated extension ids. Each element is padded to 4 bytes on its own so the pieces can be
concatenated without computing padding per packet.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

FIXED_HEADER = struct.Struct("!BBHII")
"""V/P/X/CC, M/PT, sequence number, timestamp, SSRC."""
SEQUENCE = struct.Struct("!H")

TailVariant = tuple[int, int]
"""(abs-send-time id, audio-level id), 0 when not negotiated: what a tail must contain."""


def _padded(element: bytes) -> bytes:
    return element + b"\x00" * (-len(element) % 4)


@dataclass(frozen=True, slots=True)
class ExtensionLayout:
    """The header extensions one outbound stream carries, with the subscriber's ids."""

    mid_id: int = 0
    mid: str = ""
    abs_send_time_id: int = 0
    audio_level_id: int = 0

    @classmethod
    def negotiated(cls, mid: str, ids: dict[str, int], kind: str) -> ExtensionLayout:
        """From a transceiver's negotiated `uri -> id` map."""
        return cls(
            mid_id=ids.get(URI_MID, 0),
            mid=mid,
            abs_send_time_id=ids.get(URI_ABS_SEND_TIME, 0),
            audio_level_id=ids.get(URI_AUDIO_LEVEL, 0) if kind == "audio" else 0,
        )

    @property
    def variant(self) -> TailVariant:
        return (self.abs_send_time_id, self.audio_level_id)

    @property
    def first_byte(self) -> int:
        """V=2, with the X bit when the packet carries extensions."""
        return 0x90 if self.head() else 0x80

    def head(self) -> bytes:
        """Extension profile and length, then the MID element: b'' when nothing is carried."""
        mid = b""
        if self.mid_id and self.mid:
            value = self.mid.encode()
            mid = _padded(bytes([(self.mid_id << 4) | (len(value) - 1)]) + value)
        tail = tail_length(self.variant)
        if not mid and not tail:
            return b""
        return struct.pack("!HH", 0xBEDE, (len(mid) + tail) // 4) + mid


def tail_length(variant: TailVariant) -> int:
    return (4 if variant[0] else 0) + (4 if variant[1] else 0)


def extension_tail(
    variant: TailVariant, abs_send_time: int, audio_level: tuple[bool, int] | None
) -> bytes:
    """The per-packet extension elements for one variant, each padded to 4 bytes."""
    abs_id, level_id = variant
    tail = b""
    if abs_id:
        tail = bytes([(abs_id << 4) | 2]) + abs_send_time.to_bytes(3, "big")
    if level_id:
        if audio_level is None:
            tail += b"\x00\x00\x00\x00"
        else:
            vad, level = audio_level
            tail += bytes([level_id << 4, (0x80 if vad else 0) | (level & 0x7F), 0, 0])
    return tail


def with_abs_send_time(packet: bytes, ext_id: int, value: int) -> bytes:
    """`packet` (plain RTP) with its abs-send-time element (one-byte header form, id `ext_id`)
    set to `value`; unchanged when it has none. A paced packet is stamped when it leaves, as a
    sender's pacer does: the receiver's delay-based estimate must not read our queue as the
    network's."""
    if not ext_id or len(packet) < 16 or not packet[0] & 0x10:
        return packet
    pos = 12 + 4 * (packet[0] & 0x0F)
    if packet[pos : pos + 2] != b"\xbe\xde":
        return packet
    end = min(pos + 4 + 4 * int.from_bytes(packet[pos + 2 : pos + 4], "big"), len(packet))
    i = pos + 4
    while i < end:
        element = packet[i]
        if element == 0:  # padding
            i += 1
            continue
        element_id, length = element >> 4, (element & 0x0F) + 1
        if element_id == 15:
            break
        if element_id == ext_id and length == 3 and i + 4 <= end:
            return packet[: i + 1] + value.to_bytes(3, "big") + packet[i + 4 :]
        i += 1 + length
    return packet
