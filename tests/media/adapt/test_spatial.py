"""Simulcast layers on the rung ladder: costs per layer, the layer a rung stands for, and a
subscriber's stream switched between layers (no transcoder)."""

from __future__ import annotations

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from media.adapt.adaptation import padding_climbs
from media.adapt.rung import (
    AUDIO_ONLY,
    LOW,
    Rung,
    RungChoice,
    RungCosts,
    RungDecision,
    RungReason,
    decide,
)
from media.adapt.spatial import (
    Rates,
    apply_layer,
    below_top_layer,
    capped_top_layer,
    ladder_rates,
    layer_for,
    simulcast_costs,
    start_layer,
    temporal_layers_for,
    top_floor,
)
from media.adapt.transcode import offers_low
from media.forward.emit import DatagramSink
from media.forward.forwarder import InboundTrack, OutboundStream

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
FULL3 = RungChoice(Rung.FULL, 3)
FULL2 = RungChoice(Rung.FULL, 2)
REDUCED1 = RungChoice(Rung.REDUCED_FPS, 1)
REDUCED2 = RungChoice(Rung.REDUCED_FPS, 2)
FULL1 = RungChoice(Rung.FULL, 1)
LOW2 = RungChoice(Rung.LOW, 2)
LOW1 = RungChoice(Rung.LOW, 1)

Q = (60_000.0, 30_000.0, 30_000.0, 0.0)  # 180p: 120k
H = (200_000.0, 100_000.0, 100_000.0, 0.0)  # 360p: 400k
F = (700_000.0, 350_000.0, 350_000.0, 0.0)  # 720p: 1400k
OFF = (0.0, 0.0, 0.0, 0.0)
Q_TEMPORAL = (60_000.0, 30_000.0, 30_000.0)


@pytest.mark.parametrize(
    ("layers", "costs"),
    [
        # three layers: full = 720p, reduced_fps(1) = 360p, low = 180p (and its temporal
        # layers, for 180p at a lower frame rate)
        ((Q, H, F), RungCosts((400_000.0, 1_000_000.0), 120_000.0, low_forwarded=True,
                              low_layer_bps=Q_TEMPORAL)),
        # two layers: full = 360p, low = 180p
        ((Q, H), RungCosts((400_000.0,), 120_000.0, low_forwarded=True,
                           low_layer_bps=Q_TEMPORAL)),
        # the browser stopped the top layer (its uplink): the ladder is what flows
        ((Q, H, OFF), RungCosts((400_000.0,), 120_000.0, low_forwarded=True,
                                low_layer_bps=Q_TEMPORAL)),
        ((OFF, H, F), RungCosts((1_400_000.0,), 400_000.0, low_forwarded=True,
                                low_layer_bps=(200_000.0, 100_000.0, 100_000.0))),
        # one layer flows: its temporal layers, and no low rung
        ((Q, OFF, OFF), RungCosts((60_000.0, 30_000.0, 30_000.0))),
        # nothing measured yet
        ((OFF, OFF, OFF), RungCosts((0.0,))),
        # rates measured a window apart never make a higher layer cheaper
        ((Q, F, H), RungCosts((1_400_000.0, 1.0), 120_000.0, low_forwarded=True,
                              low_layer_bps=Q_TEMPORAL)),
        # a lowest layer without temporal layers: one entry, no lower frame rate to offer
        (((120_000.0, 0.0, 0.0, 0.0), H), RungCosts((400_000.0,), 120_000.0, low_forwarded=True,
                                                  low_layer_bps=(120_000.0,))),
    ],
)
def test_simulcast_costs(
    layers: tuple[tuple[float, float, float, float], ...], costs: RungCosts
) -> None:
    assert simulcast_costs(layers) == costs


def test_the_ladder_of_three_layers_is_720p_360p_180p_at_30_and_15_fps_then_audio_only(
) -> None:
    costs = simulcast_costs((Q, H, F))
    assert costs.ladder() == (FULL2, REDUCED1, LOW, LOW2, AUDIO_ONLY)
    assert [costs.cost(c) for c in costs.ladder()] == [
        1_400_000.0, 400_000.0, 120_000.0, 90_000.0, 0.0
    ]


