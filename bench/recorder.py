"""What recording costs on the live path: CPU per recorded track, as a share of one core.

`python -m bench.recorder [seconds]` packetizes pre-encoded clips the way aiortc sends
them (a 640x360 ~1 Mbit/s VP8 camera at 30 fps, a 320x180 VP8 camera, Opus), then feeds the
packets through a `RoomRecorder` as fast as it takes them and measures the process CPU time
(event-loop side: frame assembly; writer thread: PyAV muxing and file writes) per second of
media. Prints one line per track kind; packetizing is not counted.
"""

from __future__ import annotations

import fractions
import sys
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


def main(argv: list[str]) -> int:
    seconds = float(argv[0]) if argv else 60.0
    cases = [
        ("VP8 640x360 30 fps ~1 Mbit/s", load_clip("vp8"), VP8),
        ("VP8 320x180 30 fps ~300 kbit/s",
         load_clip("vp8", width=320, height=180, bitrate=300_000), VP8),
        ("Opus 20 ms", load_clip("opus"), OPUS),
    ]
    for name, clip, codec in cases:
        cost = cpu_per_second(clip, codec, seconds)
        print(f"{name}: {cost * 1000:.1f} ms CPU per second of media "
              f"({cost * 100:.2f}% of a core)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
