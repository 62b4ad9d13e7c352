"""The recorder: RTP packets into encoded frames, frames into files that survive a killed worker."""

from __future__ import annotations

import asyncio
import fractions
import itertools
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import av
import pytest
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from client.clip import ClipTrack, EncodedClip, load_clip
from client.peer import FrameLog
from media.errors import MediaError
from media.recording.recorder import (
    FrameAssembler,
    RoomRecorder,
    TrackFile,
    read_manifest,
    vp8_dimensions,
)
from tests.media.relay_harness import RelayHarness, running_relay, wait_until

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
H264 = RTCRtpCodecParameters(
    mimeType="video/H264", clockRate=90000, payloadType=102,
    parameters={"packetization-mode": "1", "profile-level-id": "42e01f"},
)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)


def rtp_packets(clip: EncodedClip, codec: RTCRtpCodecParameters, frames: int,
                first_seq: int = 65000, first_ts: int = 2**32 - 90000) -> list[RtpPacket]:
    """The clip's frames packetized the way aiortc sends them (sequence and timestamp wrap)."""
    encoder = get_encoder(codec)
    packets: list[RtpPacket] = []
    seq = first_seq
    for i in range(frames):
        packet = av.Packet(clip.frames[i % len(clip.frames)])
        packet.pts = i * clip.frame_ticks
        packet.time_base = fractions.Fraction(1, clip.clock_rate)
        payloads, ts = encoder.pack(packet)  # type: ignore[attr-defined]
        for j, payload in enumerate(payloads):
            rtp = RtpPacket(payload_type=codec.payloadType, sequence_number=seq & 0xFFFF,
                            timestamp=(first_ts + ts) & 0xFFFFFFFF,
                            marker=j == len(payloads) - 1)
            rtp.payload = payload
            packets.append(rtp)
            seq += 1
    return packets


class FakeTrack:
    """What the recorder sees of an `InboundTrack`."""

    def __init__(self, codec: RTCRtpCodecParameters) -> None:
        self.codec = codec
        self.kind = codec.mimeType.split("/")[0].lower()
        self.taps: tuple[Any, ...] = ()
        self.keyframe_requests = 0

    def add_tap(self, tap: Any) -> None:
        self.taps = (*self.taps, tap)

    def remove_tap(self, tap: Any) -> None:
        self.taps = tuple(t for t in self.taps if t != tap)

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1


def decoded(path: Path) -> tuple[int, float]:
    """(frames decoded, time of the last one) of a file's only stream."""
    with av.open(str(path)) as container:
        stream = container.streams[0]
        count, last = 0, 0.0
        for frame in container.decode(stream):
            count += 1
            last = float(frame.time or 0.0)
    return count, last


def push_all(assembler: FrameAssembler, packets: list[RtpPacket]) -> list[Any]:
    frames = []
    for p in packets:
        frames += assembler.push(p.sequence_number, p.timestamp, p.marker, p.payload)
    return frames


@pytest.fixture(scope="module")
def vp8_clip() -> EncodedClip:
    return load_clip("vp8", width=320, height=180, bitrate=300_000, keyframe_interval=30)


def test_vp8_packets_become_the_encoded_frames_across_wraparound(vp8_clip: EncodedClip) -> None:
    packets = rtp_packets(vp8_clip, VP8, 40)
    frames = push_all(FrameAssembler(VP8), packets)
    assert [f.data for f in frames] == [vp8_clip.frames[i] for i in range(40)]
    assert frames[0].keyframe and frames[30].keyframe and not frames[1].keyframe
    steps = {b.timestamp - a.timestamp for a, b in itertools.pairwise(frames)}
    assert steps == {vp8_clip.frame_ticks}, "timestamps unwrap past 2**32"
    assert vp8_dimensions(frames[0].data) == (320, 180)


def test_reordered_and_duplicated_packets_still_make_whole_frames(vp8_clip: EncodedClip) -> None:
    packets = rtp_packets(vp8_clip, VP8, 20)
    shuffled = list(packets)
    for i in range(0, len(shuffled) - 1, 3):
        shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]
    shuffled += packets[5:9]  # retransmissions arriving late
    frames = push_all(FrameAssembler(VP8), shuffled)
    assert [f.data for f in frames] == [vp8_clip.frames[i] for i in range(20)]