@pytest.mark.parametrize(
    ("choice", "floor", "least"),
    [
        # a lowest layer whose ceiling follows its subscribers down: each frame rate can be
        # brought down with it, in proportion
        (LOW, 100_000.0, 100_000.0),
        (LOW2, 100_000.0, 75_000.0),
        (LOW1, 100_000.0, 50_000.0),
        # no floor: what it costs now
        (LOW2, None, 90_000.0),
        # a floor above what it costs: what it costs
        (LOW1, 200_000.0, 60_000.0),
    ],
)
def test_the_least_a_lower_frame_rate_of_the_lowest_layer_costs(
    choice: RungChoice, floor: float | None, least: float
) -> None:
    costs = simulcast_costs((Q, H, F), floor)
    assert costs.least_cost(choice) == pytest.approx(least)


@pytest.mark.parametrize(
    ("layers", "capped", "floor"),
    [
        # the highest layer flowing, capped by the relay: twice the one under it, >= 450k
        ((Q, H, F), [2], top_floor(sum(H))),
        ((Q, H, F), [0, 1, 2], top_floor(sum(H))),
        ((Q, H), [1], top_floor(sum(Q))),
        # not capped (the page's own ceiling), or only a lower layer is: what it costs now
        ((Q, H, F), [], None),
        ((Q, H, F), [0, 1], None),
    ],
)
def test_a_capped_top_layer_can_be_brought_to_its_floor(
    layers: tuple[Rates, ...], capped: list[int], floor: float | None
) -> None:
    assert simulcast_costs(layers, None, capped).top_floor_bps == floor


def test_a_lowest_layer_without_temporal_layers_has_no_lower_frame_rate() -> None:
    costs = simulcast_costs(((120_000.0, 0.0, 0.0, 0.0), H))
    assert costs.ladder() == (FULL1, LOW, AUDIO_ONLY)


def decision(choice: RungChoice) -> RungDecision:
    return RungDecision(choice, RungReason.START, True, 0.0, 0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("choice", "totals", "layer", "temporal"),
    [
        (FULL2, (120e3, 400e3, 1400e3), 2, 3),
        (REDUCED1, (120e3, 400e3, 1400e3), 1, 3),
        (LOW, (120e3, 400e3, 1400e3), 0, 3),
        # the lowest layer at a lower frame rate
        (LOW2, (120e3, 400e3, 1400e3), 0, 2),
        (LOW1, (120e3, 400e3, 0.0), 0, 1),
        (AUDIO_ONLY, (120e3, 400e3, 1400e3), 2, 3),
        (FULL2, (120e3, 400e3, 0.0), 1, 3),
        (LOW, (120e3, 400e3, 0.0), 0, 3),
        (FULL2, (0.0, 400e3, 1400e3), 2, 3),
        (LOW, (0.0, 400e3, 1400e3), 1, 3),
        # one layer flows: that one, with the decision's temporal layers
        (FULL3, (120e3, 0.0, 0.0), 0, 3),
        (REDUCED1, (120e3, 0.0, 0.0), 0, 1),
        (REDUCED2, (120e3, 0.0, 0.0), 0, 2),
        # nothing measured yet: the lowest (the one every link is meant to carry)
        (FULL3, (0.0, 0.0, 0.0), 0, 3),
    ],
)
def test_layer_for(
    choice: RungChoice, totals: tuple[float, ...], layer: int, temporal: int
) -> None:
    assert layer_for(decision(choice), totals) == layer
    assert temporal_layers_for(decision(choice), totals) == temporal


@pytest.mark.parametrize(
    ("share", "rung", "layer"),
    [(3_000_000.0, Rung.FULL, 2), (800_000.0, Rung.REDUCED_FPS, 1), (200_000.0, Rung.LOW, 0),
     (50_000.0, Rung.AUDIO_ONLY, 2)],
)
def test_a_share_picks_the_layer_that_fits(share: float, rung: Rung, layer: int) -> None:
    chosen = decide(share, 0.0, 0.05, simulcast_costs((Q, H, F)), None, 0.0)
    assert chosen.rung is rung
    assert layer_for(chosen, (120e3, 400e3, 1400e3)) == layer


