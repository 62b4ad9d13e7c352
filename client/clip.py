"""Pre-encoded media clips and the tracks that play them, for the Python client and benchmarks.

A clip is a real encoder's output (libvpx, libx264 or libopus run once over a synthetic source
with motion, then cached on disk), looped in real time by `ClipTrack`, whose `recv()` returns
`av.Packet`s that aiortc's senders packetize without encoding. A keyframe request makes the
track jump to the clip's next keyframe, the way an encoder answers a PLI.
"""

from __future__ import annotations

import asyncio
import fractions
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import msgspec
from aiortc.mediastreams import MediaStreamTrack
from av.stream import Stream

CLIP_FORMAT_VERSION = 1
TEMPORAL_PATTERN = (0, 2, 1, 2)
"""The temporal layer of each frame of a 3-layer VP8 clip, repeating from its first frame."""
VIDEO_SOURCE = "testsrc2=size={w}x{h}:rate={fps},noise=alls=8:allf=t"
AUDIO_SOURCE = "aevalsrc=0.3*sin(2*PI*(300+150*sin(2*PI*t/3))*t):s=48000:c=stereo"


class EncodedClip(msgspec.Struct, frozen=True):
    """A looped sequence of encoded frames."""

    codec: str
    """'vp8', 'h264' or 'opus'."""
    clock_rate: int
    """RTP clock rate of the codec (90000 video, 48000 Opus)."""
    frame_ticks: int
    """Duration of one frame in clock ticks."""
    frames: list[bytes]
    """Encoded frames in decoding order."""
    keyframes: list[int]
    """Indices of the frames that are keyframes (the first one always is)."""
    temporal_ids: list[int] = msgspec.field(default_factory=list)
    """Per frame, its temporal layer (0 = base) when encoded with temporal layers, else empty
    (one layer). `temporal_pattern` says how they were produced."""

    @property
    def kind(self) -> str:
        return "audio" if self.codec == "opus" else "video"

    @property
    def frame_seconds(self) -> float:
        return self.frame_ticks / self.clock_rate

    @property
    def bitrate(self) -> float:
        """Average bits per second over the clip."""
        return sum(len(f) for f in self.frames) * 8 / (len(self.frames) * self.frame_seconds)


