"""A small HLS recording made with PyAV for the player tests: a master playlist with two H.264
renditions (normal and low), 2 s segments of a moving test pattern, the layout the recording
contract serves under /media/recordings/<token>/."""

from __future__ import annotations

import fractions
from dataclasses import dataclass
from pathlib import Path

import av

SOURCE = "testsrc2=size={w}x{h}:rate={fps}"
FPS = 15
SEGMENT_S = 2


@dataclass(frozen=True)
class Rendition:
    name: str
    width: int
    height: int
    bitrate: int


RENDITIONS = (Rendition("normal", 640, 360, 600_000), Rendition("low", 320, 180, 180_000))


def _encode(rendition: Rendition, out_dir: Path, seconds: float) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    options = {"hls_time": str(SEGMENT_S), "hls_list_size": "0", "hls_playlist_type": "vod",
               "hls_segment_filename": str(out_dir / "seg%03d.ts")}
    with av.open(str(out_dir / "index.m3u8"), "w", format="hls", options=options) as sink:
        stream = sink.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = rendition.width, rendition.height, "yuv420p"
        stream.bit_rate = rendition.bitrate
        stream.codec_context.gop_size = FPS * SEGMENT_S
        stream.codec_context.profile = "Main"
        stream.codec_context.options = {"preset": "veryfast", "sc_threshold": "0"}
        time_base = fractions.Fraction(1, FPS)
        count = round(seconds * FPS)
        url = SOURCE.format(w=rendition.width, h=rendition.height, fps=FPS)
        with av.open(url, format="lavfi") as source:
            for i, frame in enumerate(source.decode(video=0)):
                if i >= count:
                    break
                frame.pts, frame.time_base = i, time_base
                frame.pict_type = av.video.frame.PictureType.NONE
                for packet in stream.encode(frame):
                    sink.mux(packet)
        for packet in stream.encode(None):
            sink.mux(packet)


def make_hls(root: Path, seconds: float = 12.0) -> Path:
    """Writes master.m3u8 (+ poster.jpg stand-in) and the renditions under `root`."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3"]
    for r in sorted(RENDITIONS, key=lambda r: r.bitrate):
        _encode(r, root / r.name, seconds)
        lines += [f'#EXT-X-STREAM-INF:BANDWIDTH={r.bitrate},RESOLUTION={r.width}x{r.height},'
                  'CODECS="avc1.4d401e"', f"{r.name}/index.m3u8"]
    (root / "master.m3u8").write_text("\n".join(lines) + "\n", encoding="ascii")
    return root / "master.m3u8"
