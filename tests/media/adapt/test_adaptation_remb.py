"""REMB towards a publisher: capped only when every subscriber of it is weak, never below the
low rung's input, lifted again (explicitly) when one subscriber can take more."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtpPacket, unpack_remb_fci

from client.clip import ClipTrack, load_clip
from client.peer import FrameLog
from media.adapt.estimator import EstimateBound, LinkEstimate
from media.adapt.publisher_cap import (
    CapPolicy,
    PublisherRemb,
    SubscriberView,
    publisher_cap,
    track_cap,
)
from media.adapt.rung import Rung
from media.forward.forwarder import DatagramSink, InboundTrack, OutboundStream
from tests.media.relay_harness import running_relay, wait_until

FULL, REDUCED, LOW, AUDIO_ONLY = Rung.FULL, Rung.REDUCED_FPS, Rung.LOW, Rung.AUDIO_ONLY


@pytest.mark.parametrize(
    ("views", "full_bps", "cap"),
    [
        ([], 1e6, None),  # nobody watches: leave the publisher alone
        ([(FULL, 3e6)], 1e6, None),  # strong: takes it all with room to grow
        ([(FULL, 3e6), (LOW, 200e3)], 1e6, None),  # one strong subscriber is enough
        ([(None, 0.0), (LOW, 200e3)], 1e6, None),  # undecided counts as strong
        ([(REDUCED, 500e3), (LOW, 250e3)], 1e6, 400e3),  # the best weak one's share, fitted
        ([(LOW, 200e3), (AUDIO_ONLY, 50e3)], 1e6, 300e3),  # never below the low rung's input
        ([(FULL, 1.2e6)], 1e6, 960e3),  # on full only thanks to the cap: keep it
        ([(FULL, 1.6e6)], 1e6, None),  # the link grew past the stream: lift
    ],
)
def test_a_track_is_capped_only_when_every_subscriber_is_weak(
    views: list[tuple[Rung | None, float]], full_bps: float, cap: float | None
) -> None:
    got = track_cap([SubscriberView(r, s) for r, s in views], full_bps)
    assert got == (pytest.approx(cap) if cap is not None else None)


@pytest.mark.parametrize(
    ("caps", "audio", "total"),
    [
        ([], 40e3, None),
        ([300e3], 40e3, 340e3),
        ([300e3, 500e3], 40e3, 840e3),
        ([300e3, None], 40e3, None),  # a browser's REMB caps everything it sends
    ],
)
def test_the_publisher_cap_adds_its_tracks_or_is_none(
    caps: list[float | None], audio: float, total: float | None
) -> None:
    assert publisher_cap(caps, audio) == total


VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)


@dataclass
class _Item:
    rung: Rung
    share_bps: float


class _Allocation:
    def __init__(self, rung: Rung, share: float) -> None:
        self.item = _Item(rung, share)

    def of(self, track_id: str) -> _Item | None:
        return self.item if track_id == "t:camera" else None


class _Link:
    def __init__(self, rung: Rung, share: float) -> None:
        self.allocation = _Allocation(rung, share)


async def test_the_cap_is_sent_each_tick_and_lifted_explicitly_a_few_times() -> None:
    now = [10.0]
    track = InboundTrack("t", "camera", [VP8], send_pli=lambda ssrc: None, clock=lambda: now[0])
    track.on_packet(RtpPacket(96, 1, 1, 0, 4242, b"\x10" + b"x" * 500))
    stream = OutboundStream("video", 1, 2, DatagramSink())
    stream.attach(track)
    stream.link = _Link(LOW, 250e3)  # type: ignore[assignment]
    sent: list[tuple[int, list[int]]] = []
    remb = PublisherRemb(lambda: [track], lambda bps, ssrcs: sent.append((bps, ssrcs)),
                         clock=lambda: now[0])
    assert remb.tick() == CapPolicy().low_input_bps
    assert sent == [(300_000, [4242])]
    stream.link = _Link(FULL, 5e6)  # type: ignore[assignment]
    for _ in range(8):
        assert remb.tick() is None
    assert [bps for bps, _ in sent[1:]] == [20_000_000] * 5, "lifted five times, then quiet"
    stream.detach()
    assert list(track.subscribers) == []


async def test_a_track_crossing_the_trunk_is_not_capped_by_the_subscribers_seen_here() -> None:
    track = InboundTrack("t", "camera", [VP8], send_pli=lambda ssrc: None)
    track.on_packet(RtpPacket(96, 1, 1, 0, 4242, b"\x10" + b"x" * 500))
    stream = OutboundStream("video", 1, 2, DatagramSink())
    stream.attach(track)
    stream.link = _Link(LOW, 250e3)  # type: ignore[assignment]
    sent: list[tuple[int, list[int]]] = []
    remb = PublisherRemb(lambda: [track], lambda bps, ssrcs: sent.append((bps, ssrcs)))
    track.trunk = lambda packet: None  # other nodes' subscribers take it too (media.trunk)
    assert remb.tick() is None and sent == []
    track.trunk = None
    assert remb.tick() == CapPolicy().low_input_bps


@pytest.mark.timeout(120)
async def test_a_publisher_whose_only_subscriber_is_weak_gets_a_remb_cap_then_none() -> None:
    async with running_relay(0) as (service, relay):
        await service.open_room("class-1", "class")
        log = FrameLog(keep_order=False)
        teacher = await relay.join("class-1", "t", "teacher", log)
        classroom = await relay.join("class-1", "a", "assistant")
        video = load_clip("vp8", width=320, height=180, bitrate=300_000)
        await teacher.publish({"camera": ClipTrack(video, on_frame=log.recorder("camera"))})
        sender = teacher._up_transceivers["camera"].sender
        rembs: list[int] = []
        handle = sender._handle_rtcp_packet

        async def spy(packet: object) -> None:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
                rembs.append(unpack_remb_fci(packet.fci)[0])
            await handle(packet)

        sender._handle_rtcp_packet = spy  # type: ignore[method-assign]
        await wait_until(lambda: classroom.track("t", "camera").frames >= 10, what="video")
        room = service._local.rooms["class-1"]  # type: ignore[union-attr]
        (stream,) = room.outbound_streams("a")

        def link(bps: float, loss: float) -> None:
            stream.link.estimator.estimate = lambda now: LinkEstimate(  # type: ignore[union-attr]
                bps, loss, 0.02, 0.0, EstimateBound.REMB, bps / 2, bps / 2
            )

        link(150_000, 0.03)  # weak: the publisher is capped at the low rung's input
        await wait_until(lambda: 300_000 in rembs, what="a REMB cap at the publisher")
        link(10_000_000, 0.0)  # strong again: the cap is lifted
        await wait_until(lambda: rembs[-1] == 20_000_000, what="the cap lifted")
        assert relay.errors == []
