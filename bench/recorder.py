"""What recording costs on the live path: CPU per recorded track, as a share of one core.

`tongxin bench recorder [--seconds N]` packetizes pre-encoded clips the way aiortc sends
them (a 640x360 ~1 Mbit/s VP8 camera at 30 fps, a 320x180 VP8 camera, Opus), then feeds the
packets through a `RoomRecorder` as fast as it takes them and measures the process CPU time
(event-loop side: frame assembly; writer thread: PyAV muxing and file writes) per second of
media. Reports one figure per track kind; packetizing is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import tempfile
import time
from pathlib import Path
from typing import Any

import av
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from client.clip import EncodedClip, load_clip
from media.recording.recorder import RoomRecorder

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)


class _Track:
    """What the recorder needs of an `InboundTrack`."""

    def __init__(self, codec: RTCRtpCodecParameters) -> None:
        self.codec = codec
        self.kind = codec.mimeType.split("/")[0].lower()
        self.taps: tuple[Any, ...] = ()

    def add_tap(self, tap: Any) -> None:
        self.taps = (*self.taps, tap)

    def remove_tap(self, tap: Any) -> None:
        self.taps = tuple(t for t in self.taps if t != tap)

    def request_keyframe(self) -> None:
        pass


def packets(clip: EncodedClip, codec: RTCRtpCodecParameters, seconds: float) -> list[RtpPacket]:
    if codec.payloadType is None:
        raise ValueError(f"{codec.mimeType} has no payload type to packetize with")
    payload_type = codec.payloadType
    encoder = get_encoder(codec)
    out: list[RtpPacket] = []
    seq = 0
    for i in range(int(seconds / clip.frame_seconds)):
        frame = av.Packet(clip.frames[i % len(clip.frames)])
        frame.pts = i * clip.frame_ticks
        frame.time_base = fractions.Fraction(1, clip.clock_rate)
        payloads, ts = encoder.pack(frame)
        for j, payload in enumerate(payloads):
            packet = RtpPacket(payload_type=payload_type, sequence_number=seq & 0xFFFF,
                               timestamp=ts & 0xFFFFFFFF, marker=j == len(payloads) - 1)
            packet.payload = payload
            out.append(packet)
            seq += 1
    return out


def cpu_per_second(clip: EncodedClip, codec: RTCRtpCodecParameters, seconds: float) -> float:
    """CPU seconds the recorder spends per second of this track."""
    stream = packets(clip, codec, seconds)
    with tempfile.TemporaryDirectory() as folder:
        track = _Track(codec)
        recorder = RoomRecorder("bench", "bench", "class", Path(folder))
        started = time.process_time()
        recorder.sync({("p", "camera" if track.kind == "video" else "mic"): track}, {}, None)
        tap = track.taps[0]
        for packet in stream:
            tap(packet)
        recorder.stop()
        recorder.join(60.0)
        return (time.process_time() - started) / seconds


CASES: tuple[tuple[str, str, dict[str, int], RTCRtpCodecParameters], ...] = (
    ("vp8_640x360_30fps_1mbps", "vp8", {}, VP8),
    ("vp8_320x180_30fps_300kbps", "vp8", {"width": 320, "height": 180, "bitrate": 300_000}, VP8),
    ("opus_20ms", "opus", {}, OPUS),
)
"""(result key, clip codec, clip options, RTP codec) of each measured track."""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="seconds of media recorded per track (60)")


def measure(seconds: float) -> dict[str, Any]:
    """CPU milliseconds per second of media, and share of a core, for each track of `CASES`."""
    result: dict[str, Any] = {"media_seconds": seconds}
    for key, codec_name, options, codec in CASES:
        cost = cpu_per_second(load_clip(codec_name, **options), codec, seconds)
        result[f"{key}_cpu_ms_per_s"] = round(cost * 1000, 2)
        result[f"{key}_core_pct"] = round(cost * 100, 3)
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.seconds <= 0:
        raise SystemExit("--seconds must be positive")
    return await asyncio.to_thread(measure, args.seconds)
