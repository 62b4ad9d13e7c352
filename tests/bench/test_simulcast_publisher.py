"""The benchmark's simulcast publisher: a browser's RID simulcast offer, three layers on three
SSRCs, which a real relay demultiplexes into three layers and forwards one of to a subscriber."""

from __future__ import annotations

import av
import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from bench.simulcast_publisher import (
    LAYER_HEIGHTS,
    LAYERS,
    RID_PACKETS,
    LayerSender,
    SimulcastPublisher,
    layer_clip,
    layer_sync,
    simulcast_offer_sdp,
    vp8_payload_type,
    vp8_payloads,
)
from client.peer import FrameLog
from media.peers.simulcast_sdp import RID_URI, simulcast_offer
from media.rtp import vp8
from media.service import MediaService
from tests.media.relay_harness import RelayHarness, wait_until

AIORTC_OFFER = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 97 98\r\nc=IN IP4 0.0.0.0\r\na=sendonly\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
    "a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\na=mid:0\r\n"
    "a=ssrc-group:FID 11 12\r\na=ssrc:11 cname:x\r\na=ssrc:12 cname:x\r\n"
    "a=rtpmap:97 VP8/90000\r\na=rtpmap:98 rtx/90000\r\na=fmtp:98 apt=97\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=sendonly\r\na=mid:1\r\n"
    "a=ssrc:21 cname:x\r\na=rtpmap:96 opus/48000/2\r\n"
)


def test_the_offer_is_a_browsers_rid_simulcast_offer() -> None:
    sdp = simulcast_offer_sdp(AIORTC_OFFER, "0", ["q", "h", "f"])
    video, audio = sdp.split("m=audio")
    assert "a=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;f" in video
    assert "a=ssrc" not in video, "a browser announces no SSRC for its simulcast layers"
    assert "a=ssrc:21 cname:x" in audio, "other m-sections are left alone"
    offer = simulcast_offer(sdp)["0"]  # what the relay's uplink reads
    assert offer.rids == ("q", "h", "f")
    assert offer.rid_ext not in (1, 3) and offer.repaired_ext not in (1, 3, offer.rid_ext)
    assert offer.mid_ext == 1
    assert vp8_payload_type(sdp, "0") == 97 and vp8_payload_type(sdp, "1") is None


@pytest.mark.parametrize(
    ("size", "packets"),
    [(10, 1), (1194, 1), (1195, 2), (5000, 5)],  # a 6-byte descriptor each
)
def test_a_frame_is_split_into_payloads_under_the_packet_size(size: int, packets: int) -> None:
    frame = bytes(range(256)) * (size // 256) + bytes(size % 256)
    payloads = vp8_payloads(frame, 1234, 7, 2, True)
    assert len(payloads) == packets
    assert all(len(p) <= 1200 for p in payloads)
    first = vp8.parse_descriptor(payloads[0])
    assert (first.start_of_partition, first.picture_id, first.tl0picidx, first.tid,
            first.layer_sync) == (True, 1234, 7, 2, True)  # fmt: skip
    later = [vp8.parse_descriptor(p) for p in payloads[1:]]
    assert not any(d.start_of_partition for d in later)
    assert b"".join(p[first.size:] for p in payloads) == frame


@pytest.mark.parametrize(("index", "sync"), [(0, False), (1, True), (2, True), (3, False)])
def test_layer_sync_follows_libvpx_three_layer_pattern(index: int, sync: bool) -> None:
    assert layer_sync(index) is sync


def test_a_layer_marks_temporal_layers_rid_first_and_jumps_to_a_keyframe_on_request() -> None:
    clip = layer_clip(LAYERS[0])
    assert clip.temporal_ids[:8] == [0, 2, 1, 2, 0, 2, 1, 2]
    assert all(clip.temporal_ids[k] == 0 for k in clip.keyframes)
    layer = LayerSender(LAYERS[0], clip, 97, "0")
    ids = HeaderExtensionsMap()
    ids.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
        RTCRtpHeaderExtensionParameters(id=4, uri=RID_URI),
    ]))
    sent: list[RtpPacket] = []
    tids: list[int | None] = []
    for n in range(40):
        index = layer.next_frame()
        packets = [RtpPacket.parse(d, ids) for d in layer.packets(index, n * 3000, ids)]
        tids.append(vp8.parse_descriptor(packets[0].payload).tid)
        assert packets[-1].marker == 1 and {p.timestamp for p in packets} == {n * 3000}
        sent += packets
    assert tids[:4] == [0, 2, 1, 2]
    assert {p.ssrc for p in sent} == {layer.ssrc}
    assert all(p.extensions.rtp_stream_id == "q" for p in sent[:RID_PACKETS])
    assert all(p.extensions.rtp_stream_id is None for p in sent[RID_PACKETS:])
    layer.request_keyframe()
    assert layer.next_frame() in clip.keyframes


