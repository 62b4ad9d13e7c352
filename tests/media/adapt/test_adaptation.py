"""The adaptation tick: REMB and receiver reports in, rungs applied to the streams, `link` out.

A fake clock drives everything; an L1T3-looking VP8 track (TID, TL0PICIDX and picture ids
written into the descriptor) gives the track measured per-layer costs.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable
from typing import Any

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from client.clip import ClipTrack, load_clip
from media.adapt.adaptation import (
    HEARTBEAT_BYTES,
    HEARTBEAT_PACKETS,
    PACE_BELOW_BPS,
    PACE_FACTOR,
    PACE_VIDEO_FLOOR_BPS,
    PROBE_PADDING_BYTES,
    DownlinkAdaptation,
    audio_red,
    decision_trace,
    failed_probe_pace_cap,
    is_steady,
    low_cost,
    pace_with_backlog,
    pacing_rate,
    rung_costs,
    summary_rung,
)
from media.adapt.bandwidth_probe import ProbeInputs, ProbeState, ProbeStep
from media.adapt.budget import (
    Allocation,
    BudgetPolicy,
    IncomingTrack,
    Priority,
    TrackAllocation,
    allocate,
)
from media.adapt.estimator import DownlinkEstimator, EstimateBound, EstimatorPolicy, LinkEstimate
from media.adapt.rung import LOW_RUNG_NOMINAL_BPS, Rung, RungCosts
from media.forward.forwarder import PACKET_OVERHEAD, DatagramSink, InboundTrack, OutboundStream
from media.rtp.header import URI_ABS_SEND_TIME, URI_MID, ExtensionLayout
from media.rtp.rtcp_feedback import ReportBlock
from media.workers.pool import summed_rungs
from signaling.metrics import create_metrics
from signaling.ws_session import SessionFlow
from tests.media.relay_harness import running_relay, wait_until

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
SUB_VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=100)
L1T3_PATTERN = (0, 2, 1, 2)


@pytest.mark.parametrize(
    ("rates", "costs"),
    [
        ((0.0, 0.0, 0.0, 0.0), RungCosts((0.0,))),
        ((0.0, 0.0, 0.0, 900e3), RungCosts((900e3,))),
        ((200e3, 150e3, 300e3, 0.0), RungCosts((200e3, 150e3, 300e3))),
        ((200e3, 150e3, 0.0, 0.0), RungCosts((200e3, 150e3))),
        ((200e3, 0.0, 300e3, 10e3), RungCosts((210e3, 0.0, 300e3))),
    ],
)
def test_layer_bitrates_become_rung_costs_without_a_low_rung(
    rates: tuple[float, float, float, float], costs: RungCosts
) -> None:
    assert rung_costs(rates) == costs
    assert rung_costs(rates).low_bps is None


@pytest.mark.parametrize(
    ("rates", "measured_low", "costs"),
    [
        ((0.0, 0.0, 0.0, 900e3), None, RungCosts((900e3,), LOW_RUNG_NOMINAL_BPS)),
        ((0.0, 0.0, 0.0, 900e3), 0.0, RungCosts((900e3,), LOW_RUNG_NOMINAL_BPS)),  # starting
        ((0.0, 0.0, 0.0, 900e3), 128e3, RungCosts((900e3,), 128e3)),
        ((200e3, 150e3, 300e3, 0.0), 140e3, RungCosts((200e3, 150e3, 300e3), 140e3)),
    ],
)
def test_a_camera_offers_the_low_rung_at_its_measured_cost_or_the_nominal_one(
    rates: tuple[float, float, float, float], measured_low: float | None, costs: RungCosts
) -> None:
    got = rung_costs(rates, low_cost(measured_low))
    assert got == costs
    assert [c.rung for c in got.ladder()][-2:] == [Rung.LOW, Rung.AUDIO_ONLY]


def _allocation(*rungs: Rung | None) -> Allocation:
    tracks = []
    for i, rung in enumerate(rungs):
        decision: Any = None
        if rung is not None:
            decision = type("D", (), {"rung": rung})()
        tracks.append(TrackAllocation(f"t{i}", Priority.OTHER_VIDEO, 0.0, 0.0, decision))
    return Allocation(tuple(tracks), False, 0.0, 0.0, "")


@pytest.mark.parametrize(
    ("rungs", "summary"),
    [
        ((None,), None),
        ((None, Rung.AUDIO_ONLY), Rung.AUDIO_ONLY),
        ((Rung.AUDIO_ONLY, Rung.REDUCED_FPS), Rung.REDUCED_FPS),
        ((None, Rung.REDUCED_FPS, Rung.FULL), Rung.FULL),
    ],
)
def test_a_subscriber_is_on_the_best_rung_of_its_video(
    rungs: tuple[Rung | None, ...], summary: Rung | None
) -> None:
    assert summary_rung(_allocation(*rungs)) == summary


def test_rung_counts_add_up_over_workers() -> None:
    assert summed_rungs([{"full": 2}, {}, {"full": 1, "audio_only": 3}]) == {
        "full": 3, "audio_only": 3,
    }


class Subscriber:
    """One subscriber of one L1T3 camera, with a fake clock and the events it was sent."""

    def __init__(
        self,
        pace: Callable[[float | None], None] | None = None,
        drop_paced: Callable[[], object] | None = None,
    ) -> None:
        self.now = 100.0
        self.sent: list[bytes] = []
        self.events: list[dict[str, Any]] = []
        self.stats: list[dict[str, Any]] = []
        sink = DatagramSink()
        sink.connect(self.sent.append)
        self.track = InboundTrack(
            "teacher", "camera", [VP8], send_pli=lambda ssrc: None, clock=lambda: self.now
        )
        self.stream = OutboundStream("video", ssrc=1111, rtx_ssrc=2222, sink=sink)
        layout = ExtensionLayout.negotiated("0", {URI_MID: 1, URI_ABS_SEND_TIME: 3}, "video")
        self.stream.configure(layout, [SUB_VP8])
        self.stream.attach(self.track)
        self.adaptation = DownlinkAdaptation(
            "classroom-1", lambda: [self.stream], self._on_event, clock=lambda: self.now,
            pace=pace, drop_paced=drop_paced,
        )  # fmt: skip
        self.stream.link = self.adaptation
        self.frame = 0
        self.seq = 1000
        self.reported = 0
        self.lost = 0

    def one_second(self, remb_bps: float | None = None, fraction_lost: int = 0) -> None:
        """30 frames of two ~1000-byte packets (about 510 kbit/s in all: TID 0 and 1 a quarter
        each, TID 2 half), the subscriber's feedback, then ticks every 0.25 s."""
        for _ in range(4):
            for _ in range(30 // 4 + (1 if self.frame % 4 < 30 % 4 else 0)):
                self._send_frame()
            self.now += 0.25
            if remb_bps is not None:
                self.stream.on_remb(int(remb_bps))
            self.adaptation.tick()
        # what a receiver reports: the interval's loss, and the same loss in its counters,
        # which number the packets as the relay sent them (from the stream's first)
        sent = self.stream.packets
        self.lost += (sent - self.reported) * fraction_lost // 256
        self.reported = sent
        highest = self.stream.first_seq + sent - 1
        self.stream.on_report(ReportBlock(1111, fraction_lost, self.lost, highest, 0, 0, 0))

    def _send_frame(self) -> None:
        frame = self.frame
        tid = L1T3_PATTERN[frame % 4]
        pid = frame & 0x7FFF
        for n in range(2):
            first = 0x90 if n == 0 else 0x80
            descriptor = bytes(
                [first, 0xE0, 0x80 | (pid >> 8), pid & 0xFF, (frame // 4) & 0xFF,
                 (tid << 6) | (0x20 if frame % 4 in (1, 2) else 0)]
            )
            if n == 0 and frame % 120 == 0:
                body = b"\x00\x9d\x01\x2a" + b"K" * 1000
            else:
                body = (b"\x01" if n == 0 else b"") + b"F" * 1000
            self.track.on_packet(
                RtpPacket(payload_type=96, sequence_number=self.seq & 0xFFFF,
                          timestamp=3000 * frame, ssrc=42, payload=descriptor + body,
                          marker=n)
            )
            self.seq += 1
        self.frame += 1

    def _on_event(self, event: dict[str, Any]) -> None:
        if event["type"] == "link":
            self.events.append(event)
        else:
            self.stats.append(event)

    def rungs(self) -> list[str]:
        return [e["rung"] for e in self.events]


async def test_low_remb_drops_temporal_layers_then_pauses_video_and_recovery_restores_it() -> None:
    sub = Subscriber()
    for _ in range(3):
        sub.one_second(remb_bps=2_000_000)
    assert sub.adaptation.rung is Rung.FULL
    assert sub.rungs() == ["full"]
    assert sub.events[0] == {
        "type": "link", "participant": "classroom-1", "rung": "full",
        "estimate_kbps": 2000.0, "loss_pct": 0.0, "rtt_ms": 0.0, "reason": "start",
        "detail": sub.events[0]["detail"], "paused": [],
    }

    for _ in range(3):  # 350 kbit/s: 15 fps (about 255 kbit/s) fits, 30 fps does not
        sub.one_second(remb_bps=350_000)
    assert sub.adaptation.rung is Rung.REDUCED_FPS
    assert sub.stream.target_tid == 1
    assert sub.events[-1]["rung"] == "reduced_fps"
    assert sub.events[-1]["reason"] == "shortfall"
    # the REMB measures payload only: the link estimate adds the video packets' headers
    headers_kbps = sub.stream.packets / 6 * PACKET_OVERHEAD * 8 / 1000  # about 6 s sent
    assert 350.0 < sub.events[-1]["estimate_kbps"] < 350.0 + 1.5 * headers_kbps
    dropped = sub.stream.frames_dropped
    sub.one_second(remb_bps=350_000)
    assert sub.stream.frames_dropped - dropped in (14, 15, 16), "every TID 2 frame is left out"

    for _ in range(3):  # 60 kbit/s: not even the base layer fits
        sub.one_second(remb_bps=60_000)
    assert sub.adaptation.rung is Rung.AUDIO_ONLY
    assert sub.stream.paused and sub.stream not in sub.track.streams
    assert sub.events[-1]["paused"] == [f"{sub.track.participant_id}:{sub.track.source}"]
    packets = len(sub.sent)
    sub.one_second(remb_bps=60_000)
    heartbeat = sub.sent[packets:]
    # a paused stream sends no video: only its padding heartbeat (HEARTBEAT_PACKETS a tick),
    # padding-only packets continuing the sequence, so the subscriber keeps reporting on it
    assert len(heartbeat) == 4 * HEARTBEAT_PACKETS
    last_seq = int.from_bytes(sub.sent[packets - 1][2:4], "big")
    for n, packet in enumerate(heartbeat, start=1):
        assert packet[0] & 0x20, "the P bit"
        assert packet[-1] == HEARTBEAT_BYTES and len(packet) > HEARTBEAT_BYTES
        assert int.from_bytes(packet[2:4], "big") == (last_seq + n) & 0xFFFF
    packets = len(sub.sent)

    for _ in range(30):  # the link comes back: probes and holds bring full video back
        sub.one_second(remb_bps=3_000_000)
        if sub.adaptation.rung is Rung.FULL:
            break
    assert sub.adaptation.rung is Rung.FULL
    assert not sub.stream.paused and sub.stream.target_tid == 2
    assert sub.rungs()[:3] == ["full", "reduced_fps", "audio_only"]
    assert sub.rungs()[-1] == "full"
    for _ in range(5):  # keyframes come every 4 s here
        sub.one_second(remb_bps=3_000_000)
    video = [p for p in sub.sent[packets:] if not p[0] & 0x20]
    assert video, "video flows again from the next keyframe"
    seqs = [int.from_bytes(p[2:4], "big") for p in sub.sent[packets - 1 :]]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs)), "one sequence, no gap"


