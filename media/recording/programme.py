"""After a session: its recorded tracks composed into one programme, packaged as HLS.

Reads the recorder's `manifest.json` (media/recording/recorder.py) and lays the picture out over
time: the teacher's (or doctor's) camera full frame; the shared screen full frame with the teacher
small in a corner while a screen is shared; the classroom called on (or, in a consult, the
clinic) full frame with the teacher small while it is spotlighted. Every microphone is mixed.
The picture is composed once and encoded twice with libx264 + AAC into HLS (MPEG-TS segments,
what hls.js and Safari play): `normal` 640x360 and `low` 320x180 at about 200 kbit/s in all,
for village links, with `master.m3u8` naming both (BANDWIDTH, RESOLUTION, CODECS) and a
`poster.jpg`.

Run as a separate process, never on the event loop:
`python -m media.recording.programme <tracks dir> <out dir>` prints `progress <0..1>` lines and a
final `done <json>` line ({"duration_s", "renditions", "seconds", "speed", "cpu_s", "cpu_speed"}:
speed is programme seconds per wall-clock second, cpu_speed per CPU second).
"""

from __future__ import annotations

import contextlib
import fractions
import json
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

FPS = 15
SEGMENT_S = 4
SAMPLE_RATE = 48000
AUDIO_CHUNK = 1024
LEAD_ROLES = frozenset({"teacher", "doctor"})
BLACK = (16, 128, 128)


@dataclass(frozen=True)
class RenditionSpec:
    name: str
    width: int
    height: int
    video_bps: int
    audio_bps: int

    @property
    def bandwidth(self) -> int:
        """Peak bits per second for the master playlist (video at its cap, audio, TS overhead)."""
        return int((self.video_bps * MAXRATE + self.audio_bps) * TS_OVERHEAD)


RENDITIONS = (
    RenditionSpec("normal", 640, 360, 600_000, 64_000),
    RenditionSpec("low", 320, 180, 120_000, 24_000),
)
MAXRATE = 1.15
"""x264's cap over the target video bitrate."""
TS_OVERHEAD = 1.12
"""MPEG-TS and PES headers at these bitrates."""
PIP_FRACTION = 4
"""A corner picture is 1/4 of the frame's width."""


# --- the layout: which track where, when (pure) -----------------------------------------------
@dataclass(frozen=True)
class Layout:
    main: str | None
    """File shown full frame (None: black)."""
    corners: tuple[str, ...] = ()
    """Files shown small in the bottom corners, right first."""


@dataclass
class TrackSpan:
    file: str
    participant: str
    role: str
    source: str
    kind: str
    start: float
    end: float


def spans(manifest: dict[str, Any], durations: dict[str, float], total: float
          ) -> list[TrackSpan]:
    """Each track file's time span in the programme (from its first frame to its end)."""
    found = []
    for t in manifest.get("tracks", []):
        if t.get("start_s") is None or t["file"] not in durations:
            continue
        start = float(t["start_s"])
        end = t.get("end_s")
        end = min(float(end) if end is not None else total, start + durations[t["file"]] + 0.5)
        found.append(TrackSpan(t["file"], t["participant"], t.get("role", ""), t["source"],
                               t["kind"], start, end))
    return found


def spotlight_at(events: list[dict[str, Any]], t: float) -> str | None:
    current = None
    for event in events:
        if event.get("type") == "spotlight" and float(event["t"]) <= t:
            current = event.get("participant")
    return current


def layout_at(kind: str, tracks: list[TrackSpan], events: list[dict[str, Any]], t: float
              ) -> Layout:
    """What the programme shows at time `t` (see the module docstring)."""
    live = [s for s in tracks if s.kind == "video" and s.start <= t < s.end]
    cameras = {s.participant: s.file for s in live if s.source == "camera"}
    lead = next((s.participant for s in live if s.role in LEAD_ROLES), None)
    lead_camera = cameras.get(lead) if lead is not None else None
    screen = next((s.file for s in live if s.source == "screen"), None)
    other = spotlight_at(events, t) if kind == "class" else next(
        (p for p in cameras if p != lead), None)
    other_camera = cameras.get(other) if other is not None and other != lead else None
    if screen is not None:
        return Layout(screen, tuple(f for f in (lead_camera, other_camera) if f))
    if other_camera is not None:
        return Layout(other_camera, (lead_camera,) if lead_camera else ())
    if lead_camera is not None:
        return Layout(lead_camera)
    return Layout(next(iter(cameras.values()), None))


