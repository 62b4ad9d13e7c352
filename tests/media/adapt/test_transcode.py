"""The low rung: one shared ~320x180/15 fps transcode per publisher's camera, running only
while a subscriber is on it, and a clean stream for a subscriber switching to it and back."""

from __future__ import annotations

import asyncio
from itertools import pairwise

import pytest
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from client.clip import ClipTrack, load_clip
from client.peer import FrameLog
from media.adapt.estimator import EstimateBound, LinkEstimate
from media.adapt.transcode import (
    FrameAssembler,
    LowRendition,
    Vp8Packetizer,
    due_for_encoding,
    low_size,
    offers_low,
    running_renditions,
)
from media.forward.forwarder import DatagramSink, InboundTrack, OutboundStream
from media.rtp import vp8
from media.rtp.header import URI_ABS_SEND_TIME, URI_MID, ExtensionLayout
from tests.media.relay_harness import running_relay, wait_until

pytestmark = pytest.mark.timeout(180)

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
SUB_VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=100)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)


@pytest.mark.parametrize(
    ("source", "low"),
    [
        ((640, 360), (320, 180)),
        ((1280, 720), (320, 180)),
        ((640, 480), (320, 240)),
        ((320, 180), (320, 180)),
        ((176, 144), (176, 144)),  # never upscaled
        ((1920, 1080), (320, 180)),
        ((0, 0), (320, 180)),
    ],
)
def test_the_low_size_is_320_wide_keeping_the_aspect_ratio(
    source: tuple[int, int], low: tuple[int, int]
) -> None:
    assert low_size(*source) == low


@pytest.mark.parametrize(
    ("timestamp", "last", "due"),
    [
        (0, None, True),
        (3000, 0, False),  # 30 fps source: every other frame
        (6000, 0, True),
        (5500, 0, True),  # a little early is fine (10% tolerance)
        (4000, 0, False),
        (2000, 0xFFFFF000, True),  # wraps
        (0, 3000, False),  # older than the last encoded
    ],
)
def test_frames_are_encoded_at_most_15_a_second(timestamp: int, last: int | None, due: bool):
    assert due_for_encoding(timestamp, last) is due


@pytest.mark.parametrize(
    ("source", "codec", "offered"),
    [("camera", VP8, True), ("screen", VP8, False), ("mic", OPUS, False)],
)
def test_only_vp8_cameras_have_a_low_rendition(
    source: str, codec: RTCRtpCodecParameters, offered: bool
) -> None:
    track = InboundTrack("t", source, [codec], send_pli=lambda ssrc: None)
    assert offers_low(track) is offered


def test_packetized_frames_carry_continuous_ids_of_a_base_layer() -> None:
    packetizer = Vp8Packetizer(ssrc=7, payload_type=96)
    first = packetizer.packetize(b"\x00\x9d\x01\x2a" + b"K" * 2500, 9000)
    second = packetizer.packetize(b"\x01" + b"D" * 10, 15000)
    assert [p.marker for p in first] == [0, 0, 1] and [p.marker for p in second] == [1]
    packets = first + second
    assert all((b.sequence_number - a.sequence_number) & 0xFFFF == 1
               for a, b in pairwise(packets))
    descriptors = [vp8.parse_descriptor(p.payload) for p in packets]
    assert [d.start_of_partition for d in descriptors] == [True, False, False, True]
    assert {d.tid for d in descriptors} == {0} and all(d.layer_sync for d in descriptors)
    assert descriptors[3].picture_id == (descriptors[0].picture_id + 1) & 0x7FFF  # type: ignore[operator]
    assert descriptors[3].tl0picidx == (descriptors[0].tl0picidx + 1) & 0xFF  # type: ignore[operator]
    assert vp8.is_keyframe_start(packets[0].payload)
    assert b"".join(p.payload[d.size:] for p, d in zip(first, descriptors, strict=False)) == (
        b"\x00\x9d\x01\x2a" + b"K" * 2500
    )


def _frame_packets(frame: bytes, picture_id: int) -> list[bytes]:
    return Vp8Encoder._packetize(frame, picture_id)