async def test_retransmissions_count_in_what_the_downlink_is_sent() -> None:
    # after an overflow, the retransmissions of what was lost keep the link full: the sent
    # rate (the overfull step, what goes beyond the allocation) must see them
    sub = Subscriber()
    for _ in range(2):  # the meter's window full
        sub.one_second(remb_bps=2_000_000)
    before = sub.adaptation.estimator.estimate(sub.now).sent_bps
    packets = len(sub.sent)
    newest = sub.stream.first_seq + sub.stream.packets - 1
    sub.stream.retransmit([(newest - n) & 0xFFFF for n in range(30)])
    assert len(sub.sent) == packets + 30 and sub.stream.retransmitted == 30
    assert 30 * 1000 < sub.stream.retransmitted_octets < 30 * 1010, "their payloads"
    sub.adaptation.tick()  # at the same moment: only the retransmissions are new
    after = sub.adaptation.estimator.estimate(sub.now).sent_bps
    # each counted as its payload and the fixed overhead (RTP header, SRTP, UDP, IP)
    expected = (sub.stream.retransmitted_octets + 30 * PACKET_OVERHEAD) * 8
    assert after - before == pytest.approx(expected, rel=0.02)


async def test_heavy_loss_in_receiver_reports_steps_down_without_any_remb() -> None:
    sub = Subscriber()
    # a start above this 510k stream (the relay's default is what a weak village link carries)
    sub.adaptation.estimator = DownlinkEstimator(EstimatorPolicy(initial_bps=1_000_000))
    for _ in range(3):
        sub.one_second()
    assert sub.adaptation.rung is Rung.FULL
    for _ in range(4):
        sub.one_second(fraction_lost=80)  # 31 % lost
    assert sub.adaptation.rung in (Rung.REDUCED_FPS, Rung.AUDIO_ONLY)
    assert sub.events[-1]["reason"] in ("loss", "shortfall")
    assert sub.events[-1]["loss_pct"] > 10


