"""H.264 RTP payloads (RFC 6184): where a keyframe starts, so a new subscriber can join there."""

from __future__ import annotations

NAL_IDR = 5
NAL_SPS = 7
NAL_STAP_A = 24
NAL_FU_A = 28
KEY_NALS = frozenset({NAL_IDR, NAL_SPS})


def is_keyframe_start(payload: bytes) -> bool:
    """True if the packet carries an SPS or the start of an IDR slice.

    Encoders send SPS/PPS right before each IDR picture (libwebrtc and x264 with in-band
    headers do), so the first packet of a keyframe is the one with the SPS.
    """
    if len(payload) < 2:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in KEY_NALS:
        return True
    if nal_type == NAL_FU_A:
        fu = payload[1]
        return bool(fu & 0x80) and (fu & 0x1F) in KEY_NALS
    if nal_type == NAL_STAP_A:
        pos = 1
        while pos + 2 < len(payload):
            size = (payload[pos] << 8) | payload[pos + 1]
            pos += 2
            if size == 0 or pos + size > len(payload):
                return False
            if payload[pos] & 0x1F in KEY_NALS:
                return True
            pos += size
    return False
