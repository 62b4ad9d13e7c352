"""The data saver on one subscriber's downlink (`media.adapt.data_saver`): the meter, the cap
on the estimate, the `data` event, and the adaptation under it (a simulated subscriber with a
fake clock: `tests.media.adapt.test_adaptation.Subscriber`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import pytest

from media.adapt.adaptation import PROBE_PADDING_BYTES
from media.adapt.budget import IncomingTrack, Priority
from media.adapt.data_budget import AUDIO_ONLY_BPS, HEARTBEAT_BPS, MB, BudgetVerdict
from media.adapt.data_saver import DATA_SAVER_REASON, DataSaver, audio_floor, wanted_bps
from media.adapt.estimator import EstimateBound, LinkEstimate
from media.adapt.rung import Rung, RungCosts
from media.forward.forwarder import PACKET_OVERHEAD, OutboundStream
from tests.media.adapt.test_adaptation import Subscriber


@dataclass(eq=False)
class FakeStream:
    """The counters of an outbound stream the meter reads."""

    octets: int = 0
    packets: int = 0
    retransmitted: int = 0
    retransmitted_octets: int = 0


MIC = IncomingTrack("t:mic", Priority.LEAD_AUDIO, audio_bps=56_000)
CAMERA = IncomingTrack("t:camera", Priority.SPEAKER_VIDEO, costs=RungCosts((320e3, 160e3, 320e3)))
TEACHER = [MIC, CAMERA]
"""What a classroom receives: 856 kbit/s at best."""


def link(bps: float) -> LinkEstimate:
    return LinkEstimate(bps, 0.0, 0.05, 0.0, EstimateBound.REMB, bps, bps, carried_bps=bps)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def saver() -> tuple[DataSaver, Clock, list[dict[str, Any]]]:
    clock, events = Clock(), []
    return DataSaver("a", events.append, clock=clock), clock, events


def test_the_meter_counts_every_stream_with_headers_and_retransmissions() -> None:
    data, _, _ = saver()
    one, two = FakeStream(octets=10_000, packets=10), FakeStream(octets=500, packets=5)
    data.count(cast(list[OutboundStream], [one, two]))
    assert data.sent_bytes == 10_500 + 15 * PACKET_OVERHEAD
    one.octets += 1000
    one.packets += 1
    one.retransmitted, one.retransmitted_octets = 2, 2000
    data.count(cast(list[OutboundStream], [one]))  # `two` left (its bytes stay counted)
    assert data.sent_bytes == 10_500 + 15 * PACKET_OVERHEAD + 3000 + 3 * PACKET_OVERHEAD


FLOOR = 56_000 + HEARTBEAT_BPS


@pytest.mark.parametrize(
    ("budget", "link_bps", "tracks", "bps", "bound", "state"),
    [
        (None, 2_000_000, TEACHER, 2_000_000, EstimateBound.REMB, None),
        (100, 2_000_000, TEACHER, 222_222.2, EstimateBound.DATA_SAVER, BudgetVerdict.LIMITING),
        # a link below the ceiling is the tighter limit, but the budget still holds the
        # picture down (a weak link's estimate, or one held low by sending little)
        (100, 150_000, TEACHER, 150_000, EstimateBound.REMB, BudgetVerdict.LIMITING),
        # audio only is all the classroom wants: the budget covers it
        (100, 2_000_000, [MIC], 222_222.2, EstimateBound.DATA_SAVER, BudgetVerdict.UNDER),
        (20, 2_000_000, TEACHER, FLOOR, EstimateBound.DATA_SAVER, BudgetVerdict.BELOW_AUDIO),
        (20, 2_000_000, [], AUDIO_ONLY_BPS, EstimateBound.DATA_SAVER, BudgetVerdict.BELOW_AUDIO),
    ],
)
def test_the_estimate_is_capped_at_the_ceiling_only_when_the_budget_is_tighter(
    budget: float | None,
    link_bps: float,
    tracks: list[IncomingTrack],
    bps: float,
    bound: EstimateBound,
    state: BudgetVerdict | None,
) -> None:
    data, clock, _ = saver()
    data.set_budget(budget)
    capped = data.limit(link(link_bps), [], tracks, None, clock.now)
    assert capped.bps == pytest.approx(bps, abs=0.1)
    assert capped.bound is bound
    assert capped.carried_bps <= capped.bps
    assert data.verdict is state
    assert data.limiting is (state in (BudgetVerdict.LIMITING, BudgetVerdict.BELOW_AUDIO))


def test_the_data_event_goes_out_on_a_change_and_every_five_seconds() -> None:
    data, clock, events = saver()
    data.limit(link(1e6), [], TEACHER, None, clock.now)
    assert events[-1]["budget_mb_h"] is None and events[-1]["used_mb"] == 0
    data.set_budget(40)
    assert len(events) == 2 and events[-1]["budget_mb_h"] == 40.0
    stream = FakeStream(octets=2 * MB, packets=0)
    clock.now += 4.0
    data.limit(link(1e6), cast(list[OutboundStream], [stream]), TEACHER, None, clock.now)
    assert len(events) == 2
    clock.now += 1.0
    data.limit(link(1e6), cast(list[OutboundStream], [stream]), TEACHER, None, clock.now)
    event = events[-1]
    assert event["used_mb"] == 2.0 and event["elapsed_s"] == 5.0
    assert event["verdict"] == "limiting" and event["allowed_mb"] == pytest.approx(0.06, abs=0.01)
    assert event["ceiling_kbps"] == pytest.approx(FLOOR / 1000, abs=0.1), "overspent: floor"
    data.set_budget(None)
    assert events[-1]["budget_mb_h"] is None and events[-1]["verdict"] is None


@pytest.mark.parametrize("bad", [4, 2001, float("nan"), float("inf"), -1])
def test_a_budget_out_of_range_is_refused_and_the_old_one_kept(bad: float) -> None:
    data, _, _ = saver()
    data.set_budget(100)
    with pytest.raises(ValueError):
        data.set_budget(bad)
    assert data.budget_mb_h == 100


@pytest.mark.parametrize(
    ("tracks", "red", "floor"),
    [
        ([], False, AUDIO_ONLY_BPS),  # nothing measured yet: a teacher's audio and camera
        ([CAMERA], False, AUDIO_ONLY_BPS),
        ([MIC, CAMERA], False, 56_000 + HEARTBEAT_BPS),
        ([MIC, CAMERA], True, 84_000 + HEARTBEAT_BPS),
        ([MIC, MIC, CAMERA, CAMERA], False, 112_000 + 2 * HEARTBEAT_BPS),
    ],
)
def test_the_audio_floor_is_audio_with_red_and_a_heartbeat_per_video(
    tracks: list[IncomingTrack], red: bool, floor: float
) -> None:
    assert audio_floor(tracks, red) == pytest.approx(floor)


def test_what_a_subscriber_wants_is_every_track_at_its_best() -> None:
    assert wanted_bps(TEACHER) == 856_000
    assert wanted_bps([]) == 0


@pytest.mark.parametrize(
    ("reason", "limiting", "link_bps", "shown"),
    [
        ("shortfall", True, 2e6, DATA_SAVER_REASON),
        ("start", True, 2e6, DATA_SAVER_REASON),
        ("shortfall", True, 1e5, DATA_SAVER_REASON),  # the budget would hold it down anyway
        ("loss", True, 2e6, DATA_SAVER_REASON),  # paced at the cap, far below the link
        ("loss", True, 1e5, "loss"),  # the link lost packets: say so even under a budget
        ("recovered", True, 2e6, "recovered"),
        ("shortfall", False, 2e6, "shortfall"),
    ],
)
def test_a_step_down_the_budget_caused_says_data_saver(
    reason: str, limiting: bool, link_bps: float, shown: str
) -> None:
    data, clock, _ = saver()
    data.set_budget(100)
    data.limit(link(link_bps), [], TEACHER if limiting else [MIC], None, clock.now)
    assert data.reason(reason) == shown


# -- the adaptation under a budget (fake clock) ------------------------------------------------


def run(sub: Subscriber, seconds: int, remb_bps: float = 2_000_000) -> None:
    for _ in range(seconds):
        sub.one_second(remb_bps=remb_bps)


async def test_a_good_link_under_a_budget_gets_fewer_frames_and_stays_within_it() -> None:
    """A 510 kbit/s L1T3 camera on a 2 Mbit/s link, with 100 MB/h (222 kbit/s): the budget,
    not the link, puts it on 7.5 fps, and the link event says so."""
    sub = Subscriber()
    data = DataSaver("classroom-1", sub.stats.append, clock=lambda: sub.now)
    sub.adaptation.data_saver = data
    data.set_budget(100)
    run(sub, 60)
    assert sub.adaptation.rung is Rung.REDUCED_FPS
    assert sub.adaptation.allocation is not None
    (track,) = sub.adaptation.allocation.tracks
    assert track.decision is not None and track.decision.temporal_layers == 1
    assert any(e["reason"] == DATA_SAVER_REASON for e in sub.events)
    allowed = 100 * MB * 60 / 3600
    assert data.sent_bytes <= allowed, (data.sent_bytes, allowed)
    sent = sum(len(p) + PACKET_OVERHEAD - 12 for p in sub.sent)  # headers counted once
    assert sent <= allowed * 1.05
    usage = [e for e in sub.stats if e["type"] == "data"]
    assert usage[-1]["verdict"] == "limiting" and usage[-1]["budget_mb_h"] == 100


async def test_without_a_budget_the_same_link_gets_everything() -> None:
    sub = Subscriber()
    data = DataSaver("classroom-1", sub.stats.append, clock=lambda: sub.now)
    sub.adaptation.data_saver = data
    run(sub, 20)
    assert sub.adaptation.rung is Rung.FULL
    assert data.verdict is None and data.sent_bytes > 100 * MB * 20 / 3600


async def test_a_tiny_budget_pauses_the_video_and_sends_no_padding_probe() -> None:
    """5 MB/h: audio only (the heartbeat goes on), and no padding probe spends data to learn
    what the budget forbids anyway; clearing the budget brings the video back."""
    sub = Subscriber()
    data = DataSaver("classroom-1", sub.stats.append, clock=lambda: sub.now)
    sub.adaptation.data_saver = data
    data.set_budget(5)
    run(sub, 30)
    assert sub.adaptation.rung is Rung.AUDIO_ONLY
    probes = [p for p in sub.sent if p[0] & 0x20 and p[-1] == PROBE_PADDING_BYTES]
    assert not probes
    data.set_budget(None)
    run(sub, 15)
    assert sub.adaptation.rung is not Rung.AUDIO_ONLY