async def test_the_tick_runs_as_a_task_until_stopped() -> None:
    sub = Subscriber()
    sub.adaptation.ticker.interval_s = 0.01
    sub.adaptation.start()
    sub.adaptation.start()
    for _ in range(500):
        if sub.events:
            break
        await asyncio.sleep(0.01)
    await sub.adaptation.stop()
    assert sub.rungs() == ["full"]
    await sub.adaptation.stop()


def _link(bps: float, loss: float = 0.0) -> LinkEstimate:
    return LinkEstimate(bps, loss, 0.05, 0.0, EstimateBound.REMB, bps / 2, bps / 2)


CAMERA = IncomingTrack("t:camera", Priority.SPEAKER_VIDEO, costs=RungCosts((128e3, 128e3, 256e3)))
MIC = IncomingTrack("t:mic", Priority.LEAD_AUDIO, audio_bps=40e3)


@pytest.mark.parametrize(
    ("link", "tracks", "steady"),
    [
        (_link(2e6), [CAMERA, MIC], True),
        (_link(2e6, loss=0.06), [CAMERA, MIC], True),  # a village link's loss: nothing to do
        (_link(2e6, loss=0.08), [CAMERA, MIC], False),  # up_loss_max: timers may change
        (_link(560e3), [CAMERA, MIC], True),
        (_link(540e3), [CAMERA, MIC], False),  # 552k does not fit
        (_link(2e6), [CAMERA], False),  # a track went away
        (_link(2e6), [CAMERA, MIC, IncomingTrack("u:mic", Priority.AUDIO, 40e3)], False),
        (_link(2e6), [IncomingTrack("t:camera", Priority.SPEAKER_VIDEO,
                                    costs=RungCosts((500e3,))), MIC], False),  # layers changed
    ],
)
def test_a_tick_skips_deciding_only_when_nothing_could_change(
    link: LinkEstimate, tracks: list[IncomingTrack], steady: bool
) -> None:
    previous = allocate(_link(2e6), [CAMERA, MIC], None, 10.0, red_negotiated=False)
    assert previous.of("t:camera").rung is Rung.FULL  # type: ignore[union-attr]
    assert is_steady(link, tracks, previous, BudgetPolicy()) is steady