KEYFRAME = b"\x00\x9d\x01\x2a" + b"K" * 2000
DELTA = b"\x01" + b"D" * 100


@pytest.mark.parametrize(
    ("frames", "lose", "expected"),
    [
        # (frame bytes...), packet indices lost, which frames come out (index, keyframe)
        ((KEYFRAME, DELTA, DELTA), (), [(0, True), (1, False), (2, False)]),
        ((DELTA, KEYFRAME, DELTA), (), [(1, True), (2, False)]),  # starts at a keyframe
        ((KEYFRAME, DELTA, DELTA), (2,), [(0, True)]),  # a delta lost: nothing after it
        ((KEYFRAME, DELTA, DELTA, KEYFRAME), (3,), [(0, True), (1, False), (3, True)]),
        ((KEYFRAME, DELTA, KEYFRAME, DELTA), (3,), [(0, True), (1, False)]),  # keyframe hit
    ],
)
def test_frames_are_assembled_and_a_gap_waits_for_the_next_keyframe(
    frames: tuple[bytes, ...], lose: tuple[int, ...], expected: list[tuple[int, bool]]
) -> None:
    assembler = FrameAssembler()
    out: list[tuple[int, bool]] = []
    seq = 65530
    index = 0
    for n, frame in enumerate(frames):
        payloads = _frame_packets(frame, n)
        for i, payload in enumerate(payloads):
            if index not in lose:
                done = assembler.push(seq & 0xFFFF, 3000 * n, i == len(payloads) - 1, payload)
                if done is not None:
                    assert done.data == frame
                    out.append((n, done.keyframe))
            index += 1
            seq += 1
    assert out == expected


class Capture:
    def __init__(self) -> None:
        self.sink = DatagramSink()
        self.sent: list[bytes] = []
        self.sink.connect(self.sent.append)
        self.ext_map = HeaderExtensionsMap()
        self.ext_map._HeaderExtensionsMap__ids.mid = 1  # type: ignore[attr-defined]

    def packets(self) -> list[RtpPacket]:
        return [RtpPacket.parse(data, self.ext_map) for data in self.sent]