class Layers:
    """A simulcast publication of three layers, their rates as measured, and one subscriber."""

    def __init__(self) -> None:
        self.plis: list[int] = []
        self.tracks = [
            InboundTrack("teacher", "camera", [VP8], send_pli=self.plis.append)
            for _ in ("q", "h", "f")
        ]
        for rid, track in zip(("q", "h", "f"), self.tracks, strict=True):
            track.rid = rid
            track.ssrc = {"q": 1, "h": 2, "f": 3}[rid]
            track._rates = {"q": Q, "h": H, "f": F}[rid]  # type: ignore[assignment]
        self.top = self.tracks[-1]
        self.top.spatial_layers = tuple(self.tracks)
        self.sink = DatagramSink()
        self.stream = OutboundStream("video", ssrc=11, rtx_ssrc=12, sink=self.sink)
        self.stream.attach(self.top)


async def test_a_new_subscriber_starts_on_the_lowest_layer_and_asks_it_for_a_keyframe() -> None:
    layers = Layers()
    assert start_layer(layers.top) is layers.tracks[0]
    single = InboundTrack("teacher", "camera", [VP8], send_pli=lambda ssrc: None)
    assert start_layer(single) is None
    stream = OutboundStream("video", ssrc=21, rtx_ssrc=22, sink=DatagramSink())
    layers.plis.clear()
    stream.attach(layers.top, start_layer(layers.top))
    assert stream.track is layers.top and stream.source is layers.tracks[0]
    assert stream in layers.tracks[0].streams and stream not in layers.top.streams
    assert layers.plis == [1]  # the lowest layer's SSRC, not the top's


@pytest.mark.parametrize(
    ("estimate", "rung"),
    [(400_000.0, Rung.LOW), (700_000.0, Rung.REDUCED_FPS), (3_000_000.0, Rung.FULL)],
)
def test_a_start_made_before_the_layers_were_measured_is_made_again_once_they_are(
    estimate: float, rung: Rung
) -> None:
    first = decide(estimate, 0.0, 0.0, simulcast_costs((OFF, OFF, OFF)), None, 0.0, guessed=True)
    assert first.rung is Rung.FULL and first.cost_bps == 0.0  # nothing to go by yet
    # half a second later the layers are measured, the estimate is still the guess: not held
    # on the top layer for the guess's hold, but started again on the layer the guess fits
    # (a simulcast `low` is a forwarded layer, so the guess may start there)
    again = decide(estimate, 0.0, 0.0, simulcast_costs((Q, H, F)), first, 0.5, guessed=True)
    assert again.rung is rung and again.reason is RungReason.START


async def test_a_simulcast_camera_has_no_transcoded_low_rung() -> None:
    layers = Layers()
    assert not offers_low(layers.top)
    single = InboundTrack("teacher", "camera", [VP8], send_pli=lambda ssrc: None)
    assert offers_low(single)


async def test_apply_layer_switches_to_the_rungs_layer_and_pauses() -> None:
    layers = Layers()
    stream = layers.stream
    assert stream.source is layers.top
    apply_layer(stream, layers.top, decision(LOW))
    # nothing was forwarded yet: nothing to keep on screen, the switch is at once
    assert stream.source is layers.tracks[0] and layers.plis[-1] == 1
    assert layers.top.low_rendition is None, "no transcoder"
    apply_layer(stream, layers.top, decision(REDUCED1))
    assert stream.source is layers.tracks[1] and layers.plis[-1] == 2
    apply_layer(stream, layers.top, decision(AUDIO_ONLY))
    assert stream.paused and stream not in layers.tracks[1].streams
    apply_layer(stream, layers.top, decision(FULL2))
    assert not stream.paused and stream.source is layers.top and stream in layers.top.streams
    assert stream.target_tid == 2


async def test_the_ladder_sees_the_top_layer_within_the_ceiling_the_relay_just_set() -> None:
    layers = Layers()
    assert ladder_rates(layers.top, 0.0) == F
    layers.top.ceiling_bps = 700_000.0  # half of what it sends: its encoder follows in a second
    assert sum(ladder_rates(layers.top, 0.0)) == pytest.approx(700_000.0)
    assert ladder_rates(layers.top, 0.0)[0] == pytest.approx(F[0] / 2)
    layers.top.ceiling_bps = 1_600_000.0  # above what it sends: as measured
    assert ladder_rates(layers.top, 0.0) == F


