"""Which codec the relay forwards, and what it is called on each subscriber's connection.

The relay never transcodes, so a publisher's uplink is answered with exactly one media codec
(the publisher's first choice, plus its RTX), each subscriber's downlink offers exactly that
codec, and payload types are translated by matching codecs, not by number.
"""

from __future__ import annotations

from aiortc import RTCRtpSender
from aiortc.codecs import is_rtx
from aiortc.rtcpeerconnection import is_codec_compatible
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters


def forwarded_codecs(common: list[RTCRtpCodecParameters]) -> list[RTCRtpCodecParameters]:
    """The offerer's first media codec among those in common, with its RTX if offered."""
    media = next((c for c in common if not is_rtx(c)), None)
    if media is None:
        return []
    rtx = [c for c in common if is_rtx(c) and c.parameters.get("apt") == media.payloadType]
    return [media, *rtx[:1]]


def media_codec(codecs: list[RTCRtpCodecParameters]) -> RTCRtpCodecParameters | None:
    """The first codec that is not RTX."""
    return next((c for c in codecs if not is_rtx(c)), None)


def has_rtx(codecs: list[RTCRtpCodecParameters]) -> bool:
    return any(is_rtx(c) for c in codecs)


def preferences_for(codec: RTCRtpCodecParameters, with_rtx: bool) -> list[RTCRtpCodecCapability]:
    """Codec preferences making a relay transceiver offer `codec` (and RTX) and nothing else."""
    kind = codec.mimeType.split("/")[0].lower()
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [
        cap for cap in capabilities
        if not is_rtx(cap)
        and cap.mimeType.lower() == codec.mimeType.lower()
        and cap.clockRate == codec.clockRate
        and is_codec_compatible(
            RTCRtpCodecParameters(
                mimeType=cap.mimeType, clockRate=cap.clockRate, channels=cap.channels,
                parameters=dict(cap.parameters),
            ),
            codec,
        )
    ][:1]
    if chosen and with_rtx:
        chosen += [cap for cap in capabilities if is_rtx(cap)][:1]
    return chosen


def payload_types(
    source: RTCRtpCodecParameters, negotiated: list[RTCRtpCodecParameters]
) -> tuple[int, int | None] | None:
    """(payload type, RTX payload type or None) of `source`'s codec among `negotiated`."""
    for codec in negotiated:
        if not is_rtx(codec) and is_codec_compatible(codec, source):
            rtx = next(
                (
                    c.payloadType for c in negotiated
                    if is_rtx(c) and c.parameters.get("apt") == codec.payloadType
                ),
                None,
            )
            return codec.payloadType, rtx
    return None
