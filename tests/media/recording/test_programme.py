"""The programme: layout over time (pure), and recorded tracks into two HLS renditions."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import av
import pytest
from test_recorder import H264, OPUS, VP8, FakeTrack, rtp_packets

from client.clip import load_clip
from media.recording.programme import RENDITIONS, Layout, TrackSpan, build, fit, layout_at
from media.recording.recorder import RoomRecorder


def span(file: str, participant: str, role: str, source: str, start: float = 0.0,
         end: float = 100.0) -> TrackSpan:
    kind = "audio" if source == "mic" else "video"
    return TrackSpan(file, participant, role, source, kind, start, end)


CLASS = [
    span("t-cam", "t", "teacher", "camera"),
    span("t-mic", "t", "teacher", "mic"),
    span("t-screen", "t", "teacher", "screen", 10, 20),
    span("c1-cam", "c1", "assistant", "camera"),
    span("c2-cam", "c2", "assistant", "camera", 0, 30),
]
SPOTLIGHT = [{"t": 25.0, "type": "spotlight", "participant": "c2"},
             {"t": 40.0, "type": "spotlight", "participant": None}]


@pytest.mark.parametrize(("t", "expected"), [
    (0.0, Layout("t-cam")),
    (12.0, Layout("t-screen", ("t-cam",))),
    (26.0, Layout("c2-cam", ("t-cam",))),
    (35.0, Layout("t-cam")),  # the spotlighted classroom's camera ended
    (45.0, Layout("t-cam")),
])
def test_the_class_layout_follows_screen_share_and_spotlight(t: float, expected: Layout) -> None:
    assert layout_at("class", CLASS, SPOTLIGHT, t) == expected


@pytest.mark.parametrize(("tracks", "t", "expected"), [
    ([span("d", "doc", "doctor", "camera"), span("k", "clinic", "clinic", "camera")], 1.0,
     Layout("k", ("d",))),
    ([span("d", "doc", "doctor", "camera")], 1.0, Layout("d")),
    ([span("k", "clinic", "clinic", "camera")], 1.0, Layout("k")),
    ([], 1.0, Layout(None)),
])
def test_a_consult_shows_the_clinic_with_the_doctor_small(
    tracks: list[TrackSpan], t: float, expected: Layout,
) -> None:
    assert layout_at("consult", tracks, [], t) == expected


@pytest.mark.parametrize(("src", "box", "placed"), [
    ((640, 360), (640, 360), (0, 0, 640, 360)),
    ((640, 480), (640, 360), (80, 0, 480, 360)),
    ((1280, 720), (160, 90), (0, 0, 160, 90)),
    ((360, 640), (640, 360), (218, 0, 202, 360)),
])
def test_pictures_fit_their_box_centred(src: tuple[int, int], box: tuple[int, int],
                                        placed: tuple[int, int, int, int]) -> None:
    assert fit(*src, *box) == placed


def playlist_seconds(text: str) -> float:
    return sum(float(x) for x in re.findall(r"#EXTINF:([0-9.]+),", text))


def record_files(folder: Path, seconds: int) -> dict[str, Any]:
    """Track files of a teacher (camera, mic, screen) and a classroom camera (H.264, as Safari
    sends), and a manifest
    that lays them out over `seconds` with a screen share and a spotlight."""
    small = load_clip("vp8", width=320, height=180, bitrate=300_000, keyframe_interval=30)
    wide = load_clip("vp8", width=320, height=240, bitrate=300_000, keyframe_interval=30)
    audio = load_clip("opus")
    h264 = load_clip("h264", width=320, height=180, bitrate=300_000, keyframe_interval=30)
    recorder = RoomRecorder("rec", "room", "class", folder)
    tracks = {("t", "camera"): FakeTrack(VP8), ("t", "mic"): FakeTrack(OPUS),
              ("t", "screen"): FakeTrack(VP8), ("c1", "camera"): FakeTrack(H264)}
    recorder.sync(tracks, {"t": "teacher", "c1": "assistant"}, None)
    clips = {("t", "camera"): small, ("t", "mic"): audio, ("t", "screen"): wide,
             ("c1", "camera"): h264}
    for key, track in tracks.items():
        clip = clips[key]
        for packet in rtp_packets(clip, track.codec, int(seconds / clip.frame_seconds)):
            track.taps[0](packet)
    manifest = recorder.stop()
    assert recorder.join(20.0)
    files = {(t["participant"], t["source"]): t for t in manifest["tracks"]}
    for key, (start, end) in {("t", "camera"): (0.0, None), ("t", "mic"): (0.0, None),
                              ("t", "screen"): (2.0, 5.0), ("c1", "camera"): (0.0, None)
                              }.items():
        files[key]["start_s"], files[key]["end_s"] = start, end
    manifest["events"] = [{"t": 5.5, "type": "spotlight", "participant": "c1"},
                          {"t": float(seconds), "type": "stop"}]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return manifest


@pytest.mark.timeout(180)
def test_tracks_become_two_hls_renditions_of_the_recording_s_length(tmp_path: Path) -> None:
    seconds = 9
    record_files(tmp_path / "tracks", seconds)
    progress: list[float] = []
    result = build(tmp_path / "tracks", tmp_path / "out", progress.append)
    out = tmp_path / "out"
    assert result["duration_s"] == seconds
    assert progress[0] == 0.0 and progress == sorted(progress)
    master = (out / "master.m3u8").read_text()
    for spec in RENDITIONS:
        assert f"RESOLUTION={spec.width}x{spec.height}" in master
        assert f"BANDWIDTH={spec.bandwidth}," in master and f"{spec.name}.m3u8" in master
        playlist = (out / f"{spec.name}.m3u8").read_text()
        assert "#EXT-X-ENDLIST" in playlist
        assert abs(playlist_seconds(playlist) - seconds) < 1.0
        segments = re.findall(r"^(\S+\.ts)$", playlist, re.MULTILINE)
        assert segments and all("/" not in s for s in segments), "relative URLs"
        frames = samples = 0
        for segment in segments:
            with av.open(str(out / segment)) as container:
                kinds = {(s.type, s.codec_context.name) for s in container.streams}
                assert kinds == {("video", "h264"), ("audio", "aac")}
                for frame in container.decode(*container.streams):
                    if isinstance(frame, av.VideoFrame):
                        assert (frame.width, frame.height) == (spec.width, spec.height)
                        frames += 1
                    else:
                        samples += frame.samples
        assert abs(frames / 15 - seconds) < 0.2 and abs(samples / 48000 - seconds) < 0.2
    assert (out / "poster.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert [r["name"] for r in result["renditions"]] == ["normal", "low"]