@pytest.mark.parametrize(
    ("measured", "ceiling", "reach", "seen"),
    [
        # the budget fell: the ceiling its budget sets now (176k) is what 180p will cost
        (212_000.0, 300_000.0, 176_000.0, 176_000.0),
        # the weakest subscriber, steady: its reach is the ceiling, which 180p sends
        (240_000.0, 240_000.0, 240_000.0, 240_000.0),
        # a stronger subscriber: as measured
        (240_000.0, 240_000.0, 900_000.0, 240_000.0),
        # the page's own ceiling (the recording takes it): as measured, it does not follow
        (240_000.0, None, 176_000.0, 240_000.0),
        # no budget known: within the ceiling
        (240_000.0, 200_000.0, None, 200_000.0),
    ],
)
async def test_the_lowest_layer_costs_what_the_subscribers_own_budget_would_set_it(
    measured: float, ceiling: float | None, reach: float | None, seen: float
) -> None:
    """Its ceiling follows the weakest subscriber down (`dynacast.lowest_ceiling`): a classroom
    whose budget fell under what 180p took at a higher ceiling keeps 180p (the ceiling comes
    down within a second) rather than being paused."""
    layers = Layers()
    q = layers.tracks[0]
    q._rates = tuple(r * measured / sum(Q) for r in Q)  # type: ignore[assignment]
    q.ceiling_bps = ceiling
    assert sum(ladder_rates(q, 0.0, reach)) == pytest.approx(seen)


@pytest.mark.parametrize(
    ("ceiling", "on", "paused", "rtx", "capped"),
    [
        (1_400_000.0, 2, False, True, True),  # 1.4M of 1.4M: held by it
        (1_000_000.0, 2, False, True, False),  # its 2M budget does not hold it: another's does
        (None, 2, False, True, False),  # the page's own ceiling: nothing to climb to
        (1_500_000.0, 2, False, True, False),  # near the page's own: the estimate lifts it
        (1_400_000.0, 1, False, True, False),  # not on the top layer (`below_top_layer`)
        (1_400_000.0, 2, True, True, False),  # paused
        (1_400_000.0, 2, False, False, False),  # no RTX to carry the padding
    ],
)
async def test_a_stream_on_the_top_layer_held_by_its_ceiling_climbs(
    ceiling: float | None, on: int, paused: bool, rtx: bool, capped: bool
) -> None:
    layers = Layers()
    layers.top.ceiling_bps = ceiling
    layers.tracks[1].ceiling_bps = ceiling
    stream = layers.stream
    stream.share_bps = 1_650_000.0 if ceiling != 1_000_000.0 else 2_000_000.0
    stream.source = layers.tracks[on]
    stream.paused = paused
    stream.rtx_pt = 97 if rtx else None
    assert capped_top_layer(stream) is capped


async def test_a_top_layer_whose_ceiling_was_just_raised_is_held_while_its_encoder_ramps() -> None:
    """Sending half of a ceiling just raised is the encoder on its way up (`ceiling_rising`),
    not a publisher that has no more to give: the next probe need not wait for it."""
    layers = Layers()
    layers.top.ceiling_bps = 1_400_000.0
    layers.top._rates = tuple(r * 700_000.0 / sum(F) for r in F)  # type: ignore[assignment]
    stream = layers.stream
    stream.share_bps = 1_650_000.0
    stream.source = layers.top
    stream.rtx_pt = 97
    assert not capped_top_layer(stream)
    layers.top.ceiling_rising = True
    assert capped_top_layer(stream)


async def test_a_stream_on_the_lowest_layer_does_not_climb_by_its_ceiling() -> None:
    """180p at its classroom's ceiling (130k of a 160k budget) climbs by the next layer,
    not by padding aimed at the top layer's 1.7M."""
    layers = Layers()
    q = layers.tracks[0]
    q.ceiling_bps = 130_000.0
    stream = layers.stream
    stream.share_bps = 160_000.0
    stream.source = q
    stream.rtx_pt = 97
    assert not capped_top_layer(stream)
    assert below_top_layer(stream)


@pytest.mark.parametrize(
    ("saving", "since_passed", "climbs"),
    [
        (False, 10.0, True),  # below its top: padding probes, no rung probe
        (True, 10.0, False),  # a data budget sends no padding: rung probes as before
        (False, 1.0, False),  # a padding probe just passed: a rung probe may confirm it
    ],
)
async def test_a_stream_below_its_top_layer_climbs_by_padding(
    saving: bool, since_passed: float, climbs: bool
) -> None:
    layers = Layers()
    stream = layers.stream
    stream.source = layers.tracks[0]
    stream.rtx_pt = 97
    expected = {"teacher:camera"} if climbs else set()
    assert padding_climbs([stream], saving, since_passed) == expected