def l1t3_frame(track: InboundTrack, frame: int, seq: int, keyframe: bool = False) -> None:
    tid = (0, 2, 1, 2)[frame % 4]
    pid = (32000 + frame) & 0x7FFF
    descriptor = bytes([0x90, 0xE0, 0x80 | (pid >> 8), pid & 0xFF, (frame // 4) & 0xFF,
                        (tid << 6) | 0x20])
    body = b"\x00\x9d\x01\x2a" + b"K" * 40 if keyframe else b"\x01" + b"F" * 40
    track.on_packet(RtpPacket(96, 1, seq & 0xFFFF, 3000 * frame, 42, descriptor + body))


async def test_switching_to_the_low_rendition_and_back_keeps_every_id_running() -> None:
    track = InboundTrack("teacher", "camera", [VP8], send_pli=lambda ssrc: None)
    low = InboundTrack("teacher", "camera", [VP8], send_pli=lambda ssrc: None)
    capture = Capture()
    stream = OutboundStream("video", ssrc=1111, rtx_ssrc=2222, sink=capture.sink)
    stream.configure(
        ExtensionLayout.negotiated("3", {URI_MID: 1, URI_ABS_SEND_TIME: 3}, "video"), [SUB_VP8]
    )
    stream.attach(track)
    for frame in range(8):
        l1t3_frame(track, frame, 100 + frame, keyframe=frame == 0)
    stream.switch_source(low)
    packetizer = Vp8Packetizer(ssrc=9, payload_type=96)
    for n in range(4):
        # frame 8 still goes out (the low rendition's keyframe is not there yet), 9-11 not
        l1t3_frame(track, 8 + n, 108 + n)
        for packet in packetizer.packetize(KEYFRAME if n == 0 else DELTA, 500 + 6000 * n):
            low.on_packet(packet)
    stream.switch_source(track)
    for packet in packetizer.packetize(DELTA, 500 + 6000 * 4):
        low.on_packet(packet)  # still forwarded: the publisher's keyframe is not there yet
    l1t3_frame(track, 12, 112)  # not forwarded: waits for the publisher's keyframe
    for frame in range(13, 17):
        l1t3_frame(track, frame, 100 + frame, keyframe=frame == 13)
    for packet in packetizer.packetize(DELTA, 500 + 6000 * 5):
        low.on_packet(packet)  # no longer forwarded
    got = capture.packets()
    assert all((b.sequence_number - a.sequence_number) & 0xFFFF == 1 for a, b in pairwise(got))
    descriptors = [vp8.parse_descriptor(p.payload) for p in got]
    starts = [d for d in descriptors if d.start_of_partition]
    assert len(starts) == 9 + 5 + 4
    assert [d.tid for d in starts][7:11] == [2, 0, 0, 0], "frame 8 (TID 0), then low frames"
    assert all((b.picture_id - a.picture_id) & 0x7FFF == 1  # type: ignore[operator]
               for a, b in pairwise(starts))
    stamps = [p.timestamp for p in got]
    assert all(0 <= (b - a) & 0xFFFFFFFF < 90000 for a, b in pairwise(stamps))
    assert stream.source is track and stream not in low.streams and stream.pending is None


def clip_packets(
    frames: int, width: int = 640, height: int = 360, later: int = 0
) -> list[RtpPacket]:
    """RTP packets of a real VP8 clip (30 fps), as aiortc would send it; `later`: numbered
    as if that many frames had been sent before (a publisher never sends the same packet
    twice, and the relay drops a copy of one it has as a duplicate)."""
    clip = load_clip("vp8", width=width, height=height, bitrate=600_000)
    packets = []
    seq = 1000 + later * 100
    for i in range(frames):
        payloads = Vp8Encoder._packetize(clip.frames[i % len(clip.frames)], i & 0x7FFF)
        for j, payload in enumerate(payloads):
            packets.append(RtpPacket(
                96, int(j == len(payloads) - 1), seq & 0xFFFF, 3000 * (i + later), 4321, payload
            ))
            seq += 1
    return packets


async def test_a_rendition_transcodes_a_real_clip_to_320x180_at_15_fps_and_stops() -> None:
    source = InboundTrack("teacher", "camera", [VP8], send_pli=lambda ssrc: None)
    rendition = LowRendition(source, linger_s=0.2)
    sizes: list[tuple[int, int]] = []
    keyframes = []

    def on_low(packet: RtpPacket) -> None:
        d = vp8.parse_descriptor(packet.payload)
        if d.start_of_partition and vp8.is_keyframe_start(packet.payload):
            keyframes.append(packet.timestamp)
            size = vp8.keyframe_size(packet.payload[d.size:])
            assert size is not None
            sizes.append(size)

    rendition.track.add_tap(on_low)
    stream = object()
    try:
        rendition.acquire(stream)  # type: ignore[arg-type]
        rendition.acquire(stream)  # type: ignore[arg-type]
        assert rendition.running and rendition.starts == 1
        for packet in clip_packets(60):  # 2 s at 30 fps
            source.on_packet(packet)
            if packet.marker:
                await asyncio.sleep(1 / 30)
        await wait_until(lambda: rendition.frames_encoded >= 5, what="frames encoded")
        assert sizes and set(sizes) == {(320, 180)}
        # a loaded machine may skip some (the thread is late), never more than 15 a second
        assert rendition.frames_encoded + rendition.frames_skipped <= 30
        rendition.release(stream)  # type: ignore[arg-type]
        await wait_until(lambda: not rendition.running, what="the rendition to stop")
        assert source.taps == ()
    finally:
        rendition.close()


def l1t3_clip_packets(frames: int, fps: float) -> list[RtpPacket]:
    """A real VP8 clip's frames at `fps`, labelled with an L1T3 publisher's layers (TID 0, 2,
    1, 2, ...), as a browser whose CPU slowed its camera sends them."""
    clip = load_clip("vp8", width=640, height=360, bitrate=600_000)
    packets, seq = [], 2000
    for i in range(frames):
        tid, pid = (0, 2, 1, 2)[i % 4], (1000 + i) & 0x7FFF
        payloads = Vp8Encoder._packetize(clip.frames[i % len(clip.frames)], pid)
        for j, payload in enumerate(payloads):
            start = 0x10 if j == 0 else 0x00
            descriptor = bytes([0x80 | start, 0xE0, 0x80 | (pid >> 8), pid & 0xFF,
                                (i // 4) & 0xFF, (tid << 6) | 0x20])  # fmt: skip
            body = payload[vp8.parse_descriptor(payload).size:]
            last = int(j == len(payloads) - 1)
            packets.append(
                RtpPacket(96, last, seq & 0xFFFF, round(90_000 / fps * i), 4321, descriptor + body)
            )
            seq += 1
    return packets


async def test_a_rendition_encodes_the_top_layer_when_the_base_layers_are_too_few() -> None:
    """Two seconds of an L1T3 publisher at 7.5 fps (a teacher's CPU slowed its camera): every
    frame is wanted for 15 fps, the top layer's half too. Only the base layers made 3.75 fps
    (at 30 fps they make the 15 wanted, and the top layer is not decoded)."""
    source = InboundTrack("teacher", "camera", [VP8], send_pli=lambda ssrc: None)
    rendition = LowRendition(source, linger_s=0.2)
    stream = object()
    try:
        rendition.acquire(stream)  # type: ignore[arg-type]
        for packet in l1t3_clip_packets(15, 7.5):
            source.on_packet(packet)
            if packet.marker:
                await asyncio.sleep(1 / 30)
        await wait_until(lambda: rendition.frames_decoded >= 15, what="every frame decoded")
        await asyncio.sleep(0.2)
        # a loaded machine may skip encoding some (the thread is late); none is left out
        assert rendition.frames_encoded + rendition.frames_skipped == 15
        assert rendition.decode_errors == 0
    finally:
        rendition.close()


async def test_a_rendition_started_again_is_a_new_stream_whose_keyframes_are_seen() -> None:
    """The low rendition stops when its last subscriber leaves and starts again when the next
    one comes: each run's keyframe must reach the streams waiting for it."""
    source = InboundTrack("teacher", "camera", [VP8], send_pli=lambda ssrc: None)
    rendition = LowRendition(source, linger_s=0.1)
    ssrcs: list[int] = []
    rendition.track.add_tap(lambda packet: ssrcs.append(packet.ssrc))
    stream = object()
    try:
        for run in (1, 2):
            rendition.acquire(stream)  # type: ignore[arg-type]
            seen = rendition.track.keyframes_seen
            for packet in clip_packets(30, later=(run - 1) * 30):
                source.on_packet(packet)
                if packet.marker:
                    await asyncio.sleep(1 / 30)
            await wait_until(
                lambda seen=seen: rendition.track.keyframes_seen > seen,
                what=f"a keyframe of run {run} seen by the rendition's track",
            )
            rendition.release(stream)  # type: ignore[arg-type]
            await wait_until(lambda: not rendition.running, what="the rendition to stop")
        assert rendition.starts == 2 and len(set(ssrcs)) == 2
    finally:
        rendition.close()


def _link(bps: float, loss: float) -> LinkEstimate:
    return LinkEstimate(bps, loss, 0.02, 0.0, EstimateBound.REMB, bps / 2, bps / 2)


async def test_a_weak_subscriber_receives_the_shared_low_rendition_while_others_get_full() -> None:
    async with running_relay(0) as (service, relay):
        await service.open_room("class-1", "class")
        log = FrameLog(keep_order=False)
        teacher = await relay.join("class-1", "t", "teacher", log)
        strong = await relay.join("class-1", "a", "assistant")
        weak = await relay.join("class-1", "b", "assistant")
        weak2 = await relay.join("class-1", "c", "assistant")
        video = load_clip("vp8", width=640, height=360, bitrate=600_000)
        await teacher.publish({
            "mic": ClipTrack(load_clip("opus"), on_frame=log.recorder("mic")),
            "camera": ClipTrack(video, on_frame=log.recorder("camera")),
        })
        room = service._local.rooms["class-1"]  # type: ignore[union-attr]
        for client in (strong, weak, weak2):
            await wait_until(
                lambda c=client: c.track("t", "camera").frames >= 10,
                what=f"video at {client.participant_id}",
            )

        def force(pid: str, bps: float) -> None:
            # a weak link loses a little (3%: no probing up), a strong one nothing
            loss = 0.03 if bps < 1e6 else 0.0
            for stream in room.outbound_streams(pid):
                stream.link.estimator.estimate = lambda now, bps=bps: _link(bps, loss)

        force("a", 5_000_000)
        force("b", 280_000)
        force("c", 280_000)
        camera = next(t for t in room._tracks_of(room._participants["t"]) if t.kind == "video")
        await wait_until(
            lambda: camera.low_rendition is not None and camera.low_rendition.running,
            what="the low rendition to start",
        )
        for client in (weak, weak2):
            await wait_until(
                lambda c=client: (320, 180) in c.track("t", "camera").keyframe_sizes,
                # the transcoder's thread decodes and encodes: on a loaded 2-core machine its
                # first keyframe took over 20 s once
                timeout=45.0,
                what=f"a 320x180 keyframe at {client.participant_id}",
            )
            frames = client.track("t", "camera").frames
            await wait_until(
                lambda c=client, f=frames: c.track("t", "camera").frames >= f + 15,
                what=f"low frames flowing at {client.participant_id}",
            )
        weak_streams = {*room.outbound_streams("b"), *room.outbound_streams("c")}
        assert camera.low_rendition.subscribers <= weak_streams
        assert len(camera.low_rendition.subscribers) == 2, "one transcoder for both"
        assert [r.source for r in running_renditions()].count(camera) == 1
        assert (await service.health())["transcoders"] >= 1
        assert set(strong.track("t", "camera").keyframe_sizes) == {(640, 360)}
        assert strong.track("t", "mic").frames > 0 and weak.track("t", "mic").frames > 0

        force("b", 5_000_000)  # b's link recovers: full video again, from a keyframe
        await wait_until(
            lambda: weak.track("t", "camera").keyframe_sizes[-1] == (640, 360),
            what="b back on full video",
        )
        assert camera.low_rendition.running, "c still needs it"
        await service.leave("class-1", "c")
        await wait_until(lambda: not camera.low_rendition.running, what="the transcoder to stop")
        assert camera not in [r.source for r in running_renditions()]
        assert relay.errors == []
        events = [e for _, pid, e in relay.events if e["type"] == "link" and pid == "b"]
        assert [e["rung"] for e in events][-2:] == ["low", "full"]


async def test_a_switch_waiting_for_a_keyframe_can_be_called_off_or_paused() -> None:
    track = InboundTrack("teacher", "camera", [VP8], send_pli=lambda ssrc: None)
    low = InboundTrack("teacher", "camera", [VP8], send_pli=lambda ssrc: None)
    capture = Capture()
    stream = OutboundStream("video", ssrc=1111, rtx_ssrc=2222, sink=capture.sink)
    stream.configure(
        ExtensionLayout.negotiated("3", {URI_MID: 1, URI_ABS_SEND_TIME: 3}, "video"), [SUB_VP8]
    )
    stream.attach(track)
    l1t3_frame(track, 0, 100, keyframe=True)
    stream.switch_source(low)
    stream.switch_source(low)  # deciding the same again changes nothing
    assert stream.pending is low and low.streams == (stream,)
    stream.switch_source(track)  # called off before the low keyframe came
    assert stream.pending is None and low.streams == () and stream.source is track
    packetizer = Vp8Packetizer(ssrc=9, payload_type=96)
    for packet in packetizer.packetize(KEYFRAME, 3000):
        low.on_packet(packet)
    l1t3_frame(track, 1, 101)
    assert len(capture.sent) == 2, "the publisher's frames go on; none of the low rendition's"

    stream.switch_source(low)
    stream.pause()  # audio only: the switch is done at once, nothing is sent
    assert stream.source is low and stream.pending is None
    assert track.streams == () and low.streams == ()
    stream.resume()
    assert low.streams == (stream,) and stream.waiting