def fit(src_w: int, src_h: int, box_w: int, box_h: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of a src_w x src_h picture scaled into the box, centred, even sizes."""
    scale = min(box_w / src_w, box_h / src_h)
    w = max(2, int(src_w * scale) // 2 * 2)
    h = max(2, int(src_h * scale) // 2 * 2)
    return (box_w - w) // 4 * 2, (box_h - h) // 4 * 2, w, h


# --- pictures: YUV 4:2:0 planes as bytearrays -------------------------------------------------
class Canvas:
    """A yuv420p picture being composed (tightly packed planes)."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.planes = [bytearray([BLACK[0]]) * (width * height),
                       bytearray([BLACK[1]]) * (width * height // 4),
                       bytearray([BLACK[2]]) * (width * height // 4)]

    def paste(self, frame: av.VideoFrame, x: int, y: int, w: int, h: int) -> None:
        """Scale `frame` to w x h and put it at (x, y) (all even)."""
        scaled = frame.reformat(width=w, height=h, format="yuv420p")
        for index, (div, canvas_w) in enumerate(((1, self.width), (2, self.width // 2),
                                                  (2, self.width // 2))):
            plane = scaled.planes[index]
            stride = plane.line_size
            data = bytes(plane)
            row_w, rows = w // div, h // div
            target = self.planes[index]
            for r in range(rows):
                at = (y // div + r) * canvas_w + x // div
                target[at:at + row_w] = data[r * stride:r * stride + row_w]

    def to_frame(self) -> av.VideoFrame:
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        for index, div in enumerate((1, 2, 2)):
            plane = frame.planes[index]
            w, h = self.width // div, self.height // div
            src = self.planes[index]
            if plane.line_size == w:
                plane.update(bytes(src))
            else:
                padded = bytearray(plane.line_size * h)
                for r in range(h):
                    padded[r * plane.line_size:r * plane.line_size + w] = src[r * w:(r + 1) * w]
                plane.update(bytes(padded))
        return frame


def compose(layout: Layout, latest: dict[str, av.VideoFrame], width: int, height: int
            ) -> av.VideoFrame:
    main = latest.get(layout.main) if layout.main else None
    if main is not None and not layout.corners and \
            abs(main.width * height - main.height * width) <= main.height * 2:
        return main.reformat(width=width, height=height, format="yuv420p")  # the usual case
    canvas = Canvas(width, height)
    if main is not None:
        canvas.paste(main, *fit(main.width, main.height, width, height))
    pip_w = width // PIP_FRACTION // 2 * 2
    pip_h = pip_w * 9 // 16 // 2 * 2
    margin = max(2, width // 80 // 2 * 2)
    for i, name in enumerate(layout.corners):
        small = latest.get(name)
        if small is None:
            continue
        x, y, w, h = fit(small.width, small.height, pip_w, pip_h)
        left = width - margin - (i + 1) * (pip_w + margin)
        canvas.paste(small, left + x, height - margin - pip_h + y, w, h)
    return canvas.to_frame()


# --- reading the tracks ------------------------------------------------------------------------
def file_duration(path: Path) -> float:
    """Seconds from the first to the last packet of a track file (demuxed, not decoded)."""
    last = 0.0
    with contextlib.suppress(av.error.FFmpegError), av.open(str(path)) as container:
        stream = container.streams[0]
        for packet in container.demux(stream):
            if packet.pts is not None and packet.time_base is not None:
                last = max(last, float(packet.pts * packet.time_base))
    return last


def video_frames(path: Path) -> Iterator[tuple[float, av.VideoFrame]]:
    """(seconds from the file's start, frame), tolerating a damaged tail."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for packet in container.demux(stream):
                try:
                    for frame in packet.decode():
                        if frame.pts is not None and frame.time_base is not None:
                            yield float(frame.pts * frame.time_base), frame
                except av.error.FFmpegError:
                    continue
    except av.error.FFmpegError:
        return


def mixed_audio(tracks: list[TrackSpan], folder: Path, total: float) -> bytes:
    """Every audio track decoded and mixed at its place: s16 mono at `SAMPLE_RATE`."""
    out = bytearray(int(total * SAMPLE_RATE) * 2)
    for span in tracks:
        if span.kind != "audio":
            continue
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        try:
            with av.open(str(folder / span.file)) as container:
                stream = container.streams.audio[0]
                for packet in container.demux(stream):
                    try:
                        decoded = packet.decode()
                    except av.error.FFmpegError:
                        continue
                    for frame in decoded:
                        if frame.pts is None or frame.time_base is None:
                            continue
                        at = span.start + float(frame.pts * frame.time_base)
                        for chunk in resampler.resample(frame):
                            data = bytes(chunk.planes[0])[:chunk.samples * 2]
                            offset = int(at * SAMPLE_RATE) * 2
                            end = min(len(out), offset + len(data))
                            if offset < 0 or end <= offset:
                                continue
                            part = data[:end - offset]
                            out[offset:end] = audioop.add(bytes(out[offset:end]), part, 2)
                            at += chunk.samples / SAMPLE_RATE
        except av.error.FFmpegError:
            continue
    return bytes(out)


# --- encoding ----------------------------------------------------------------------------------
@dataclass
class RenditionWriter:
    spec: RenditionSpec
    container: Any
    video: Any
    audio: Any
    frames: int = 0
    samples: int = 0
    scaled: list[Any] = field(default_factory=list)

    @classmethod
    def open(cls, spec: RenditionSpec, out: Path) -> RenditionWriter:
        container = av.open(str(out / f"{spec.name}.m3u8"), "w", format="hls", options={
            "hls_time": str(SEGMENT_S), "hls_playlist_type": "vod", "hls_list_size": "0",
            "hls_segment_filename": str(out / f"{spec.name}_%05d.ts"),
            "hls_flags": "independent_segments"})
        video = container.add_stream("libx264", rate=FPS, options={
            "preset": "superfast", "profile": "main", "g": str(FPS * SEGMENT_S),
            "keyint_min": str(FPS * SEGMENT_S), "sc_threshold": "0", "bf": "0",
            "maxrate": str(int(spec.video_bps * MAXRATE)), "bufsize": str(spec.video_bps * 2)})
        video.width, video.height, video.pix_fmt = spec.width, spec.height, "yuv420p"
        video.bit_rate = spec.video_bps
        video.time_base = fractions.Fraction(1, FPS)
        audio = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono",
                                     options={"aac_coder": "fast"})
        audio.bit_rate = spec.audio_bps
        return cls(spec, container, video, audio)

    def add_video(self, frame: av.VideoFrame) -> None:
        if (frame.width, frame.height) != (self.spec.width, self.spec.height):
            frame = frame.reformat(width=self.spec.width, height=self.spec.height)
        frame.pts = self.frames
        frame.time_base = fractions.Fraction(1, FPS)
        self.frames += 1
        for packet in self.video.encode(frame):
            self.container.mux(packet)

    def add_audio(self, pcm: bytes) -> None:
        frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
        frame.planes[0].update(pcm + b"\0" * (frame.planes[0].buffer_size - len(pcm)))
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self.samples
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self.samples += len(pcm) // 2
        for packet in self.audio.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.video.encode(None):
            self.container.mux(packet)
        for packet in self.audio.encode(None):
            self.container.mux(packet)
        self.container.close()


def write_master(out: Path) -> None:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for spec in RENDITIONS:
        lines.append(f"#EXT-X-STREAM-INF:BANDWIDTH={spec.bandwidth},"
                     f"AVERAGE-BANDWIDTH={spec.video_bps + spec.audio_bps},"
                     f"RESOLUTION={spec.width}x{spec.height},FRAME-RATE={FPS},"
                     f'CODECS="avc1.4d401e,mp4a.40.2"')
        lines.append(f"{spec.name}.m3u8")
    (out / "master.m3u8").write_text("\n".join(lines) + "\n")


def write_poster(frame: av.VideoFrame, path: Path) -> None:
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height = frame.width, frame.height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = fractions.Fraction(1, FPS)
    packets = encoder.encode(frame.reformat(format="yuvj420p"))
    packets += encoder.encode(None)
    path.write_bytes(b"".join(bytes(p) for p in packets))


def programme_duration(manifest: dict[str, Any], spans_end: float) -> float:
    """The recording's length: its stop event, else its last track's end."""
    stops = [float(e["t"]) for e in manifest.get("events", []) if e.get("type") == "stop"]
    return max(stops) if stops else spans_end


def build(tracks_dir: Path, out: Path, progress: Callable[[float], None] = lambda p: None
          ) -> dict[str, Any]:
    """Compose and package; see the module docstring. Returns what `done` prints."""
    began = time.monotonic()
    cpu_began = time.process_time()
    manifest = json.loads((tracks_dir / "manifest.json").read_text())
    durations = {t["file"]: file_duration(tracks_dir / t["file"])
                 for t in manifest.get("tracks", []) if (tracks_dir / t["file"]).is_file()}
    rough = max([float(t.get("start_s") or 0) + durations.get(t["file"], 0.0)
                 for t in manifest.get("tracks", [])] + [0.0])
    total = programme_duration(manifest, rough)
    if total <= 0:
        raise ValueError("nothing was recorded")
    timeline = spans(manifest, durations, total)
    events = list(manifest.get("events", []))
    kind = str(manifest.get("kind", "class"))
    progress(0.0)
    audio = mixed_audio(timeline, tracks_dir, total)
    progress(0.05)
    out.mkdir(parents=True, exist_ok=True)
    writers = [RenditionWriter.open(spec, out) for spec in RENDITIONS]
    readers = {s.file: video_frames(tracks_dir / s.file) for s in timeline if s.kind == "video"}
    starts = {s.file: s.start for s in timeline}
    pending: dict[str, tuple[float, av.VideoFrame] | None] = {}
    latest: dict[str, av.VideoFrame] = {}
    count = round(total * FPS)
    samples_per_frame = SAMPLE_RATE // FPS
    poster_at = min(count - 1, int(min(5.0, total / 2) * FPS))
    width, height = RENDITIONS[0].width, RENDITIONS[0].height
    for index in range(count):
        t = index / FPS
        for name, reader in readers.items():
            while True:
                item = pending.get(name, ...)
                if item is ...:
                    item = pending[name] = next(reader, None)
                if item is None or starts[name] + item[0] > t:
                    break
                latest[name] = item[1]
                del pending[name]
        frame = compose(layout_at(kind, timeline, events, t), latest, width, height)
        if index == poster_at:
            write_poster(frame, out / "poster.jpg")
        pcm = audio[index * samples_per_frame * 2:(index + 1) * samples_per_frame * 2]
        for writer in writers:
            writer.add_video(frame)
            if pcm:
                writer.add_audio(pcm)
        if index % FPS == 0:
            progress(0.05 + 0.95 * index / count)
    for writer in writers:
        writer.close()
    write_master(out)
    seconds = time.monotonic() - began
    cpu = time.process_time() - cpu_began
    return {
        "duration_s": round(total, 3),
        "renditions": [{"name": s.name, "bandwidth": s.bandwidth, "width": s.width,
                        "height": s.height} for s in RENDITIONS],
        "seconds": round(seconds, 2),
        "speed": round(total / seconds, 2) if seconds > 0 else None,
        "cpu_s": round(cpu, 2),
        "cpu_speed": round(total / cpu, 2) if cpu > 0 else None,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m media.recording.programme <tracks dir> <out dir>", file=sys.stderr)
        return 2

    def report(fraction: float) -> None:
        print(f"progress {fraction:.3f}", flush=True)

    result = build(Path(argv[0]), Path(argv[1]), report)
    print("done " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
