"""Which codec the relay forwards, and what it is called on each subscriber's connection.

The relay forwards what it receives (the low rung's transcode keeps the codec), so a
publisher's uplink is answered with exactly one media codec (the publisher's first choice,
plus its RTX), each subscriber's downlink offers exactly that codec, and payload types are
translated by matching codecs, not by number. The answer asks an Opus publisher for in-band
FEC and DTX (`OPUS_RECEIVE_PARAMETERS`): audio that survives loss and costs little in silence.
"""

from __future__ import annotations

from aiortc import RTCRtpSender
from aiortc.codecs import is_rtx
from aiortc.rtcpeerconnection import is_codec_compatible
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters

OPUS_RECEIVE_PARAMETERS: dict[str, int] = {"minptime": 10, "useinbandfec": 1, "usedtx": 1}
"""Opus fmtp of the relay's answer to a publisher: a browser sends in-band FEC (a low-rate
copy of the previous frame in each packet) and DTX only when the receiver's fmtp asks."""


def with_receive_parameters(codec: RTCRtpCodecParameters) -> RTCRtpCodecParameters:
    """`codec`, for Opus with `OPUS_RECEIVE_PARAMETERS` added (a new object)."""
    if codec.mimeType.lower() != "audio/opus":
        return codec
    return RTCRtpCodecParameters(
        mimeType=codec.mimeType,
        clockRate=codec.clockRate,
        channels=codec.channels,
        payloadType=codec.payloadType,
        rtcpFeedback=list(codec.rtcpFeedback),
        parameters={**codec.parameters, **OPUS_RECEIVE_PARAMETERS},
    )


def forwarded_codecs(common: list[RTCRtpCodecParameters]) -> list[RTCRtpCodecParameters]:
    """The offerer's first media codec among those in common, with its RTX if offered (Opus
    with FEC and DTX asked for)."""
    media = next((c for c in common if not is_rtx(c)), None)
    if media is None:
        return []
    media = with_receive_parameters(media)
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
        pt = codec.payloadType
        if pt is not None and not is_rtx(codec) and is_codec_compatible(codec, source):
            rtx = next(
                (
                    c.payloadType for c in negotiated
                    if is_rtx(c) and c.parameters.get("apt") == pt
                ),
                None,
            )
            return pt, rtx
    return None
