"""The VP8 RTP payload descriptor (RFC 7741): parsing, keyframe detection, id rewriting.

Forwarding passes VP8 payloads untouched; what the relay needs to know about a packet (is it
the start of a keyframe, which temporal layer is it in) and what temporal-layer dropping
needs to change (picture id, TL0PICIDX) lives here, pure and byte-exact.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Vp8Descriptor:
    """The fields of one packet's VP8 payload descriptor."""

    non_reference: bool
    """N: no other frame references this one (safe to drop)."""
    start_of_partition: bool
    """S: the packet starts a VP8 partition."""
    partition_id: int
    """PID: which partition the packet starts or continues."""
    picture_id: int | None
    """PictureID, 7 or 15 bits, or None when absent."""
    picture_id_bits: int
    """7 or 15 when a picture id is present, else 0."""
    tl0picidx: int | None
    """TL0PICIDX: running index of base-layer frames, or None."""
    tid: int | None
    """TID: temporal layer of the frame (0 = base), or None."""
    layer_sync: bool
    """Y: the frame depends only on base-layer frames (a switching point up)."""
    keyidx: int | None
    """KEYIDX, or None."""
    size: int
    """Length of the descriptor in bytes; the VP8 payload starts there."""


def parse_descriptor(payload: bytes) -> Vp8Descriptor:
    """Parse the descriptor at the start of an RTP payload; ValueError if truncated."""
    if not payload:
        raise ValueError("VP8 payload is empty")
    b0 = payload[0]
    picture_id = tl0picidx = tid = keyidx = None
    picture_id_bits = 0
    layer_sync = False
    pos = 1
    if b0 & 0x80:
        if len(payload) < 2:
            raise ValueError("VP8 descriptor: truncated extension byte")
        x = payload[1]
        pos = 2
        if x & 0x80:
            if len(payload) < pos + 1:
                raise ValueError("VP8 descriptor: truncated picture id")
            if payload[pos] & 0x80:
                if len(payload) < pos + 2:
                    raise ValueError("VP8 descriptor: truncated long picture id")
                picture_id = ((payload[pos] & 0x7F) << 8) | payload[pos + 1]
                picture_id_bits = 15
                pos += 2
            else:
                picture_id = payload[pos]
                picture_id_bits = 7
                pos += 1
        if x & 0x40:
            if len(payload) < pos + 1:
                raise ValueError("VP8 descriptor: truncated TL0PICIDX")
            tl0picidx = payload[pos]
            pos += 1
        if x & 0x30:
            if len(payload) < pos + 1:
                raise ValueError("VP8 descriptor: truncated TID/KEYIDX")
            tk = payload[pos]
            if x & 0x20:
                tid = tk >> 6
                layer_sync = bool(tk & 0x20)
            if x & 0x10:
                keyidx = tk & 0x1F
            pos += 1
    return Vp8Descriptor(
        non_reference=bool(b0 & 0x20),
        start_of_partition=bool(b0 & 0x10),
        partition_id=b0 & 0x0F,
        picture_id=picture_id,
        picture_id_bits=picture_id_bits,
        tl0picidx=tl0picidx,
        tid=tid,
        layer_sync=layer_sync,
        keyidx=keyidx,
        size=pos,
    )


def descriptor_size(payload: bytes) -> int:
    """Length of the descriptor in bytes (0 if the payload is too short to tell)."""
    if not payload:
        return 0
    if not payload[0] & 0x80:
        return 1
    if len(payload) < 2:
        return 0
    x = payload[1]
    size = 2
    if x & 0x80:
        if len(payload) < 3:
            return 0
        size += 2 if payload[2] & 0x80 else 1
    if x & 0x40:
        size += 1
    if x & 0x30:
        size += 1
    return size if size <= len(payload) else 0


def is_keyframe_start(payload: bytes) -> bool:
    """True if the packet is the first of a keyframe (start of partition 0, P bit clear)."""
    if not payload or (payload[0] & 0x1F) != 0x10:
        return False
    size = descriptor_size(payload)
    return 0 < size < len(payload) and not payload[size] & 0x01


def rewrite_ids(
    payload: bytes, picture_id: int | None = None, tl0picidx: int | None = None
) -> bytes:
    """Return `payload` with its picture id and/or TL0PICIDX replaced, same length.

    A 7-bit picture id keeps its width (the new value is taken modulo 128). ValueError if the
    descriptor lacks a field asked for.
    """
    d = parse_descriptor(payload)
    out = bytearray(payload)
    pos = 2
    if picture_id is not None:
        if d.picture_id is None:
            raise ValueError("VP8 descriptor has no picture id to rewrite")
        if d.picture_id_bits == 15:
            pid = picture_id & 0x7FFF
            out[pos] = 0x80 | (pid >> 8)
            out[pos + 1] = pid & 0xFF
        else:
            out[pos] = picture_id & 0x7F
    if d.picture_id is not None:
        pos += 2 if d.picture_id_bits == 15 else 1
    if tl0picidx is not None:
        if d.tl0picidx is None:
            raise ValueError("VP8 descriptor has no TL0PICIDX to rewrite")
        out[pos] = tl0picidx & 0xFF
    return bytes(out)


TemporalLayer = tuple[int, bool, int, int, int]
"""(TID, layer sync, picture id, picture id bits, TL0PICIDX) of one packet."""


def temporal_layer(payload: bytes) -> TemporalLayer | None:
    """The temporal-layer fields of a packet, or None unless it carries TID, TL0PICIDX and a
    picture id (a publisher without temporal layers: nothing can be dropped)."""
    if len(payload) < 5 or not payload[0] & 0x80:
        return None
    x = payload[1]
    if x & 0xE0 != 0xE0:
        return None
    if payload[2] & 0x80:
        picture_id = ((payload[2] & 0x7F) << 8) | payload[3]
        bits = 15
        pos = 4
    else:
        picture_id = payload[2]
        bits = 7
        pos = 3
    if len(payload) < pos + 2:
        return None
    tk = payload[pos + 1]
    return tk >> 6, bool(tk & 0x20), picture_id, bits, payload[pos]


def keyframe_size(frame: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a VP8 keyframe (the frame without its RTP payload
    descriptor), or None when `frame` is not a keyframe (RFC 6386, 9.1)."""
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width = (frame[6] | frame[7] << 8) & 0x3FFF
    height = (frame[8] | frame[9] << 8) & 0x3FFF
    return width, height