@pytest.mark.parametrize(
    ("loss", "now", "steady"),
    [
        (0.03, 12.0, True),  # still lossy: RED stays on
        (0.0, 12.0, True),  # RED's hold (15 s after the lossy moment at 10)
        (0.0, 24.9, True),
        (0.0, 25.0, False),  # the hold is over: RED would go off, so decide
    ],
)
def test_a_tick_with_red_on_is_steady_only_while_red_would_stay_on(
    loss: float, now: float, steady: bool
) -> None:
    previous = allocate(_link(2e6, loss=0.03), [CAMERA, MIC], None, 10.0, red_negotiated=True)
    assert previous.red and previous.lossy_at == 10.0
    policy = BudgetPolicy()
    got = is_steady(_link(2e6, loss), [CAMERA, MIC], previous, policy, red_negotiated=True, now=now)
    assert got is steady


@pytest.mark.parametrize(
    ("estimate", "spent", "rate"),
    [
        (10e6, 3e6, None),  # a good link is not paced
        (PACE_BELOW_BPS, 0.0, None),
        (3.9e6, 1e6, 3.9e6 * PACE_FACTOR + 40e3),
        (400e3, 300e3, 540e3),  # a little above the estimate
        (400e3, 520e3, 690e3),  # audio over the estimate (never cut): above what was allocated
        # an estimate cut below the audio: video still moves (40k over what audio takes)
        (30e3, 73e3, 131.25e3),
    ],
)
def test_a_constrained_downlink_is_paced_above_its_estimate_and_allocation(
    estimate: float, spent: float, rate: float | None
) -> None:
    assert pacing_rate(estimate, spent) == (None if rate is None else pytest.approx(rate))


