"""Forwarding rewrites only RTP headers: frames arrive bit-identical, sequences stay continuous.

The first tests drive `InboundTrack`/`OutboundStream` directly and parse what would hit the
socket; the last ones run real aiortc peers over UDP on loopback through the relay.
"""

from __future__ import annotations

from itertools import pairwise

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import (
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
)

from client.peer import FrameLog, ReceivedTrack
from media.forward.forwarder import DatagramSink, InboundTrack, OutboundStream
from media.rtp import vp8
from media.rtp.header import URI_ABS_SEND_TIME, URI_MID, ExtensionLayout
from media.service import MediaService
from tests.media.relay_harness import RelayHarness, clip_tracks, wait_until

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
VP8_RTX = RTCRtpCodecParameters(
    mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96}
)
SUB_VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=100)
SUB_RTX = RTCRtpCodecParameters(
    mimeType="video/rtx", clockRate=90000, payloadType=101, parameters={"apt": 100}
)
KEY = b"\x90\x80\x80\x01" + b"\x00\x9d\x01\x2a" + b"K" * 50  # VP8 keyframe start
DELTA = b"\x90\x80\x80\x02" + b"\x01" + b"D" * 50
CONT = b"\x80\x80\x80\x02" + b"C" * 50


class Capture:
    """A connected sink that keeps what would have been SRTP-protected and sent."""

    def __init__(self) -> None:
        self.sink = DatagramSink()
        self.sent: list[bytes] = []
        self.sink.connect(self.sent.append)
        ext_map = HeaderExtensionsMap()
        ext_map._HeaderExtensionsMap__ids.mid = 1  # type: ignore[attr-defined]
        ext_map._HeaderExtensionsMap__ids.abs_send_time = 3  # type: ignore[attr-defined]
        self.ext_map = ext_map

    def packets(self) -> list[RtpPacket]:
        return [RtpPacket.parse(data, self.ext_map) for data in self.sent]


def source_packet(
    seq: int, ts: int, payload: bytes, marker: int = 0, ssrc: int = 5555
) -> RtpPacket:
    return RtpPacket(
        payload_type=96, sequence_number=seq, timestamp=ts, ssrc=ssrc, payload=payload,
        marker=marker,
    )


def subscriber_stream(capture: Capture) -> OutboundStream:
    stream = OutboundStream("video", ssrc=1111, rtx_ssrc=2222, sink=capture.sink)
    layout = ExtensionLayout.negotiated("3", {URI_MID: 1, URI_ABS_SEND_TIME: 3}, "video")
    stream.configure(layout, [SUB_VP8, SUB_RTX])
    return stream


async def test_a_new_subscriber_starts_at_a_keyframe_with_its_own_ids() -> None:
    plis: list[int] = []
    track = InboundTrack("doc", "camera", [VP8, VP8_RTX], send_pli=plis.append)
    capture = Capture()
    stream = subscriber_stream(capture)
    stream.attach(track)
    track.on_packet(source_packet(500, 9000, DELTA, marker=1))
    assert capture.sent == []
    assert plis == [5555], "the publisher is asked for a keyframe as soon as its SSRC is known"
    track.on_packet(source_packet(501, 12000, KEY))
    track.on_packet(source_packet(502, 12000, CONT, marker=1))
    track.on_packet(source_packet(503, 15000, DELTA, marker=1))
    got = capture.packets()
    assert [p.payload for p in got] == [KEY, CONT, DELTA]
    assert [p.payload_type for p in got] == [100, 100, 100]
    assert {p.ssrc for p in got} == {1111}
    assert [p.marker for p in got] == [0, 1, 1]
    seqs = [p.sequence_number for p in got]
    assert seqs[1] == (seqs[0] + 1) & 0xFFFF and seqs[2] == (seqs[0] + 2) & 0xFFFF
    assert got[0].timestamp == got[1].timestamp
    assert (got[2].timestamp - got[0].timestamp) & 0xFFFFFFFF == 3000
    assert {p.extensions.mid for p in got} == {"3"}
    assert all(p.extensions.abs_send_time is not None for p in got)


