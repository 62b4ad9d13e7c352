"""Audio on lossy links: RED (RFC 2198) built by the relay for subscribers that accept it, only
while their link is lossy, and Opus in-band FEC and DTX asked of publishers."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from client.clip import ClipTrack, load_clip
from media.adapt.adaptation import DownlinkAdaptation
from media.adapt.budget import BudgetPolicy
from media.adapt.estimator import EstimateBound, LinkEstimate
from media.forward.forwarder import DatagramSink, InboundTrack, OutboundStream
from media.peers.codec_match import OPUS_RECEIVE_PARAMETERS, forwarded_codecs
from media.peers.config import PeerConfig
from media.peers.uplink import Uplink
from media.rtp.header import URI_MID, ExtensionLayout
from media.rtp.red import (
    offer_with_red,
    parse_red,
    red_payload,
    red_payload_type,
    red_wanted,
)
from tests.media.relay_harness import running_relay, wait_until

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
SUB_OPUS = RTCRtpCodecParameters(
    mimeType="audio/opus", clockRate=48000, channels=2, payloadType=96
)


@pytest.mark.parametrize(
    ("loss", "was_on", "on"),
    [
        (0.0, False, False),
        (0.02, False, False),  # at the threshold: not yet
        (0.03, False, True),
        (0.015, True, True),  # hysteresis: stays on between the thresholds
        (0.015, False, False),
        (0.009, True, False),
        (0.3, True, True),
    ],
)
def test_red_goes_on_above_2_percent_loss_and_off_below_1(
    loss: float, was_on: bool, on: bool
) -> None:
    assert red_wanted(loss, was_on) is on


@pytest.mark.parametrize(
    ("previous", "kept"),
    [
        ([], []),
        ([(1000 - 960, b"a" * 80)], [0]),
        ([(1000 - 1920, b"a" * 80), (1000 - 960, b"b" * 70)], [0, 1]),
        ([(1000 - 2880, b"x"), (1000 - 1920, b"a"), (1000 - 960, b"b")], [1, 2]),  # as asked
        ([(1000 - 20000, b"a"), (1000 - 960, b"b")], [1]),  # too old for 14 bits (DTX gap)
        ([(1000 - 1920, b"a" * 1100), (1000 - 960, b"b")], [1]),  # too large for 10 bits
        ([(1000, b"a")], []),  # same timestamp: not an earlier packet
    ],
)
def test_red_packets_carry_the_previous_packets_then_the_primary(
    previous: list[tuple[int, bytes]], kept: list[int]
) -> None:
    previous = [(ts & 0xFFFFFFFF, data) for ts, data in previous]  # some wrap
    payload = red_payload(96, 1000, b"primary", previous, redundancy=2)
    blocks = parse_red(payload, 1000)
    assert blocks[-1] == (96, 1000, b"primary")
    assert blocks[:-1] == [(96, previous[i][0] & 0xFFFFFFFF, previous[i][1]) for i in kept]


def test_a_red_payload_without_redundancy_is_one_header_byte_and_the_primary() -> None:
    assert red_payload(111, 5, b"opus", []) == bytes([111]) + b"opus"
    with pytest.raises(ValueError):
        parse_red(b"\x80\x00", 0)


async def _offer_sdp() -> str:
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendonly")
    pc.addTransceiver("video", direction="sendonly")
    offer = await pc.createOffer()
    await pc.close()
    return offer.sdp


async def test_the_downlink_offer_adds_red_to_audio_only_and_reads_the_answer() -> None:
    sdp = offer_with_red(await _offer_sdp())
    audio, video = sdp.split("m=audio")[1].split("m=video")
    assert audio.split("\r\n")[0].endswith(" 96 63 0 8") or " 96 63 " in audio.split("\r\n")[0]
    assert "a=rtpmap:63 red/48000/2" in audio and "a=fmtp:63 96/96" in audio
    assert "red/48000" not in video
    assert offer_with_red(sdp) == sdp, "idempotent"

    # an aiortc subscriber ignores RED; a browser's answer keeps it
    client = RTCPeerConnection()
    await client.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
    answer = await client.createAnswer()
    await client.close()
    assert "red/48000" not in answer.sdp
    assert red_payload_type(answer.sdp, "0") is None
    browser_like = offer_with_red(answer.sdp)
    assert red_payload_type(browser_like, "0") == 63
    assert red_payload_type(browser_like, "1") is None


async def test_publishers_are_asked_for_opus_fec_and_dtx() -> None:
    assert forwarded_codecs([OPUS])[0].parameters == OPUS_RECEIVE_PARAMETERS
    assert OPUS.parameters == {}, "aiortc's own codec list is not changed"
    publisher = RTCPeerConnection()
    publisher.addTransceiver(AudioStreamTrack(), direction="sendonly")
    offer = await publisher.createOffer()
    await publisher.setLocalDescription(offer)
    uplink = Uplink("t", PeerConfig(), lambda: None, lambda state: None)
    try:
        answer = await uplink.handle_offer(publisher.localDescription.sdp, {"0": "mic"})
    finally:
        await uplink.close()
        await publisher.close()
    fmtp = [line for line in answer.splitlines() if line.startswith("a=fmtp:")]
    assert any("useinbandfec=1" in line and "usedtx=1" in line for line in fmtp), fmtp


class AudioSubscriber:
    """One subscriber of one Opus track, with a fake clock; `red_pt` as its answer said."""

    def __init__(self, red_pt: int | None) -> None:
        self.now = 50.0
        self.sent: list[bytes] = []
        sink = DatagramSink()
        sink.connect(self.sent.append)
        self.track = InboundTrack("teacher", "mic", [OPUS], send_pli=lambda ssrc: None)
        self.stream = OutboundStream("audio", ssrc=3333, rtx_ssrc=4444, sink=sink)
        self.stream.configure(ExtensionLayout.negotiated("0", {URI_MID: 1}, "audio"), [SUB_OPUS])
        self.stream.red_pt = red_pt
        self.stream.attach(self.track)
        self.events: list[dict[str, Any]] = []
        self.adaptation = DownlinkAdaptation(
            "classroom", lambda: [self.stream], self.events.append, clock=lambda: self.now
        )
        self.seq = 100
        self.ts = 0

    def second(self, loss: float) -> list[RtpPacket]:
        """50 Opus packets, then a tick on a link with this loss; the packets sent."""
        self.adaptation.estimator.estimate = lambda now: LinkEstimate(  # type: ignore[method-assign]
            1e6, loss, 0.05, 0.0, EstimateBound.REMB, 1e5, 1e5
        )
        self.sent.clear()
        for _ in range(50):
            self.track.on_packet(
                RtpPacket(111, 1, self.seq & 0xFFFF, self.ts, 77, b"opus-%d" % self.seq)
            )
            self.seq += 1
            self.ts += 960
        self.now += 1.0
        self.adaptation.tick()
        return [RtpPacket.parse(data) for data in self.sent]


@pytest.mark.parametrize("red_pt", [63, None])
async def test_a_subscriber_gets_red_only_while_its_link_is_lossy_and_only_if_negotiated(
    red_pt: int | None,
) -> None:
    sub = AudioSubscriber(red_pt)
    sub.second(0.0)
    clean = sub.second(0.0)
    assert {p.payload_type for p in clean} == {96}
    turning = sub.second(0.05)  # the tick at the end of this second turns RED on
    lossy = sub.second(0.05)
    if red_pt is None:
        assert {p.payload_type for p in lossy} == {96}
        return
    assert {p.payload_type for p in lossy} == {63}
    assert sub.adaptation.allocation is not None and sub.adaptation.allocation.red
    seqs = [p.sequence_number for p in clean + turning + lossy]
    assert all((b - a) & 0xFFFF == 1 for a, b in pairwise(seqs))
    blocks = parse_red(lossy[10].payload, lossy[10].timestamp)
    assert [pt for pt, _, _ in blocks] == [96, 96]
    assert [ts for _, ts, _ in blocks] == [lossy[9].timestamp, lossy[10].timestamp]
    n = sub.seq - 50 + 10
    assert [data for _, _, data in blocks] == [b"opus-%d" % (n - 1), b"opus-%d" % n]
    assert len(sub.track.recent) == 2, "a track keeps what RED may need, no more"
    held = sub.second(0.0)
    assert {p.payload_type for p in held} == {63}, "RED held after the loss is gone"
    sub.now += BudgetPolicy().red_hold_s  # the tick at the end of the next second turns it off
    sub.second(0.0)
    back = sub.second(0.0)
    assert {p.payload_type for p in back} == {96}, "RED off once the loss is gone for long"


@pytest.mark.timeout(120)
async def test_through_the_relay_a_subscriber_that_accepts_red_gets_it_only_when_lossy() -> None:
    async with running_relay(0) as (service, relay):
        await service.open_room("class-1", "class")
        teacher = await relay.join("class-1", "t", "teacher")
        browser = await relay.join("class-1", "b", "assistant")
        answer_plain = browser._send_answer

        async def answer_like_a_browser(sdp: str) -> None:
            await answer_plain(offer_with_red(sdp))  # a browser answering keeps the RED offered

        browser._send_answer = answer_like_a_browser  # type: ignore[method-assign]
        await teacher.publish({"mic": ClipTrack(load_clip("opus"))})
        await wait_until(lambda: browser.track("t", "mic").frames >= 20, what="plain audio")
        room = service._local.rooms["class-1"]  # type: ignore[union-attr]
        (stream,) = room.outbound_streams("b")
        assert stream.red_pt == 63 and not stream.red_on

        # RED's hold after the last lossy moment (15 s, proven with a fake clock above) is
        # shortened: this test is about the path through the relay
        adaptation = stream.link
        assert isinstance(adaptation, DownlinkAdaptation)
        adaptation._policy = replace(adaptation._policy, red_hold_s=0.5)

        def loss(fraction: float) -> None:
            stream.link.estimator.estimate = lambda now: LinkEstimate(  # type: ignore[union-attr]
                1e6, fraction, 0.05, 0.0, EstimateBound.REMB, 1e5, 1e5
            )

        loss(0.08)
        await wait_until(lambda: stream.red_packets >= 20, what="RED packets on a lossy link")
        # the aiortc client drops a payload type it did not negotiate: plain audio has stopped
        loss(0.0)
        await wait_until(lambda: not stream.red_on, what="RED off again")
        frames = browser.track("t", "mic").frames
        await wait_until(
            lambda: browser.track("t", "mic").frames >= frames + 20, what="plain audio again"
        )
        assert relay.errors == []