def test_the_starting_guess_is_not_paced() -> None:
    """No feedback yet: the estimate says nothing about the link."""
    assert pacing_rate(400e3, 1.1e6, guessed=True) is None


def test_the_decision_trace_says_what_limits_the_estimate_and_why_each_rung() -> None:
    link = LinkEstimate(400e3, 0.03, 0.12, 0.0, EstimateBound.REMB, 300e3, 290e3)
    allocation = allocate(link, [CAMERA, MIC], None, 0.0)
    assert decision_trace("classroom-1", link, allocation) == (
        "adaptation classroom-1 bound=remb rtt=120ms sent=300k delivered=290k | "
        "estimate 400k loss 3.0%: audio 60k+RED; speaker reduced_fps/2 | "
        "mic=400k/60k camera=340k/256k/start"
    )


async def test_when_the_last_video_pauses_the_video_waiting_in_the_pacer_is_dropped() -> None:
    """Sent late, it would only delay the audio on a link that just overflowed; the stream
    restarts from a keyframe when it resumes."""
    drops: list[float] = []
    sub = Subscriber(drop_paced=lambda: drops.append(sub.now))
    for _ in range(3):
        sub.one_second(remb_bps=2_000_000)
    assert drops == []
    for _ in range(3):  # 60 kbit/s: the camera pauses
        sub.one_second(remb_bps=60_000)
    assert sub.stream.paused and len(drops) == 1, "once, as it pauses"


async def test_each_tick_sets_the_pacing_rate_from_the_estimate() -> None:
    rates: list[tuple[float | None, float]] = []

    def pace(rate: float | None) -> None:  # with what the last allocation spent
        allocation = sub.adaptation.allocation
        rates.append((rate, allocation.spent_bps if allocation is not None else 0.0))
        estimates.append(allocation.estimate_bps if allocation is not None else 0.0)

    estimates: list[float] = []

    sub = Subscriber(pace)
    sub.one_second(remb_bps=8_000_000)
    assert [rate for rate, _ in rates] == [None] * 4, "once a tick; a good link is not paced"
    for _ in range(3):
        sub.one_second(remb_bps=300_000)
    # the estimate: the REMB and the headers of what was sent, which it does not measure
    assert all(300_000 < e < 340_000 for e in estimates[-8:])
    paced = zip(rates[-8:], estimates[-8:], strict=True)
    assert all(rate == pacing_rate(e, spent) for (rate, spent), e in paced)
    assert all(rate is not None and rate >= 300_000 * PACE_FACTOR for rate, _ in rates[-8:])


async def test_every_few_seconds_the_link_figures_go_out_for_the_metrics() -> None:
    sub = Subscriber()
    for _ in range(12):
        sub.one_second(remb_bps=800_000, fraction_lost=13)  # 5 % lost
    assert len(sub.stats) >= 2
    sample = sub.stats[-1]
    assert sample["type"] == "link_stats" and sample["participant"] == "classroom-1"
    assert sample["rung"] in ("full", "reduced_fps", "low", "audio_only")
    assert 0 < sample["estimate_bps"] <= 800_000 * 1.1  # the REMB, and headers it does not see
    assert 0.03 < sample["loss"] < 0.07


def test_signaling_turns_link_samples_into_histograms_and_tells_no_client() -> None:
    class Hub:
        metrics = create_metrics()

        def send_to(self, participant_id: str, frame: object) -> None:
            raise AssertionError("a link sample is not sent to anyone")

    hub = Hub()
    event = {"type": "link_stats", "participant": "a", "rung": "low",
             "estimate_bps": 250_000, "loss": 0.04, "rtt_s": 0.12}
    SessionFlow(None, hub).on_media_event("class-1", "a", event)  # type: ignore[arg-type]

    def count(name: str) -> float:
        value = hub.metrics.registry.get_sample_value(name)
        return value or 0.0

    assert count("tongxin_subscriber_estimate_bps_count") == 1
    assert count("tongxin_subscriber_estimate_bps_sum") == 250_000
    assert count("tongxin_subscriber_loss_ratio_sum") == pytest.approx(0.04)
    assert count("tongxin_subscriber_rtt_seconds_sum") == pytest.approx(0.12)