async def test_switching_source_keeps_sequence_and_timestamps_running() -> None:
    a = InboundTrack("a", "camera", [VP8, VP8_RTX], send_pli=lambda ssrc: None)
    b = InboundTrack("b", "camera", [VP8, VP8_RTX], send_pli=lambda ssrc: None)
    capture = Capture()
    stream = subscriber_stream(capture)
    stream.attach(a)
    a.on_packet(source_packet(100, 1000, KEY, marker=1, ssrc=1))
    a.on_packet(source_packet(101, 4000, DELTA, marker=1, ssrc=1))
    stream.attach(b)
    a.on_packet(source_packet(102, 7000, DELTA, marker=1, ssrc=1))  # no longer forwarded
    b.on_packet(source_packet(40000, 777, DELTA, marker=1, ssrc=2))  # waits for b's keyframe
    b.on_packet(source_packet(40001, 3777, KEY, marker=1, ssrc=2))
    b.on_packet(source_packet(40002, 6777, DELTA, marker=1, ssrc=2))
    got = capture.packets()
    assert [p.payload for p in got] == [KEY, DELTA, KEY, DELTA]
    seqs = [p.sequence_number for p in got]
    assert [(s - seqs[0]) & 0xFFFF for s in seqs] == [0, 1, 2, 3]
    ts = [p.timestamp for p in got]
    assert 0 < (ts[2] - ts[1]) & 0xFFFFFFFF < 90000, "timestamps continue, not jump"
    assert (ts[3] - ts[2]) & 0xFFFFFFFF == 3000


def nacked_stream() -> tuple[list[int], list[float], InboundTrack, Capture, OutboundStream]:
    """What the NACK tests start from: the PLIs sent to the publisher, a clock to move, a VP8
    track with RTX, and a subscriber's stream of it with what it sent."""
    plis: list[int] = []
    now = [0.0]
    track = InboundTrack(
        "doc", "camera", [VP8, VP8_RTX], send_pli=plis.append, clock=lambda: now[0]
    )
    capture = Capture()
    stream = subscriber_stream(capture)
    stream.attach(track)
    return plis, now, track, capture, stream


async def test_nack_is_answered_from_history_as_rtx_and_unknown_loss_asks_for_a_keyframe() -> None:
    plis, now, track, capture, stream = nacked_stream()
    for i, payload in enumerate([KEY, DELTA, DELTA]):
        track.on_packet(source_packet(300 + i, 1000 + 3000 * i, payload, marker=1))
    first = capture.packets()[0].sequence_number
    plis.clear()
    nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=9, media_ssrc=1111, lost=[first + 1])
    stream.on_rtcp(nack)
    rtx = capture.packets()[-1]
    assert rtx.ssrc == 2222 and rtx.payload_type == 101
    assert rtx.payload[:2] == (first + 1).to_bytes(2, "big") and rtx.payload[2:] == DELTA
    assert plis == []
    now[0] += 1.0
    stream.on_rtcp(RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=9, media_ssrc=1111, lost=[first - 50]))
    assert plis == [5555], "loss the relay cannot repair asks the publisher for a keyframe"
    assert len(capture.sent) == 4


async def test_a_paused_stream_answers_no_nack() -> None:
    """Its video is not played until the keyframe `resume` waits for: a retransmission
    would only add to the overflow that paused it."""
    plis, _now, track, capture, stream = nacked_stream()
    for i, payload in enumerate([KEY, DELTA, DELTA]):
        track.on_packet(source_packet(300 + i, 1000 + 3000 * i, payload, marker=1))
    first = capture.packets()[0].sequence_number
    plis.clear()
    stream.pause()
    stream.on_rtcp(RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=9, media_ssrc=1111, lost=[first + 1]))
    assert len(capture.sent) == 3 and plis == []