@pytest.mark.timeout(120)
async def test_a_relay_demultiplexes_the_three_layers_and_forwards_one() -> None:
    service = MediaService(0)
    await service.start()
    relay = RelayHarness(service)
    publisher: SimulcastPublisher | None = None
    try:
        await service.open_room("class-1", "class")
        await service.join("class-1", "t", "teacher")
        log = FrameLog(keep_order=False)

        async def publish_offer(sdp: str, sources: dict[str, str]) -> str:
            return await service.publish("class-1", "t", sdp, sources)

        publisher = SimulcastPublisher("t", publish_offer, frame_log=log)
        service.on_event(
            lambda room, pid, event: publisher.on_event(event) if pid == "t" else None
        )
        await publisher.publish()
        assert len(simulcast_offer(publisher.offer_sdp)) == 1
        assert len({layer.ssrc for layer in publisher.layers}) == 3
        classroom = await relay.join("class-1", "a", "assistant")
        await wait_until(lambda: classroom.track("t", "camera").frames >= 30, 30, "video")
        await wait_until(lambda: classroom.track("t", "mic").frames >= 10, 10, "audio")
        room = service._local.rooms["class-1"]  # type: ignore[union-attr]
        uplink = room._participants["t"].uplink
        assert uplink is not None
        (published,) = [t for t in uplink.tracks.values() if t.kind == "video"]
        assert [layer.rid for layer in published.spatial_layers] == ["q", "h", "f"]
        await wait_until(
            lambda: all(layer.packets > 30 for layer in published.spatial_layers),
            10, "every layer flowing into the relay",
        )
        sizes = classroom.track("t", "camera").keyframe_sizes
        assert sizes and sizes[-1][1] in LAYER_HEIGHTS, sizes
        assert relay.errors == []
    finally:
        if publisher is not None:
            await publisher.close()
        await relay.close()
        await service.stop()


@pytest.mark.parametrize("kept", [0, 1])
def test_a_layer_clip_decodes_the_same_with_its_upper_temporal_layers_dropped(kept: int) -> None:
    """L1T3 for real: the frames of layers up to `kept` decode bit-exactly as in the whole
    stream (what a subscriber on fewer frames a second gets)."""
    clip = layer_clip(LAYERS[0])

    def decoded(max_tid: int) -> dict[int, bytes]:
        decoder = av.CodecContext.create("libvpx", "r")
        out: dict[int, bytes] = {}
        for i, (data, tid) in enumerate(zip(clip.frames, clip.temporal_ids, strict=True)):
            if tid <= max_tid:
                for frame in decoder.decode(av.Packet(data)):
                    out[i] = bytes(frame.to_ndarray().tobytes())
        return out

    whole, part = decoded(2), decoded(kept)
    assert len(part) == len(clip.frames) * (1 if kept == 0 else 2) // 4
    assert all(whole[i] == frame for i, frame in part.items())