@pytest.mark.timeout(120)
async def test_with_adaptation_off_nothing_is_decided_and_everything_goes_in_full() -> None:
    async with running_relay(0, adaptation=False) as (service, relay):
        await service.open_room("class-1", "class")
        teacher = await relay.join("class-1", "t", "teacher")
        classroom = await relay.join("class-1", "a", "assistant")
        video = load_clip("vp8", width=320, height=180, bitrate=300_000)
        await teacher.publish({"camera": ClipTrack(video)})
        await wait_until(lambda: classroom.track("t", "camera").frames >= 30, what="video")
        room = service._local.rooms["class-1"]  # type: ignore[union-attr]
        (stream,) = room.outbound_streams("a")
        assert stream.link is not None and stream.link.allocation is None  # type: ignore[attr-defined]
        assert stream.source is stream.track and not stream.paused and stream.target_tid == 2
        assert not [e for _, _, e in relay.events if e["type"] in ("link", "link_stats")]
        assert (await service.health())["rungs"] == {}


async def test_a_padding_probe_finds_a_link_that_came_back_while_the_remb_stays_low() -> None:
    sub = Subscriber()
    for _ in range(3):
        sub.one_second(remb_bps=2_000_000)
    for _ in range(4):  # a dip: the video pauses
        sub.one_second(remb_bps=60_000)
    assert sub.adaptation.rung is Rung.AUDIO_ONLY
    assert not any(p[-1] == PROBE_PADDING_BYTES for p in sub.sent), "no probe in the dip"
    # the link is back: clean reports and the RTT at its floor, but the receiver's REMB stays
    # within 1.5 times the little it gets (a heartbeat), as Chromium's does
    sent = len(sub.sent)
    for _ in range(8):
        sub.adaptation.estimator.on_rtt(0.01, sub.now)
        sub.one_second(remb_bps=60_000)
        if sub.adaptation.rung is Rung.FULL:
            break
    probe = [p for p in sub.sent[sent:] if p[0] & 0x20 and p[-1] == PROBE_PADDING_BYTES]
    assert len(probe) > 100, "the probe: padding-only packets at its target rate"
    assert sub.adaptation.estimator.estimate(sub.now).bps > 500_000
    # the probe's verdict raised the estimate past the REMB to what the link carried before
    # the dip (about the full stream), and the video came back
    assert sub.adaptation.rung is Rung.FULL
    seqs = [int.from_bytes(p[2:4], "big") for p in sub.sent[sent - 1 :]]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs)), "one sequence"