@pytest.mark.parametrize(("backlog_s", "resent"), [(None, 1), (0.0, 1), (0.2, 1), (0.6, 0)])
async def test_a_nack_waits_while_the_pacer_is_behind(backlog_s: float | None, resent: int) -> None:
    """Answers queued behind 0.6 s of video only feed the overflow that lost the packets
    (a 300 kbit/s classroom's NACK storm paused its camera); the receiver asks again."""
    plis, _now, track, capture, stream = nacked_stream()
    for i, payload in enumerate([KEY, DELTA, DELTA]):
        track.on_packet(source_packet(300 + i, 1000 + 3000 * i, payload, marker=1))
    first = capture.packets()[0].sequence_number
    plis.clear()
    if backlog_s is not None:
        stream.backlog = lambda: backlog_s
    stream.on_rtcp(RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=9, media_ssrc=1111, lost=[first + 1]))
    assert len(capture.sent) == 3 + resent and plis == []
    assert stream.nacks == 1 and stream.resends_held == 1 - resent


async def test_a_nack_for_a_packet_older_than_a_second_asks_for_a_keyframe_instead() -> None:
    """After a cut the subscriber NACKs seconds of packets: sending them again would flood
    the link as it comes back, and its jitter buffer has moved on."""
    plis, now, track, capture, stream = nacked_stream()
    track.on_packet(source_packet(300, 0, KEY, marker=1))
    now[0] += 1.5
    for i in range(1, 41):  # 30 frames a second (3000 ticks at 90 kHz): 1.33 s
        track.on_packet(source_packet(300 + i, 3000 * i, DELTA, marker=1))
    first = capture.packets()[0].sequence_number
    plis.clear()
    sent = len(capture.sent)
    # 10 (1.0 s behind the newest) is still repaired; 9 (1.03 s) and older are not
    lost = [(first + n) & 0xFFFF for n in (1, 9, 10, 39)]
    stream.on_rtcp(RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=9, media_ssrc=1111, lost=lost))
    resent = capture.packets()[sent:]
    assert [int.from_bytes(p.payload[:2], "big") for p in resent] == lost[2:]
    assert plis == [5555]


async def test_keyframe_requests_from_many_subscribers_reach_the_publisher_once() -> None:
    plis: list[int] = []
    now = [100.0]
    track = InboundTrack("doc", "camera", [VP8], send_pli=plis.append, clock=lambda: now[0])
    track.on_packet(source_packet(1, 0, KEY, marker=1))
    streams = [subscriber_stream(Capture()) for _ in range(20)]
    for stream in streams:
        stream.attach(track)
        stream.on_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=9, media_ssrc=1111))
    assert plis == [5555]
    now[0] += 1.0
    track.on_packet(source_packet(2, 3000, KEY, marker=1))  # the keyframe arrives
    streams[0].on_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=9, media_ssrc=1111))
    assert plis == [5555, 5555]
    track.close()


async def test_no_pli_reaches_a_layer_the_publisher_was_asked_to_pause() -> None:
    """A PLI to a paused simulcast layer makes Chromium send a keyframe of every layer it
    still sends: while paused, requests wait, and one PLI goes when the layer is resumed."""
    plis: list[int] = []
    now = [100.0]
    track = InboundTrack("doc", "camera", [VP8], send_pli=plis.append, clock=lambda: now[0])
    track.on_packet(source_packet(1, 0, KEY, marker=1))
    track.set_publisher_paused(True)
    stream = subscriber_stream(Capture())
    stream.attach(track)  # a subscriber switches to the paused layer
    stream.on_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=9, media_ssrc=1111))
    for _ in range(5):
        now[0] += 1.0
        track.request_keyframe()
    assert plis == []
    track.set_publisher_paused(False)
    assert plis == [5555], "resumed: the keyframe still wanted is asked for at once"
    track.close()


async def test_a_paused_subscribers_own_plis_are_not_passed_on() -> None:
    plis: list[int] = []
    now = [100.0]
    track = InboundTrack("doc", "camera", [VP8], send_pli=plis.append, clock=lambda: now[0])
    track.on_packet(source_packet(1, 0, KEY, marker=1))
    stream = subscriber_stream(Capture())
    stream.attach(track)
    track.on_packet(source_packet(2, 3000, KEY, marker=1))
    now[0] += 1.0
    stream.pause()
    stream.on_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=9, media_ssrc=1111))
    assert plis == [5555], "only the attach's request: the paused browser's PLI waits"
    now[0] += 1.0
    stream.resume()
    assert plis == [5555, 5555]
    track.close()


