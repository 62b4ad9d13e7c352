"""The data saver on one subscriber's downlink (`media.adapt.data_saver`): the meter, the cap
on the estimate, the `data` event, and the adaptation under it (a simulated subscriber with a
fake clock: `tests.media.adapt.test_adaptation.Subscriber`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import pytest

from media.adapt.adaptation import PROBE_PADDING_BYTES
from media.adapt.budget import Allocation, Priority, TrackAllocation
from media.adapt.data_budget import AUDIO_ONLY_BPS, HEARTBEAT_BPS, MB, BudgetVerdict
from media.adapt.data_saver import DATA_SAVER_REASON, DataSaver, audio_floor
from media.adapt.estimator import EstimateBound, LinkEstimate
from media.adapt.rung import Rung
from media.forward.forwarder import PACKET_OVERHEAD, OutboundStream
from tests.media.adapt.test_adaptation import Subscriber


@dataclass(eq=False)
class FakeStream:
    """The counters of an outbound stream the meter reads."""

    octets: int = 0
    packets: int = 0
    retransmitted: int = 0
    retransmitted_octets: int = 0


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


@pytest.mark.parametrize(
    ("budget", "link_bps", "bps", "bound", "state"),
    [
        (None, 2_000_000, 2_000_000, EstimateBound.REMB, None),
        (100, 2_000_000, 222_222.2, EstimateBound.DATA_SAVER, BudgetVerdict.LIMITING),
        (100, 150_000, 150_000, EstimateBound.REMB, BudgetVerdict.UNDER),  # the link decides
        (20, 2_000_000, AUDIO_ONLY_BPS, EstimateBound.DATA_SAVER, BudgetVerdict.BELOW_AUDIO),
    ],
)
def test_the_estimate_is_capped_at_the_ceiling_only_when_the_budget_is_tighter(
    budget: float | None,
    link_bps: float,
    bps: float,
    bound: EstimateBound,
    state: BudgetVerdict | None,
) -> None:
    data, clock, _ = saver()
    data.set_budget(budget)
    capped = data.limit(link(link_bps), [], None, clock.now)
    assert capped.bps == pytest.approx(bps, abs=0.1)
    assert capped.bound is bound
    assert capped.carried_bps <= capped.bps
    assert data.verdict is state
    assert data.limiting is (state in (BudgetVerdict.LIMITING, BudgetVerdict.BELOW_AUDIO))


def test_the_data_event_goes_out_on_a_change_and_every_five_seconds() -> None:
    data, clock, events = saver()
    data.limit(link(1e6), [], None, clock.now)
    assert events[-1]["budget_mb_h"] is None and events[-1]["used_mb"] == 0
    data.set_budget(40)
    assert len(events) == 2 and events[-1]["budget_mb_h"] == 40.0
    stream = FakeStream(octets=2 * MB, packets=0)
    clock.now += 4.0
    data.limit(link(1e6), cast(list[OutboundStream], [stream]), None, clock.now)
    assert len(events) == 2
    clock.now += 1.0
    data.limit(link(1e6), cast(list[OutboundStream], [stream]), None, clock.now)
    event = events[-1]
    assert event["used_mb"] == 2.0 and event["elapsed_s"] == 5.0
    assert event["verdict"] == "limiting" and event["allowed_mb"] == pytest.approx(0.06, abs=0.01)
    assert event["ceiling_kbps"] == pytest.approx(AUDIO_ONLY_BPS / 1000, abs=0.1), "overspent"
    data.set_budget(None)
    assert events[-1]["budget_mb_h"] is None and events[-1]["verdict"] is None


@pytest.mark.parametrize("bad", [4, 2001, float("nan"), float("inf"), -1])
def test_a_budget_out_of_range_is_refused_and_the_old_one_kept(bad: float) -> None:
    data, _, _ = saver()
    data.set_budget(100)
    with pytest.raises(ValueError):
        data.set_budget(bad)
    assert data.budget_mb_h == 100


def test_the_audio_floor_is_the_allocated_audio_and_a_heartbeat_per_video() -> None:
    assert audio_floor(None) == AUDIO_ONLY_BPS
    tracks = (
        TrackAllocation("t:mic", Priority.LEAD_AUDIO, 0, 84_000, None),
        TrackAllocation("t:camera", Priority.SPEAKER_VIDEO, 0, 0, cast(Any, object())),
        TrackAllocation("t:screen", Priority.SCREEN, 0, 0, cast(Any, object())),
    )
    allocation = Allocation(tracks, True, 0, 0, "")
    assert audio_floor(allocation) == 84_000 + 2 * HEARTBEAT_BPS


@pytest.mark.parametrize(
    ("reason", "limiting", "shown"),
    [
        ("shortfall", True, DATA_SAVER_REASON),
        ("start", True, DATA_SAVER_REASON),
        ("loss", True, "loss"),  # the link lost packets: say so even under a budget
        ("recovered", True, "recovered"),
        ("shortfall", False, "shortfall"),
    ],
)
def test_a_step_down_the_budget_caused_says_data_saver(
    reason: str, limiting: bool, shown: str
) -> None:
    data, clock, _ = saver()
    data.set_budget(100)
    data.limit(link(2e6 if limiting else 1e5), [], None, clock.now)
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