async def test_a_probe_pads_above_what_is_sent_when_that_is_more_than_the_costs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A layer ramping up to a ceiling just raised sends more than its measured cost: padded
    up from the costs alone, a probe overshot its target by the difference."""
    import media.adapt.adaptation as adaptation_module

    sub = Subscriber()
    seen: list[tuple[float, float, float]] = []  # (spent given, allocation's, sent)
    real = adaptation_module.probe_step

    def spy(state: ProbeState, inputs: ProbeInputs, now: float) -> ProbeStep:
        allocation = sub.adaptation.allocation
        assert allocation is not None
        if not state.running:
            sent = sub.adaptation.estimator.estimate(now).sent_bps
            seen.append((inputs.spent_bps, allocation.spent_bps, sent))
        return real(state, inputs, now)

    monkeypatch.setattr(adaptation_module, "probe_step", spy)
    for _ in range(3):
        sub.one_second(remb_bps=2_000_000)
    for _ in range(4):  # a dip: the video pauses; the sent meter still holds its last second
        sub.one_second(remb_bps=60_000)
    assert seen
    assert all(given == pytest.approx(max(costs, sent)) for given, costs, sent in seen)
    assert any(sent > costs for _, costs, sent in seen), "a tick where more went out"


@pytest.mark.parametrize(
    ("red", "probing", "on"), [(False, False, False), (True, False, True), (False, True, True)]
)
def test_the_audio_goes_with_red_on_a_lossy_link_and_while_a_probe_risks_the_queue(
    red: bool, probing: bool, on: bool
) -> None:
    assert audio_red(Allocation((), red, 0.0, 0.0, ""), probing) is on


@pytest.mark.parametrize(
    ("estimate", "wanted", "paced"),
    [
        # a loss-free link sent a 1.1 Mbit/s subscription: its estimate stays within twice
        # that, never PACE_BELOW_BPS; with room for everything half again, it is not paced
        (2.2e6, 1.1e6, False),
        (1.65e6, 1.1e6, False),
        (1.5e6, 1.1e6, True),  # a constrained link is paced as before
        (400e3, 1.1e6, True),
        (2.2e6, 0.0, True),  # what it wants unknown: as before
    ],
)
def test_a_link_with_room_for_everything_wanted_is_not_paced(
    estimate: float, wanted: float, paced: bool
) -> None:
    assert (pacing_rate(estimate, 1.0e6, wanted_bps=wanted) is not None) is paced


@pytest.mark.parametrize(
    ("delivered", "spent", "media", "cap"),
    [
        # the 300 kbit/s classroom: what got through bounds the retransmissions and bursts
        (280e3, 250e3, 250e3, 280e3),
        # a 2 Mbit/s classroom whose top layer ramps to the 1.2M the last probe proved: the
        # last report (631k) and the layer's measured cost (585k) lag what it sends
        (631e3, 585e3, 1.2e6, 1.2e6 * 1.1),
        (631e3, 700e3, 0.0, 700e3),  # nothing counted yet: the pictures' cost
    ],
)
def test_a_failed_probe_caps_the_pacing_at_what_got_through_but_never_below_the_media_sent(
    delivered: float, spent: float, media: float, cap: float
) -> None:
    assert failed_probe_pace_cap(delivered, spent, media) == pytest.approx(cap)


@pytest.mark.parametrize(
    ("rate", "backlog", "paced"),
    [
        (None, 0.0, None),  # a good link with nothing waiting: unpaced
        (None, 0.4, 1.5e6 * PACE_FACTOR + PACE_VIDEO_FLOOR_BPS),  # drains first
        (900e3, 0.4, 900e3),  # paced: as decided
    ],
)
def test_a_pacer_holding_video_is_not_released_in_one_burst(
    rate: float | None, backlog: float, paced: float | None
) -> None:
    assert pace_with_backlog(rate, 1.5e6, backlog) == paced


def test_a_sender_report_follows_a_padding_probe_once_its_padding_has_left() -> None:
    """The tick after the last that padded sends reports on the video streams: the RTT of
    the receiver report echoing one measures the queue the probe built."""
    reports: list[int] = []
    adaptation = DownlinkAdaptation(
        "classroom-1", list, lambda event: None, send_reports=lambda: reports.append(1)
    )
    for padding, sent in ((False, 0), (True, 0), (True, 0), (False, 1), (False, 1), (True, 1),
                          (False, 2)):  # fmt: skip
        adaptation._report_behind_probe(padding)
        assert len(reports) == sent


async def test_after_a_failed_probe_back_a_paused_video_waits_for_padding_or_a_while() -> None:
    """A rung probe from audio only that failed (or a pause by loss behind a deep queue) makes
    the next one wait for a padding probe to pass: `allocate` gets nothing to probe up to,
    until `RESUME_AFTER_FAILURE_S` have passed."""
    from media.adapt.adaptation import RESUME_AFTER_FAILURE_S

    sub = Subscriber()
    adaptation = sub.adaptation
    assert adaptation._resume_probe_max(sub.now) == math.inf
    adaptation._resume_failed_at = sub.now
    assert adaptation._resume_probe_max(sub.now + 1.0) == 0.0
    assert adaptation._resume_probe_max(sub.now + RESUME_AFTER_FAILURE_S) == math.inf


@pytest.mark.parametrize(
    ("remb", "after_s", "dropped"),
    [
        (300_000, 0.2, 1),  # fell by a quarter while padding: the rest of it is dropped
        (380_000, 0.2, 0),  # within the receiver's wobble
        (300_000, 0.6, 0),  # the padding is over (the next tick judges it)
    ],
)
async def test_a_remb_that_falls_while_a_probe_pads_stops_its_padding_at_once(
    remb: float, after_s: float, dropped: int
) -> None:
    sub = Subscriber()
    drops: list[int] = []
    sub.adaptation._drop_padding = lambda: drops.append(1)
    sub.adaptation.probe = ProbeState(started_at=sub.now, target_bps=800_000,
                                      remb_before=400_000)  # fmt: skip
    sub.now += after_s
    sub.adaptation.on_remb(remb)
    assert len(drops) == dropped
    assert sub.adaptation.estimator.remb_sample() == (remb, sub.now)