# --- real peers over UDP on loopback ---------------------------------------------------------


L1T3_PATTERN = (0, 2, 1, 2)  # temporal layer of frames 0, 1, 2, 3 of every group of four


def l1t3_payload(frame: int, first_packet: bool, picture_id_base: int = 32700) -> bytes:
    """A VP8 payload as an L1T3 publisher writes it: 15-bit picture id, TL0PICIDX, TID, Y."""
    tid = L1T3_PATTERN[frame % 4]
    sync = frame % 4 in (1, 2)
    tl0 = (frame // 4 + 250) & 0xFF  # wraps during the clip
    pid = (picture_id_base + frame) & 0x7FFF  # wraps too
    first = 0x90 if first_packet else 0x80
    descriptor = bytes(
        [first, 0xE0, 0x80 | (pid >> 8), pid & 0xFF, tl0, (tid << 6) | (0x20 if sync else 0)]
    )
    if first_packet and frame == 0:
        return descriptor + b"\x00\x9d\x01\x2a" + b"K" * 40  # keyframe
    return descriptor + (b"\x01" if first_packet else b"") + b"F" * 40


def send_l1t3_frames(
    track: InboundTrack, frames: range, seq0: int = 65500, packets_per_frame: int = 2
) -> None:
    for frame in frames:
        for n in range(packets_per_frame):
            seq = (seq0 + frame * packets_per_frame + n) & 0xFFFF
            last = n == packets_per_frame - 1
            payload = l1t3_payload(frame, first_packet=n == 0)
            track.on_packet(source_packet(seq, 3000 * frame, payload, marker=int(last)))


def received_frames(capture: Capture) -> list[tuple[int, int, int, int]]:
    """(timestamp, picture id, TL0PICIDX, TID) of each frame the subscriber received, after
    checking that sequence numbers and picture ids run on without a gap."""
    got = capture.packets()
    seqs = [p.sequence_number for p in got]
    assert all((b - a) & 0xFFFF == 1 for a, b in pairwise(seqs))
    frames = []
    for p in got:
        d = vp8.parse_descriptor(p.payload)
        assert d.picture_id is not None and d.tl0picidx is not None and d.tid is not None
        if d.start_of_partition:
            frames.append((p.timestamp, d.picture_id, d.tl0picidx, d.tid))
    pids = [f[1] for f in frames]
    assert all((b - a) & 0x7FFF == 1 for a, b in pairwise(pids))
    tl0s = [f[2] for f in frames]
    assert all((b - a) & 0xFF in (0, 1) for a, b in pairwise(tl0s))
    return frames


@pytest.mark.parametrize(
    ("layers", "frames_received", "frame_interval"),
    [(3, 48, 3000), (2, 24, 6000), (1, 12, 12000)],
)
async def test_dropped_temporal_layers_leave_a_clean_lower_frame_rate(
    layers: int, frames_received: int, frame_interval: int
) -> None:
    track = InboundTrack("teacher", "camera", [VP8, VP8_RTX], send_pli=lambda ssrc: None)
    capture = Capture()
    stream = subscriber_stream(capture)
    stream.set_temporal_layers(layers)
    stream.attach(track)
    send_l1t3_frames(track, range(48))  # 30 fps for 1.6 s
    frames = received_frames(capture)
    assert len(frames) == frames_received
    ts = [f[0] for f in frames]
    assert {(b - a) & 0xFFFFFFFF for a, b in pairwise(ts)} == {frame_interval}
    assert max(f[3] for f in frames) == layers - 1
    assert track.layer_octets[0] > 0 and track.layer_octets[1] > 0 and track.layer_octets[2] > 0


async def test_layers_go_down_at_a_frame_and_back_up_at_a_layer_sync_frame() -> None:
    track = InboundTrack("teacher", "camera", [VP8, VP8_RTX], send_pli=lambda ssrc: None)
    full = Capture()
    reduced = Capture()
    full_stream = subscriber_stream(full)
    stream = subscriber_stream(reduced)
    full_stream.attach(track)
    stream.attach(track)
    send_l1t3_frames(track, range(0, 8))
    stream.set_temporal_layers(1)
    send_l1t3_frames(track, range(8, 16))
    stream.set_temporal_layers(3)
    send_l1t3_frames(track, range(16, 24))
    assert [f[3] for f in received_frames(full)] == [0, 2, 1, 2] * 6, "others keep every frame"
    tids = [f[3] for f in received_frames(reduced)]
    # all, then the base layer only, then TL1 from its sync frame (18), TL2 from the next
    # TL2 sync frame (21): the non-sync TL2 frame 19 still waits
    assert tids == [0, 2, 1, 2] * 2 + [0, 0] + [0, 1, 0, 2, 1, 2]
    assert stream.frames_dropped == 8


async def test_a_paused_stream_sends_nothing_and_resumes_at_a_keyframe_in_sequence() -> None:
    plis: list[int] = []
    now = [0.0]
    track = InboundTrack(
        "teacher", "camera", [VP8, VP8_RTX], send_pli=plis.append, clock=lambda: now[0]
    )
    capture = Capture()
    stream = subscriber_stream(capture)
    stream.set_temporal_layers(2)
    stream.attach(track)
    send_l1t3_frames(track, range(0, 4))
    now[0] = 5.0
    stream.pause()
    send_l1t3_frames(track, range(4, 8))
    assert len(capture.sent) == 4
    stream.resume()
    send_l1t3_frames(track, range(8, 12))  # no keyframe yet: nothing
    assert len(capture.sent) == 4
    assert len(plis) == 2, "resuming asks the publisher for a keyframe"
    send_l1t3_frames(track, range(0, 4), seq0=65500 + 24)  # the keyframe comes
    frames = received_frames(capture)
    assert [f[3] for f in frames] == [0, 1, 0, 1]


def assert_in_order_none_missing(received: ReceivedTrack, sent: list[bytes], at_least: int) -> None:
    """The received frames are a contiguous run of the sent ones: same bytes, same order."""
    got = received.digests
    assert len(got) >= at_least, f"{received.source}: only {len(got)} frames arrived"
    start = sent.index(got[0])
    assert got == sent[start : start + len(got)], f"{received.source}: frames differ or are missing"


@pytest.fixture
async def relay():
    """A relay without adaptation: these tests hold the forwarding to bit-identical frames,
    which a legitimate switch to another rendition would break (on a loaded machine, aiortc's
    reports can come late enough for the starting guess to step a 1 Mbit/s camera down).
    Adaptation is tested on its own (`test_adaptation`, `test_transcode`)."""
    service = MediaService(0, adaptation=False)
    await service.start()
    harness = RelayHarness(service)
    yield harness
    await harness.close()
    await service.stop()


@pytest.mark.timeout(90)
async def test_vp8_and_opus_frames_arrive_bit_identical_in_order(relay: RelayHarness) -> None:
    await relay.service.open_room("consult-1", "consult")
    log = FrameLog()
    doctor = await relay.join("consult-1", "doctor", "doctor", frame_log=log)
    clinic = await relay.join("consult-1", "clinic", "clinic", frame_log=log)
    await doctor.publish(clip_tracks(log, "vp8", ("mic", "camera")))
    await wait_until(
        lambda: clinic.track("doctor", "camera").frames >= 90
        and clinic.track("doctor", "mic").frames >= 150,
        timeout=40, what="3 s of video and audio at the clinic",
    )
    assert relay.errors == []
    assert_in_order_none_missing(clinic.track("doctor", "camera"), log.sent["camera"], 90)
    assert_in_order_none_missing(clinic.track("doctor", "mic"), log.sent["mic"], 150)
    assert clinic.track("doctor", "camera").codec == "vp8"
    assert clinic.track("doctor", "mic").codec == "opus"
    assert clinic.track("doctor", "camera").latencies_ms, "latency is measured per frame"


@pytest.mark.timeout(90)
async def test_h264_frames_arrive_bit_identical_in_order(relay: RelayHarness) -> None:
    await relay.service.open_room("consult-2", "consult")
    log = FrameLog()
    doctor = await relay.join("consult-2", "doctor", "doctor", frame_log=log)
    clinic = await relay.join("consult-2", "clinic", "clinic", frame_log=log)
    await doctor.publish(clip_tracks(log, "h264", ("camera",)), codecs={"camera": "h264"})
    await wait_until(
        lambda: clinic.track("doctor", "camera").frames >= 60,
        timeout=40, what="2 s of H.264 video at the clinic",
    )
    assert relay.errors == []
    assert clinic.track("doctor", "camera").codec == "h264"
    assert_in_order_none_missing(clinic.track("doctor", "camera"), log.sent["camera"], 60)


async def test_with_layers_dropped_loss_keeps_its_hole_and_nacks_get_the_rewritten_ids() -> None:
    track = InboundTrack("teacher", "camera", [VP8, VP8_RTX], send_pli=lambda ssrc: None)
    capture = Capture()
    stream = subscriber_stream(capture)
    stream.set_temporal_layers(2)
    stream.attach(track)
    seq0 = 1000
    for frame in range(12):
        for n in range(2):
            seq = seq0 + frame * 2 + n
            if seq == seq0 + 8 * 2 + 1:  # the second packet of frame 8 (TID 0) is lost
                continue
            payload = l1t3_payload(frame, first_packet=n == 0)
            track.on_packet(source_packet(seq, 3000 * frame, payload, marker=n))
    got = capture.packets()
    seqs = [(p.sequence_number - got[0].sequence_number) & 0xFFFF for p in got]
    # frames 0, 2, 4, 6, 8, 10 sent, two packets each but the lost one: a single hole
    assert seqs == [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11]
    pids = {p.sequence_number: vp8.parse_descriptor(p.payload).picture_id for p in got}
    base = got[0].sequence_number
    capture.sent.clear()
    stream.retransmit([(base + 2) & 0xFFFF, (base + 9) & 0xFFFF])
    assert len(capture.sent) == 1, "the lost packet cannot be repaired; the other one is"
    rtx = RtpPacket.parse(capture.sent[0], capture.ext_map)
    assert rtx.payload[:2] == ((base + 2) & 0xFFFF).to_bytes(2, "big")
    assert vp8.parse_descriptor(rtx.payload[2:]).picture_id == pids[(base + 2) & 0xFFFF]


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        # every layer flowed: each reads its own rate
        ((8_000, 8_000, 16_000), (8_000, 8_000, 16_000)),
        # the window missed the base layer's frames while the layers above flowed: it keeps
        # its rate (read as free, it made the 7.5 fps rung look free)
        ((0, 8_000, 16_000), (8_000, 8_000, 16_000)),
        ((0, 0, 16_000), (8_000, 8_000, 16_000)),
        # the top layer stopped (the publisher sends two layers now): zero at once
        ((8_000, 8_000, 0), (8_000, 8_000, 0)),
        # everything stopped: zero at once
        ((0, 0, 0), (0, 0, 0)),
    ],
)
def test_layer_rates_read_a_stopped_layer_as_zero_but_not_a_missed_window(
    window: tuple[int, int, int], expected: tuple[int, int, int]
) -> None:
    track = InboundTrack("teacher", "camera", [VP8], send_pli=lambda ssrc: None)
    track.layer_rates(0.0)
    track.layer_octets[:3] = [1_000, 1_000, 2_000]  # 8, 8 and 16 kbit/s over the first second
    assert track.layer_rates(1.0)[:3] == (8_000, 8_000, 16_000)
    for i, bps in enumerate(window):
        track.layer_octets[i] += bps // 8
    assert track.layer_rates(2.0)[:3] == pytest.approx(expected)