def cache_dir() -> Path:
    """Where generated clips are kept: $TONGXIN_CACHE_DIR, else a directory under /tmp."""
    base = os.environ.get("TONGXIN_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "tongxin")
    return Path(base) / "clips"


def load_clip(
    codec: str, *, seconds: float = 10.0, width: int = 640, height: int = 360,
    fps: int = 30, bitrate: int = 1_000_000, keyframe_interval: int = 60,
    temporal_layers: int = 1,
) -> EncodedClip:
    """The clip for these settings, generated on first use and read from the cache after.
    `temporal_layers=3` (VP8 only) encodes L1T3 (`TEMPORAL_PATTERN`)."""
    key = (
        f"v{CLIP_FORMAT_VERSION}-{codec}-{seconds}-{width}x{height}-{fps}-{bitrate}"
        f"-{keyframe_interval}" + (f"-t{temporal_layers}" if temporal_layers > 1 else "")
    )
    path = cache_dir() / f"{key}.msgpack"
    try:
        return msgspec.msgpack.decode(path.read_bytes(), type=EncodedClip)
    except (OSError, msgspec.DecodeError):
        pass
    if codec == "opus":
        clip = encode_audio_clip(seconds=seconds)
    else:
        clip = encode_video_clip(
            codec, seconds=seconds, width=width, height=height, fps=fps,
            bitrate=bitrate, keyframe_interval=keyframe_interval,
            temporal_layers=temporal_layers,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(msgspec.msgpack.encode(clip))
    os.replace(tmp, path)
    return clip


def encode_video_clip(
    codec: str, *, seconds: float, width: int, height: int, fps: int, bitrate: int,
    keyframe_interval: int, temporal_layers: int = 1,
) -> EncodedClip:
    """Encode a synthetic moving picture (test pattern with temporal noise) with a real encoder.

    `temporal_layers=3` (VP8): libvpx's own 3-layer pattern (ffmpeg's `ts_layering_mode=3`:
    layers 0,2,1,2 over every 4 frames, as a browser's L1T3), error resilient as WebRTC
    encodes it, each frame's layer in `temporal_ids`; `keyframe_interval` must then be a
    multiple of 4 so keyframes are base. Dropping layer 2, or 1 and 2, leaves the frames
    kept decoding exactly as in the whole stream (tests/bench/test_simulcast_publisher.py)."""
    time_base = fractions.Fraction(1, fps)
    layered = temporal_layers > 1
    if layered and (codec != "vp8" or temporal_layers != 3 or keyframe_interval % 4):
        raise ValueError("temporal layers: VP8, 3 layers, a keyframe interval multiple of 4")
    if codec == "vp8":
        enc = av.CodecContext.create("libvpx", "w")
        options = {
            "deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
            "minrate": str(bitrate), "maxrate": str(bitrate), "bufsize": str(bitrate),
            "undershoot-pct": "95", "overshoot-pct": "15", "static-thresh": "0",
        }
        if layered:
            kbps = bitrate // 1000
            options["ts-parameters"] = (
                f"ts_number_layers=3:ts_target_bitrate={kbps * 4 // 10},{kbps * 6 // 10},{kbps}"
                ":ts_rate_decimator=4,2,1:ts_periodicity=4:ts_layer_id=0,2,1,2"
                ":ts_layering_mode=3"
            )
            # as WebRTC's libvpx for temporal layers: no entropy carried across frames, so a
            # frame of an upper layer can be dropped without corrupting the ones after it
            options["error-resilient"] = "default"
        enc.options = options  # one assignment: `enc.options` hands out a copy
    elif codec == "h264":
        enc = av.CodecContext.create("libx264", "w")
        enc.profile = "Baseline"
        enc.options = {"tune": "zerolatency", "preset": "veryfast", "level": "31"}
    else:
        raise ValueError(f"unknown video codec {codec!r}")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.bit_rate = bitrate
    enc.time_base = time_base
    enc.framerate = fractions.Fraction(fps, 1)
    enc.gop_size = keyframe_interval
    count = round(seconds * fps)
    frames: list[bytes] = []
    keyframes: list[int] = []

    def take(packets: list[av.Packet[Stream]]) -> None:
        for packet in packets:
            if packet.is_keyframe:
                keyframes.append(len(frames))
            frames.append(bytes(packet))

    with av.open(VIDEO_SOURCE.format(w=width, h=height, fps=fps), format="lavfi") as source:
        for i, frame in enumerate(source.decode(video=0)):
            if i >= count:
                break
            frame.pts, frame.time_base = i, time_base
            frame.pict_type = av.video.frame.PictureType.NONE
            take(enc.encode(frame))
    take(enc.encode(None))
    temporal_ids = [TEMPORAL_PATTERN[i % 4] for i in range(len(frames))] if layered else []
    return EncodedClip(codec, 90000, 90000 // fps, frames, keyframes, temporal_ids)


def encode_audio_clip(*, seconds: float, bitrate: int = 32000) -> EncodedClip:
    """Encode a gliding tone with libopus in 20 ms frames."""
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate = 48000
    enc.layout = "stereo"
    enc.format = "s16"
    enc.bit_rate = bitrate
    enc.time_base = fractions.Fraction(1, 48000)
    enc.options = {"application": "voip", "frame_duration": "20"}
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=48000, frame_size=960)
    frames: list[bytes] = []
    count = round(seconds * 50)
    with av.open(AUDIO_SOURCE, format="lavfi") as source:
        for frame in source.decode(audio=0):
            for chunk in resampler.resample(frame):
                frames.extend(bytes(p) for p in enc.encode(chunk))
            if len(frames) >= count:
                break
    return EncodedClip("opus", 48000, 960, frames[:count], [0])


def normalized_frame(codec: str, data: bytes) -> bytes:
    """A frame as a receiver reassembles it: H.264 NAL units each behind a 4-byte start code."""
    if codec != "h264":
        return data
    from media.peers.aiortc_bends import h264_nal_units

    return b"".join(b"\x00\x00\x00\x01" + nal for nal in h264_nal_units(data))


def frame_digest(data: bytes) -> bytes:
    """A short digest identifying one encoded frame (stable across processes)."""
    return hashlib.blake2b(data, digest_size=12).digest()


class ClipTrack(MediaStreamTrack):
    """Plays an `EncodedClip` in real time, looped, as `av.Packet`s.

    `on_frame(digest, unix_time)` is called as each frame is handed to the sender, so tests
    and benchmarks know what was sent and when.
    """

    def __init__(
        self,
        clip: EncodedClip,
        *,
        on_frame: Callable[[bytes, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.kind = clip.kind
        self.clip = clip
        self._on_frame = on_frame
        self._clock = clock
        self._time_base = fractions.Fraction(1, clip.clock_rate)
        self._index = 0
        self._count = 0
        self._start: float | None = None
        self._jump = False
        self.keyframe_requests = 0
        self._digests = [frame_digest(normalized_frame(clip.codec, f)) for f in clip.frames]

    def request_keyframe(self) -> None:
        """Make the next frame a keyframe by jumping to the clip's next one."""
        self.keyframe_requests += 1
        self._jump = True

    async def recv(self) -> av.Packet[Stream]:
        if self._start is None:
            self._start = self._clock()
        delay = self._start + self._count * self.clip.frame_seconds - self._clock()
        if delay > 0:
            await asyncio.sleep(delay)
        if self._jump and self.kind == "video":
            self._jump = False
            later = [k for k in self.clip.keyframes if k > self._index]
            self._index = later[0] if later else self.clip.keyframes[0]
        data = self.clip.frames[self._index]
        packet = av.Packet(data)
        packet.pts = self._count * self.clip.frame_ticks
        packet.time_base = self._time_base
        if self._on_frame is not None:
            self._on_frame(self._digests[self._index], time.time())
        self._index = (self._index + 1) % len(self.clip.frames)
        self._count += 1
        return packet