def test_a_lost_packet_skips_to_the_next_keyframe_and_asks_for_one(
    vp8_clip: EncodedClip,
) -> None:
    packets = rtp_packets(vp8_clip, VP8, 70)
    lost = next(i for i, p in enumerate(packets) if p.timestamp != packets[0].timestamp) + 2
    losses: list[int] = []
    assembler = FrameAssembler(VP8, on_loss=lambda: losses.append(1))
    frames = push_all(assembler, packets[:lost] + packets[lost + 1:])
    assert losses, "the publisher is asked for a keyframe"
    datas = [f.data for f in frames]
    assert datas[-40:] == [vp8_clip.frames[i] for i in range(30, 70)], "resumes at keyframe 30"
    assert all(not f.keyframe for f in frames[1:len(frames) - 40])


def test_opus_packets_are_frames_and_late_duplicates_are_dropped() -> None:
    clip = load_clip("opus")
    packets = rtp_packets(clip, OPUS, 10, first_ts=1000)
    frames = push_all(FrameAssembler(OPUS), packets + packets[3:5])
    assert [f.data for f in frames] == clip.frames[:10]


@pytest.mark.parametrize(("codec", "clip_args", "suffix"), [
    (VP8, ("vp8",), ".mkv"),
    (H264, ("h264",), ".ts"),
    (OPUS, ("opus",), ".mkv"),
])
def test_a_recorded_track_is_a_decodable_file_of_the_right_length(
    tmp_path: Path, codec: RTCRtpCodecParameters, clip_args: tuple[str], suffix: str,
) -> None:
    name = clip_args[0]
    clip = (load_clip(name) if name == "opus"
            else load_clip(name, width=320, height=180, bitrate=300_000, keyframe_interval=30))
    seconds = 4
    count = int(seconds / clip.frame_seconds)
    track = FakeTrack(codec)
    recorder = RoomRecorder("rec1", "room1", "class", tmp_path)
    recorder.sync({("teacher", "camera" if track.kind == "video" else "mic"): track},
                  {"teacher": "teacher"}, None)
    (tap,) = track.taps
    for packet in rtp_packets(clip, codec, count):
        tap(packet)
    manifest = recorder.stop()
    assert recorder.join(20.0)
    assert track.taps == (), "untapped when stopped"
    (info,) = manifest["tracks"]
    assert info["file"].endswith(suffix) and info["participant"] == "teacher"
    assert info["role"] == "teacher" and info["codec"] == name and info["frames"] == count
    frames, last = decoded(tmp_path / info["file"])
    assert frames >= count - 2
    assert abs(last - (count - 1) * clip.frame_seconds) < 0.1
    assert read_manifest(tmp_path)["stopped"] is True  # type: ignore[index]


def test_the_manifest_records_tracks_and_spotlight_changes(tmp_path: Path) -> None:
    now = [1000.0]
    recorder = RoomRecorder("rec1", "room1", "class", tmp_path, wall_clock=lambda: now[0])
    camera, screen = FakeTrack(VP8), FakeTrack(VP8)
    recorder.sync({("t", "camera"): camera}, {"t": "teacher", "c1": "assistant"}, None)
    now[0] += 5
    recorder.sync({("t", "camera"): camera, ("t", "screen"): screen}, {"t": "teacher"}, "c1")
    now[0] += 5
    recorder.sync({("t", "camera"): camera}, {"t": "teacher"}, None)
    manifest = recorder.stop()
    assert recorder.join(10.0)
    events = [(e["t"], e["type"], e.get("participant"), e.get("source")) for e in
              manifest["events"]]
    assert events == [
        (0.0, "track_start", "t", "camera"),
        (5.0, "track_start", "t", "screen"),
        (5.0, "spotlight", "c1", None),
        (10.0, "track_end", "t", "screen"),
        (10.0, "spotlight", None, None),
        (10.0, "track_end", "t", "camera"),
        (10.0, "stop", None, None),
    ]
    assert camera.keyframe_requests == 1, "a keyframe is asked for when a file starts"


def test_a_stalled_disk_drops_frames_up_to_a_keyframe_instead_of_blocking(
    tmp_path: Path, vp8_clip: EncodedClip, monkeypatch: pytest.MonkeyPatch,
) -> None:
    disk = threading.Event()
    real_write = TrackFile.write

    def stalled_write(self: TrackFile, frame: Any) -> bool:
        disk.wait(30.0)
        return real_write(self, frame)

    monkeypatch.setattr(TrackFile, "write", stalled_write)
    track = FakeTrack(VP8)
    recorder = RoomRecorder("rec1", "room1", "class", tmp_path, queue_frames=5)
    recorder.sync({("t", "camera"): track}, {"t": "teacher"}, None)
    packets = rtp_packets(vp8_clip, VP8, 50)
    ends = [i for i, p in enumerate(packets) if p.marker]
    first_of_frame_20 = ends[19] + 1
    started = time.monotonic()
    for packet in packets[:first_of_frame_20]:
        track.taps[0](packet)
    assert time.monotonic() - started < 5.0, "feeding never waits for the disk"
    accepted = 20 - recorder.dropped
    assert accepted in (5, 6), "five wait in the queue (and the writer may hold one)"
    assert track.keyframe_requests == 2, "one on start, one after dropping"
    disk.set()

    def writer_caught_up() -> None:
        deadline = time.monotonic() + 20.0
        while not recorder._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.005)

    for packet in packets[first_of_frame_20:]:
        if packet.marker:  # the disk keeps up again (whatever the machine's load)
            writer_caught_up()
        track.taps[0](packet)
    manifest = recorder.stop()
    assert recorder.join(20.0)
    (info,) = manifest["tracks"]
    assert (info["frames"], info["dropped"]) == (accepted + 20, 20 - accepted + 10)
    frames, _ = decoded(tmp_path / info["file"])
    assert frames == info["frames"], "what was written decodes (it resumed at keyframe 30)"


@pytest.mark.timeout(300)
async def test_a_worker_killed_mid_recording_leaves_a_playable_file(tmp_path: Path) -> None:
    video = load_clip("vp8", width=320, height=180, bitrate=300_000)
    audio = load_clip("opus")
    async with running_relay(1) as (service, relay):
        log = FrameLog(keep_order=False)
        await service.open_room("class1", "class")
        teacher = await relay.join("class1", "teacher", "teacher", log)
        room = await relay.join("class1", "room", "assistant", log)
        await teacher.publish({"mic": ClipTrack(audio), "camera": ClipTrack(video)})
        await wait_until(lambda: room.track("teacher", "camera").frames >= 15,
                         timeout=60, what="the teacher's camera at the classroom")
        await service.start_recording("class1", "rec1", str(tmp_path))
        manifest: dict[str, Any] | None = None

        def camera_started() -> bool:
            nonlocal manifest
            manifest = read_manifest(tmp_path)
            return bool(manifest) and any(
                t["source"] == "camera" and t["start_s"] is not None
                for t in manifest["tracks"])  # type: ignore[index]

        await wait_until(camera_started, timeout=60, what="the camera file started")
        await asyncio.sleep(4.0)
        pid = (await service.describe_room("class1"))["worker"]["pid"]
        os.kill(pid, signal.SIGKILL)
        await wait_until(lambda: any(e["type"] == "room_lost" for _, _, e in relay.events),
                         timeout=30, what="room_lost")
        assert manifest is not None
        files = {t["source"]: tmp_path / t["file"] for t in manifest["tracks"]}
        assert set(files) == {"camera", "mic"}
        frames, last = await asyncio.to_thread(decoded, files["camera"])
        assert frames >= 30 and last >= 2.0, (frames, last)
        samples, last_audio = await asyncio.to_thread(decoded, files["mic"])
        assert samples >= 50 and last_audio >= 2.0

        # the room reopens on the replacement worker and records on into the same manifest
        await wait_until(lambda: service._pool is not None and all(
            w.alive for w in service._pool.workers), timeout=90, what="a replacement worker")
        await relay.close()
        relay = RelayHarness(service)
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline:  # the replacement imports and serves, then reopens
            try:
                await service.describe_room("class1")
                break
            except MediaError:
                await asyncio.sleep(0.2)
        teacher = await relay.join("class1", "teacher", "teacher", log)
        await teacher.publish({"camera": ClipTrack(video)})

        def resumed() -> bool:
            found = read_manifest(tmp_path) or {}
            return sum(1 for t in found.get("tracks", [])
                       if t["source"] == "camera" and t["start_s"] is not None) == 2

        await wait_until(resumed, timeout=60, what="the camera recorded again")
        stopped = await service.stop_recording("class1")
        assert stopped is not None and stopped["recording"] == "rec1"
        assert [t["file"] for t in stopped["tracks"][:2]] == [
            t["file"] for t in manifest["tracks"]], "the first files are still listed"
