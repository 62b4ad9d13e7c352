"""`decide` picks a rung that fits, goes down fast, up slowly, probes back from audio only
(judging a probe by the rise of loss, holding a proven rung against a lagging estimate, within
a policy limit), and does not flap: tables of inputs over time, and a simulated link for the
flap profile."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.adapt.rung import (
    AUDIO_ONLY,
    LOW,
    LOW_RUNG_NOMINAL_BPS,
    Rung,
    RungChoice,
    RungCosts,
    RungDecision,
    RungPolicy,
    RungReason,
    decide,
    padding_probe_passed,
)

L1T3 = RungCosts((400_000.0, 200_000.0, 400_000.0), low_bps=150_000.0)
"""A 1 Mbit/s L1T3 camera: 7.5 fps = 400k, 15 fps = 600k, 30 fps = 1M; low rendition 150k."""
FULL = RungChoice(Rung.FULL, 3)
FPS15 = RungChoice(Rung.REDUCED_FPS, 2)
FPS7 = RungChoice(Rung.REDUCED_FPS, 1)
POLICY = RungPolicy()


def short(choice: RungChoice) -> str:
    if choice.rung is Rung.REDUCED_FPS:
        return f"reduced_fps/{choice.temporal_layers}"
    return str(choice.rung)


Step = tuple[float, float, float]
"""(time, estimate bps, loss) given to `decide` at that time."""


def run(
    steps: Sequence[Step],
    costs: RungCosts = L1T3,
    policy: RungPolicy = POLICY,
    start: RungDecision | None = None,
    *,
    rtt_s: float = 0.05,
    limit_bps: float = math.inf,
) -> list[RungDecision]:
    decisions: list[RungDecision] = []
    previous = start
    for now, estimate, loss in steps:
        previous = decide(estimate, loss, rtt_s, costs, previous, now, policy, limit_bps)
        decisions.append(previous)
    return decisions


def ticks(t0: float, t1: float, estimate: float, loss: float = 0.0, dt: float = 0.25) -> list[Step]:
    """Steps every `dt` from t0 (inclusive) to t1 (exclusive) with constant inputs."""
    count = round((t1 - t0) / dt)
    return [(t0 + i * dt, estimate, loss) for i in range(count)]


def first_time(
    steps: Sequence[Step], decisions: Sequence[RungDecision], test: Callable[[RungDecision], bool]
) -> float | None:
    for (now, _, _), decision in zip(steps, decisions, strict=True):
        if test(decision):
            return now
    return None


@pytest.mark.parametrize(
    ("costs", "ladder", "cost_bps"),
    [
        (
            L1T3,
            ["full", "reduced_fps/2", "reduced_fps/1", "low", "audio_only"],
            [1_000_000, 600_000, 400_000, 150_000, 0],
        ),
        (RungCosts.single_layer(800_000.0), ["full", "audio_only"], [800_000, 0]),
        (
            RungCosts.single_layer(800_000.0, low_bps=120_000.0),
            ["full", "low", "audio_only"],
            [800_000, 120_000, 0],
        ),
        (
            RungCosts((300_000.0, 300_000.0)),
            ["full", "reduced_fps/1", "audio_only"],
            [600_000, 300_000, 0],
        ),
        # a low rendition dearer than the 7.5 fps base layer is no step down
        (
            RungCosts((80_000.0, 40_000.0, 80_000.0), low_bps=110_000.0),
            ["full", "reduced_fps/2", "reduced_fps/1", "audio_only"],
            [200_000, 120_000, 80_000, 0],
        ),
        (
            RungCosts.single_layer(100_000.0, low_bps=120_000.0),
            ["full", "audio_only"],
            [100_000, 0],
        ),
    ],
)
def test_ladder_lists_rungs_best_first_with_measured_costs(
    costs: RungCosts, ladder: list[str], cost_bps: list[float]
) -> None:
    assert [short(c) for c in costs.ladder()] == ladder
    assert [costs.cost(c) for c in costs.ladder()] == pytest.approx(cost_bps)


def test_low_rung_costs_nominal_until_measured() -> None:
    assert RungCosts((1.0,), low_bps=None).cost(LOW) == LOW_RUNG_NOMINAL_BPS
    assert RungCosts((1.0,), low_bps=90_000.0).cost(LOW) == 90_000.0


@pytest.mark.parametrize(
    ("estimate", "expected"),
    [
        (5_000_000, "full"),
        (1_200_000, "full"),  # 1M <= 0.85 x 1.2M
        (1_100_000, "reduced_fps/2"),  # 1M > 0.85 x 1.1M
        (600_000, "reduced_fps/1"),
        (200_000, "low"),
        (150_000, "audio_only"),  # 150k > 0.85 x 150k
        (0, "audio_only"),
    ],
)
def test_first_decision_is_best_rung_within_headroom(estimate: float, expected: str) -> None:
    decision = decide(estimate, 0.0, 0.05, L1T3, None, 0.0)
    assert short(decision.choice) == expected
    assert decision.reason is RungReason.START and decision.switched


def test_sustained_shortfall_steps_down_after_down_after_s_not_before() -> None:
    steps = ticks(0, 5, 5e6) + ticks(5, 8, 700_000)
    decisions = run(steps)
    down_at = first_time(steps, decisions, lambda d: d.choice != FULL)
    assert down_at == pytest.approx(5 + POLICY.down_after_s)
    assert short(decisions[-1].choice) == "reduced_fps/1"  # 400k <= 0.85 x 700k < 600k
    assert decisions[-1].reason is RungReason.SHORTFALL


def test_while_the_link_is_sent_more_than_its_estimate_a_shortfall_steps_down_at_once() -> None:
    """`overfull`: what goes out already exceeds the whole estimate; waiting out
    `down_after_s` only fills the bottleneck's queue."""
    before = run(ticks(0, 5, 5e6))[-1]
    waits = decide(700_000, 0.0, 0.05, L1T3, before, 5.0, POLICY)
    now = decide(700_000, 0.0, 0.05, L1T3, before, 5.0, POLICY, overfull=True)
    assert waits.choice == FULL and waits.shortfall_since == 5.0
    assert short(now.choice) == "reduced_fps/1" and now.reason is RungReason.SHORTFALL
    # within the tolerance there is no shortfall to hurry
    assert decide(950_000, 0.0, 0.05, L1T3, before, 5.0, POLICY, overfull=True).choice == FULL


def test_a_probe_must_fit_in_the_room_the_other_tracks_leave() -> None:
    """A probe may reach above this track's share (`probe_reach`), but not above what the
    subscriber's whole estimate leaves it beside the other tracks (`probe_room_bps`)."""
    at_15 = run(ticks(0, 5, 5e6) + ticks(5, 8, 700_000))[-1]
    assert short(at_15.choice) == "reduced_fps/1" and at_15.reason is RungReason.SHORTFALL

    def probes(room: float) -> bool:
        decision = at_15
        for now in (8.0 + 0.25 * i for i in range(40)):
            decision = decide(700_000, 0.0, 0.05, L1T3, decision, now, POLICY,
                              probe_room_bps=room)  # fmt: skip
            if decision.reason is RungReason.PROBE:
                return True
        return False

    assert probes(math.inf)  # 600k <= 1.5 x 700k
    assert not probes(590_000)
    assert probes(610_000)
    assert not probes(0.0)


def test_short_dip_in_estimate_does_not_switch() -> None:
    steps = ticks(0, 5, 5e6) + ticks(5, 5.75, 300_000) + ticks(5.75, 10, 5e6)
    assert all(d.choice == FULL for d in run(steps))


def test_loss_spike_steps_down_at_once_then_waits_before_stepping_again() -> None:
    steps = ticks(0, 5, 5e6) + ticks(5, 8, 5e6, loss=0.15)
    decisions = run(steps)
    at = {now: short(d.choice) for (now, _, _), d in zip(steps, decisions, strict=True)}
    # Carried = 1M x 0.85 x 0.85 = 722k: 15 fps fits, one step down at once.
    assert at[5.0] == "reduced_fps/2"
    assert decisions[steps.index((5.0, 5e6, 0.15))].reason is RungReason.LOSS
    # The next step waits loss_step_interval_s + rtt (1.55 s).
    assert at[6.5] == "reduced_fps/2"
    assert at[6.75] == "reduced_fps/1"


SIMULCAST = RungCosts((2_000_000.0,), low_bps=284_000.0, low_forwarded=True)
"""720p at 2M over a 180p sending 284k that its ceiling can bring to 150k..."""
SIMULCAST_FLOOR = replace(SIMULCAST, low_floor_bps=150_000.0)


@pytest.mark.parametrize(
    ("costs", "estimate", "loss", "after"),
    [
        # a loss spike on 180p whose share no longer covers what it sends (279k): 180p can be
        # brought to 150k, so it stays (its ceiling follows); without a floor, paused
        (SIMULCAST_FLOOR, 279_000.0, 0.101, Rung.LOW),
        (SIMULCAST, 279_000.0, 0.101, Rung.AUDIO_ONLY),
        # a shortfall under what 180p sends, above its floor: held
        (SIMULCAST_FLOOR, 200_000.0, 0.0, Rung.LOW),
        (SIMULCAST, 200_000.0, 0.0, Rung.AUDIO_ONLY),
        # under the floor too: paused
        (SIMULCAST_FLOOR, 120_000.0, 0.0, Rung.AUDIO_ONLY),
    ],
)
def test_a_lowest_layer_whose_ceiling_follows_is_kept_down_to_its_floor(
    costs: RungCosts, estimate: float, loss: float, after: Rung
) -> None:
    steady = run(ticks(0, 5, 400_000.0), costs=costs)[-1]
    assert steady.choice == LOW
    decisions = run(ticks(5, 8, estimate, loss), costs=costs, start=steady)
    assert decisions[-1].choice.rung is after
    assert costs.least_cost(LOW) == (150_000.0 if costs.low_floor_bps else 284_000.0)


SIMULCAST_TEMPORAL = replace(SIMULCAST_FLOOR, low_layer_bps=(142_000.0, 71_000.0, 71_000.0))
"""... whose 180p has three temporal layers: at 15 fps 213k (112.5k at its floor)."""
LOW15 = RungChoice(Rung.LOW, 2)


def test_a_lowest_layer_with_temporal_layers_steps_to_half_its_frame_rate_before_audio_only(
) -> None:
    # not to 7.5 fps: under the 10 fps of a moving picture
    assert SIMULCAST_TEMPORAL.ladder() == (RungChoice(Rung.FULL, 1), LOW, LOW15, AUDIO_ONLY)
    steady = run(ticks(0, 5, 400_000.0), costs=SIMULCAST_TEMPORAL)[-1]
    assert steady.choice == LOW
    # under 180p's floor (150k), over 15 fps at it: 15 fps, not audio only
    down = run(ticks(5, 8, 120_000.0), costs=SIMULCAST_TEMPORAL, start=steady)[-1]
    assert down.choice == LOW15 and down.reason is RungReason.SHORTFALL
    # under that too: audio only
    assert run(ticks(8, 11, 90_000.0), costs=SIMULCAST_TEMPORAL, start=down)[-1].video_paused


def test_a_shortfall_from_a_higher_layer_takes_the_lowest_at_all_its_frames_if_the_share_covers_it(
) -> None:
    # on 720p, the share falls to 260k: 180p (284k now, 150k at its floor) is within it though
    # not within its headroom, as 15 fps (213k) is; all its frames, not half
    steady = run(ticks(0, 5, 4_000_000.0), costs=SIMULCAST_TEMPORAL)[-1]
    assert steady.choice == RungChoice(Rung.FULL, 1)
    down = run(ticks(5, 8, 260_000.0), costs=SIMULCAST_TEMPORAL, start=steady)[-1]
    assert down.choice == LOW and down.reason is RungReason.SHORTFALL


def test_a_loss_spike_on_the_lowest_layer_keeps_half_its_frames_if_the_share_covers_them(
) -> None:
    steady = run(ticks(0, 5, 400_000.0), costs=SIMULCAST_TEMPORAL)[-1]
    spiked = run(ticks(5, 6, 140_000.0, loss=0.15), costs=SIMULCAST_TEMPORAL, start=steady)
    assert spiked[-1].choice == LOW15 and spiked[-1].reason is RungReason.LOSS


def test_the_lowest_layer_climbs_back_to_its_full_frame_rate_within_what_its_ceiling_costs(
) -> None:
    # on 15 fps with a share of 200k: 180p at its floor (150k) is in reach with the margin,
    # though it sends 284k now (its ceiling comes down with the share)
    start = run(ticks(0, 5, 400_000.0), costs=SIMULCAST_TEMPORAL)[-1]
    start = run(ticks(5, 11, 120_000.0), costs=SIMULCAST_TEMPORAL, start=start)[-1]
    assert start.choice == LOW15
    steps = ticks(11, 30, 200_000.0)
    decisions = run(steps, costs=SIMULCAST_TEMPORAL, start=start)
    assert decisions[-1].choice == LOW and decisions[-1].reason is RungReason.RECOVERED


@pytest.mark.parametrize(
    ("share", "probes"),
    [
        # from audio only, half the lowest layer's frames is probed only within the share's
        # reach: no floor lets it overflow a link that cannot carry it (150 kbit/s: 0.6-1.3
        # fps between pauses)
        (20_000.0, False),
        (150_000.0, True),
    ],
)
def test_from_audio_only_half_the_frames_of_the_lowest_layer_are_probed_within_the_share(
    share: float, probes: bool
) -> None:
    paused = RungDecision(AUDIO_ONLY, RungReason.SHORTFALL, True, 0.0, 0.0, 0.0, 0.0, 0.0)
    decisions = run(ticks(0.25, 30, share), costs=SIMULCAST_TEMPORAL, start=paused)
    probed = [d for d in decisions if d.reason is RungReason.PROBE]
    assert bool(probed) is probes
    assert all(d.choice == LOW15 for d in probed)


def test_a_simulcast_start_goes_no_lower_than_the_lowest_layer_at_its_full_frame_rate() -> None:
    measured_later = RungDecision(LOW, RungReason.START, True, 0.0, 0.0, 0.0, 0.0, 0.0)
    # redecided once the layers are measured, on a first REMB under 180p's cost
    decision = decide(100_000.0, 0.0, 0.05, SIMULCAST_TEMPORAL, measured_later, 0.5)
    assert decision.choice == LOW


def test_loss_below_spike_does_not_step_down() -> None:
    steps = ticks(0, 10, 5e6, loss=0.08)
    assert all(d.choice == FULL for d in run(steps))


def test_up_switch_waits_for_the_hold_and_goes_to_the_best_rung_in_reach() -> None:
    start = decide(200_000, 0.0, 0.05, L1T3, None, 0.0)
    assert start.choice == LOW
    steps = ticks(0.25, 3, 200_000) + ticks(3, 8, 3e6)
    decisions = run(steps, start=start)
    up_at = first_time(steps, decisions, lambda d: d.choice != LOW)
    assert up_at == pytest.approx(3 + POLICY.up_hold_s)
    assert decisions[-1].choice == FULL and decisions[-1].reason is RungReason.RECOVERED


def test_up_switch_needs_the_margin_over_the_better_rung() -> None:
    # 15 fps (600k) needs 750k; 1.2M covers full? 1M x 1.25 = 1.25M > 1.2M: only 15 fps.
    start = decide(500_000, 0.0, 0.05, L1T3, None, 0.0)
    assert start.choice == FPS7
    decisions = run(ticks(0.25, 6, 1_200_000), start=start)
    assert decisions[-1].choice == FPS15


@pytest.mark.parametrize(
    ("loss", "rung_after"),
    [
        (0.06, FULL),  # a village link's random loss (RED, FEC and NACK cover it) does not block
        (0.079, FULL),
        (0.08, LOW),  # at up_loss_max: no up-switch, and no probe either (>= probe_loss_max)
        (0.09, LOW),
    ],
)
def test_loss_at_or_above_up_loss_max_blocks_up_switch(loss: float, rung_after: RungChoice) -> None:
    start = decide(200_000, 0.0, 0.05, L1T3, None, 0.0)
    decisions = run(ticks(0.25, 10, 3e6, loss=loss), start=start)
    assert decisions[-1].choice == rung_after
    if rung_after == LOW:
        assert all(d.choice == LOW for d in decisions)


def test_interrupted_surplus_restarts_the_hold() -> None:
    start = decide(200_000, 0.0, 0.05, L1T3, None, 0.0)
    steps = ticks(0.25, 1.5, 3e6) + ticks(1.5, 1.75, 200_000) + ticks(1.75, 4, 3e6)
    decisions = run(steps, start=start)
    up_at = first_time(steps, decisions, lambda d: d.choice != LOW)
    assert up_at == pytest.approx(1.75 + POLICY.up_hold_s)


def test_failed_up_switch_sets_a_ceiling_with_a_doubled_hold_until_one_lasts() -> None:
    start = decide(200_000, 0.0, 0.05, L1T3, None, 0.0)
    steps = (
        ticks(0.25, 3, 3e6)  # up to full at 2.25
        + ticks(3, 5, 200_000)  # down at 4.0, within 10 s of the up: failed, ceiling = full
        + ticks(5, 40, 3e6)  # below the ceiling: base hold (15 fps at 7.0); full waits 4 s
    )
    decisions = run(steps, start=start)
    at = {now: d for (now, _, _), d in zip(steps, decisions, strict=True)}
    switched = [(now, short(d.choice)) for now, d in at.items() if d.switched]
    assert switched == [(2.25, "full"), (4.0, "low"), (7.0, "reduced_fps/2"), (11.25, "full")]
    assert at[4.0].ceiling == FULL and at[4.0].up_hold_s == 2 * POLICY.up_hold_s
    assert at[21.0].ceiling == FULL  # full has not lasted the failed-up window yet
    assert at[21.25].ceiling is None and at[21.25].up_hold_s == POLICY.up_hold_s


def test_a_passed_padding_probe_forgets_the_ceiling_and_the_doubled_holds() -> None:
    start = decide(200_000, 0.0, 0.05, L1T3, None, 0.0)
    steps = ticks(0.25, 3, 3e6) + ticks(3, 5, 200_000)  # up to full, then a failed up: ceiling
    failed = run(steps, start=start)[-1]
    assert failed.ceiling == FULL and failed.up_hold_s == 2 * POLICY.up_hold_s
    fresh = padding_probe_passed(failed, 5.0)
    assert fresh.ceiling is None
    assert fresh.up_hold_s == POLICY.up_hold_s
    assert fresh.probe_interval_s == POLICY.probe_interval_s
    assert fresh.choice == failed.choice and not fresh.switched


@pytest.mark.parametrize(
    ("room", "forgotten"),
    [
        (math.inf, True),  # room unknown: as before
        (1_000_000, True),  # the probe left this track what full (1000k) costs
        (999_000, False),  # less: it proved nothing about full, the ceiling stays
    ],
)
def test_a_passed_padding_probe_forgets_a_failed_step_only_if_it_carried_that_step(
    room: float, forgotten: bool
) -> None:
    start = decide(200_000, 0.0, 0.05, L1T3, None, 0.0)
    steps = ticks(0.25, 3, 3e6) + ticks(3, 5, 200_000)
    failed = run(steps, start=start)[-1]
    assert failed.ceiling == FULL
    after = padding_probe_passed(failed, 5.0, POLICY, room, L1T3)
    assert (after.ceiling is None) is forgotten
    assert (after == failed) is not forgotten


@pytest.mark.parametrize(
    ("estimate", "first_switch"),
    [
        (3e6, (5.0, "full")),  # the probe proved it: full in the same tick, no hold
        (1.3e6, (5.0, "full")),  # full (1000k) x 1.25 is in reach
        (1.1e6, (5.0, "reduced_fps/2")),  # only 15 fps (600k) is: that, at once
        (170_000, None),  # nothing better in reach: nothing switches on the probe's word
    ],
)
def test_a_passed_padding_probe_counts_as_the_hold_for_what_the_estimate_reaches(
    estimate: float, first_switch: tuple[float, str] | None
) -> None:
    start = decide(200_000, 0.0, 0.05, L1T3, None, 0.0)
    steps = ticks(0.25, 3, 3e6) + ticks(3, 5, 200_000)  # full, then down to low
    fresh = padding_probe_passed(run(steps, start=start)[-1], 5.0)
    after_steps = ticks(5, 5.5, estimate)
    after = run(after_steps, start=fresh)
    switched = [
        (now, short(d.choice)) for (now, _, _), d in zip(after_steps, after, strict=True)
        if d.switched
    ]
    assert (switched[0] if switched else None) == first_switch


def test_audio_only_probes_the_cheapest_video_rung_keeps_it_and_probes_again_soon() -> None:
    start = decide(100_000, 0.0, 0.05, L1T3, None, 0.0)
    assert start.choice == AUDIO_ONLY
    # An estimate limited by sending only audio: never in reach of low (150k x 1.25). (Probes
    # may reach 3x the share here, so that 7.5 fps (400k) is probed after low: by default a
    # probe reaches 1.5x, and the estimate must rise with what low sends first.)
    steps = ticks(0.25, 12, 160_000)
    decisions = run(steps, start=start, policy=replace(POLICY, probe_reach=3.0))
    probe_at = first_time(steps, decisions, lambda d: d.reason is RungReason.PROBE)
    assert probe_at == pytest.approx(POLICY.probe_interval_s)
    ok_at = first_time(steps, decisions, lambda d: d.reason is RungReason.PROBE_OK)
    assert ok_at == pytest.approx(POLICY.probe_interval_s + POLICY.probe_s)
    at = {now: d for (now, _, _), d in zip(steps, decisions, strict=True)}
    # The estimate (160k) does cover low (150k): kept, not dropped by the shortfall rule...
    assert at[6.75].choice == LOW
    # ...and after a success the next rung up is probed probe_again_s later (a link that came
    # back climbs a rung every probe_s + probe_again_s), not after the probe interval.
    assert at[7.0].choice == FPS7 and at[7.0].reason is RungReason.PROBE
    assert at[7.0].changed_at == pytest.approx(6.0 + POLICY.probe_again_s)
    assert at[9.0].choice == FPS7 and at[9.0].reason is RungReason.PROBE_OK
    assert at[11.75].choice == FPS7  # proven: the lagging 160k estimate does not undo it


def proven_low(loss: float = 0.0) -> list[RungDecision]:
    """From audio only at 100k, a probe of low (150k) at 4 s that succeeds at 6 s; then the
    estimate lags at 120k (a short estimate: 150k x 0.9 > 120k) until 12 s, the grace's end."""
    start = decide(100_000, loss, 0.05, L1T3, None, 0.0)
    steps = ticks(0.25, 6.25, 100_000, loss) + ticks(6.25, 12, 120_000, loss)
    decisions = run(steps, start=start)
    at = {now: d for (now, _, _), d in zip(steps, decisions, strict=True)}
    assert at[4.0].reason is RungReason.PROBE
    assert at[6.0].reason is RungReason.PROBE_OK and at[6.0].choice == LOW
    assert at[6.0].proven_until == pytest.approx(6.0 + POLICY.proven_grace_s)
    return decisions


def test_probe_success_is_not_undone_by_a_lagging_estimate_during_the_grace() -> None:
    decisions = proven_low()
    assert all(d.choice == LOW for d in decisions[-20:])  # 120k < 150k, within the grace
    # In the grace, loss up to up_loss_max does not undo it either (more than fails a probe).
    grace = run(ticks(6.25, 12, 120_000, loss=0.07), start=proven_low()[23])
    assert all(d.choice == LOW for d in grace)
    # A spike does.
    spike = run(ticks(8, 9, 120_000, loss=0.10), start=proven_low()[30])
    assert spike[0].choice == AUDIO_ONLY and spike[0].reason is RungReason.LOSS


@pytest.mark.parametrize(
    ("rtt_s", "loss", "kept"),
    [
        (0.05, 0.0, True),  # nothing says the link cannot carry it: the REMB under-reads
        (0.05, 0.029, True),
        (0.14, 0.0, True),  # RTT up by 0.09 s: less than proven_rtt_rise_s
        (0.05, 0.03, False),  # the loss that would have failed the probe (0 + 0.03)
        (0.16, 0.0, False),  # RTT up by 0.11 s: a queue is growing
    ],
)
def test_after_the_grace_a_proven_rung_holds_while_loss_and_rtt_hold(
    rtt_s: float, loss: float, kept: bool
) -> None:
    decisions = proven_low()
    later = run(ticks(12, 40, 120_000, loss), start=decisions[-1], rtt_s=rtt_s)
    if kept:
        assert all(d.choice == LOW for d in later)
    else:
        down = [d for d in later if d.switched]
        assert [(d.changed_at, d.choice, d.reason) for d in down][:1] == [
            (12.0 + POLICY.down_after_s, AUDIO_ONLY, RungReason.SHORTFALL)
        ]


QUEUING = 0.07
"""The RTT during a probe, 20 ms over the 50 ms before it: a queue building, below
`probe_rtt_rise_s`, so the loss decides."""


@pytest.mark.parametrize(
    ("loss_before", "loss_during", "rtt_during", "reason", "policy"),
    [
        # the link's own random loss says nothing against the probe
        (0.04, 0.04, QUEUING, RungReason.PROBE_OK, POLICY),
        (0.04, 0.069, QUEUING, RungReason.PROBE_OK, POLICY),
        (0.04, 0.07, QUEUING, RungReason.PROBE_FAILED, POLICY),  # up by probe_loss_rise
        (0.04, 0.08, QUEUING, RungReason.PROBE_FAILED, POLICY),
        (0.0, 0.029, QUEUING, RungReason.PROBE_OK, POLICY),
        (0.0, 0.03, QUEUING, RungReason.PROBE_FAILED, POLICY),
        (0.06, 0.06, QUEUING, RungReason.PROBE_OK, POLICY),  # below probe_loss_max (0.07)
        # no queue (the RTT within probe_quiet_rtt_s) on a link that lost packets before: its
        # random loss, up to probe_quiet_loss_rise more
        (0.04, 0.08, 0.06, RungReason.PROBE_OK, POLICY),
        (0.04, 0.099, 0.05, RungReason.PROBE_OK, POLICY),
        (0.03, 0.09, 0.05, RungReason.PROBE_FAILED, POLICY),  # up by probe_quiet_loss_rise
        (0.0, 0.03, 0.05, RungReason.PROBE_FAILED, POLICY),  # a clean link: the probe's own
        # probe_loss_floor binds only when probe_loss_rise is below it
        (0.0, 0.019, QUEUING, RungReason.PROBE_OK, RungPolicy(probe_loss_rise=0.01)),
        (0.0, 0.02, QUEUING, RungReason.PROBE_FAILED, RungPolicy(probe_loss_rise=0.01)),
        (0.015, 0.024, QUEUING, RungReason.PROBE_OK, RungPolicy(probe_loss_rise=0.01)),
        (0.015, 0.025, QUEUING, RungReason.PROBE_FAILED, RungPolicy(probe_loss_rise=0.01)),
    ],
)
def test_a_probe_fails_only_when_loss_rises_over_what_it_started_with(
    loss_before: float, loss_during: float, rtt_during: float, reason: RungReason,
    policy: RungPolicy,
) -> None:
    start = decide(100_000, loss_before, 0.05, L1T3, None, 0.0, policy)
    steps = ticks(0.25, 4.25, 100_000, loss_before)
    decisions = run(steps, start=start, policy=policy)
    during = ticks(4.25, 6.25, 100_000, loss_during)
    decisions += run(during, start=decisions[-1], policy=policy, rtt_s=rtt_during)
    at = {now: d for (now, _, _), d in zip(steps + during, decisions, strict=True)}
    assert at[4.0].reason is RungReason.PROBE and at[4.0].probe_loss_before == loss_before
    assert at[5.75].choice == LOW  # judged only at the probe's end
    assert at[6.0].reason is reason
    assert at[6.0].choice == (LOW if reason is RungReason.PROBE_OK else AUDIO_ONLY)


@pytest.mark.parametrize(
    ("rtt_before", "rtt_during", "reason"),
    [
        (0.05, 0.05, RungReason.PROBE_OK),
        (0.05, 0.14, RungReason.PROBE_OK),  # up by less than probe_rtt_rise_s
        (0.05, 0.16, RungReason.PROBE_FAILED),  # a queue builds: failed at once
        (0.0, 0.5, RungReason.PROBE_OK),  # no RTT before the probe: nothing to rise from
    ],
)
def test_a_probe_fails_when_the_rtt_rises_during_it(
    rtt_before: float, rtt_during: float, reason: RungReason
) -> None:
    start = decide(100_000, 0.0, rtt_before, L1T3, None, 0.0)
    before = run(ticks(0.25, 4.25, 100_000), start=start, rtt_s=rtt_before)
    assert before[-1].reason is RungReason.PROBE and before[-1].changed_at == 4.0
    during = run(ticks(4.25, 6.25, 100_000), start=before[-1], rtt_s=rtt_during)
    judged = [d for d in during if d.reason is not RungReason.PROBE]
    assert judged[0].reason is reason
    if reason is RungReason.PROBE_FAILED:
        assert judged[0].changed_at == 4.25 and judged[0].choice == AUDIO_ONLY
    else:
        assert judged[0].changed_at == 4.0 and judged[0].choice == LOW


def test_after_a_failed_probe_up_the_rung_it_went_back_to_holds_against_its_aftermath() -> None:
    """The estimate that fell with a probe's overflow (a REMB that saw its queue) does not
    step the rung below the probe's start down for `probe_failed_grace_s`; a shortfall that
    outlasts it does, `down_after_s` later."""
    start = decide(420_000, 0.0, 0.05, L1T3, None, 0.0)
    before = run(ticks(0.25, 4.25, 420_000), start=start)
    assert before[-1].reason is RungReason.PROBE and before[-1].choice == FPS7
    failed = run([(4.25, 420_000, 0.0)], start=before[-1], rtt_s=0.2)[0]  # a queue: failed
    assert failed.reason is RungReason.PROBE_FAILED and failed.choice == LOW
    steps = ticks(4.5, 10, 100_000)  # 100k < 150k x 0.9: short
    after = run(steps, start=failed)
    down = [(now, d.choice, d.reason) for (now, _, _), d in zip(steps, after, strict=True)
            if d.switched]  # fmt: skip
    grace_end = 4.25 + POLICY.probe_failed_grace_s
    assert down[:1] == [(grace_end + POLICY.down_after_s, AUDIO_ONLY, RungReason.SHORTFALL)]
    # without the grace, a second after the estimate fell
    quick = run(steps, start=failed, policy=RungPolicy(probe_failed_grace_s=0.0))
    assert first_time(steps, quick, lambda d: d.video_paused) == 4.5 + POLICY.down_after_s


def test_in_the_grace_a_proven_rung_falls_when_the_rtt_rises() -> None:
    """A lagging estimate is ignored in the grace, but not with a queue building under it."""
    decisions = proven_low()
    later = run(ticks(6.25, 12, 120_000), start=decisions[23], rtt_s=0.05 + 0.11)
    down = [d for d in later if d.switched]
    assert [(d.changed_at, d.choice, d.reason) for d in down][:1] == [
        (6.25 + POLICY.down_after_s, AUDIO_ONLY, RungReason.SHORTFALL)
    ]


def test_a_4_percent_loss_link_probes_and_keeps_the_probed_rung_while_loss_stays_there() -> None:
    start = decide(100_000, 0.04, 0.05, L1T3, None, 0.0)
    decisions = run(ticks(0.25, 40, 100_000, loss=0.04), start=start)
    assert [(d.changed_at, d.choice, d.reason) for d in decisions if d.switched] == [
        (4.0, LOW, RungReason.PROBE)
    ]
    # no queue came with its loss (the RTT stayed): the link's random loss, held to 4% + 6%
    assert decisions[-1].choice == LOW and decisions[-1].proven_loss_limit == pytest.approx(0.10)


@pytest.mark.parametrize("loss", [0.07, 0.08])
def test_no_probe_at_or_above_probe_loss_max(loss: float) -> None:
    start = decide(100_000, loss, 0.05, L1T3, None, 0.0)
    assert all(d.choice == AUDIO_ONLY for d in run(ticks(0.25, 30, 100_000, loss), start=start))


def test_a_policy_limit_blocks_recovery_above_it() -> None:
    start = decide(500_000, 0.0, 0.05, L1T3, None, 0.0)
    assert start.choice == FPS7
    decisions = run(ticks(0.25, 30, 3e6), start=start, limit_bps=700_000)
    assert {d.choice for d in decisions} == {FPS7, FPS15}  # 15 fps (600k) <= 700k; full is not
    assert decisions[-1].choice == FPS15 and decisions[-1].probe_until is None


@pytest.mark.parametrize(("limit_bps", "probed"), [(149_999.0, False), (150_000.0, True)])
def test_a_policy_limit_blocks_a_probe_above_it(limit_bps: float, probed: bool) -> None:
    start = decide(100_000, 0.0, 0.05, L1T3, None, 0.0)
    decisions = run(ticks(0.25, 30, 100_000), start=start, limit_bps=limit_bps)
    assert any(d.reason is RungReason.PROBE for d in decisions) is probed


def test_a_policy_limit_ends_a_proven_hold_above_it() -> None:
    decisions = proven_low()
    # In the grace, but the rung now costs more than the policy allows (a screen share capped
    # while a camera appeared): the short estimate steps it down as for any unproven rung.
    later = run(ticks(8, 10, 120_000), start=decisions[30], limit_bps=100_000)
    assert later[3].choice == LOW and later[4].choice == AUDIO_ONLY
    assert later[4].reason is RungReason.SHORTFALL and later[4].changed_at == 9.0


def test_failed_probe_goes_back_and_doubles_the_interval() -> None:
    start = decide(100_000, 0.0, 0.05, L1T3, None, 0.0)
    # Loss spikes whenever video is on: the link cannot carry low.
    decisions: list[RungDecision] = []
    previous = start
    now = 0.0
    while now < 60:
        now += 0.25
        loss = 0.3 if previous.choice != AUDIO_ONLY and now - previous.changed_at >= 1.0 else 0.0
        previous = decide(100_000, loss, 0.05, L1T3, previous, now)
        decisions.append(previous)
    probes = [d.changed_at for d in decisions if d.switched and d.reason is RungReason.PROBE]
    failures = [d for d in decisions if d.switched and d.reason is RungReason.PROBE_FAILED]
    # intervals 4, then 8, 16, then probe_interval_max_s (20 s) after each failure
    assert probes == [4.0, 13.0, 30.0, 51.0]
    assert [d.changed_at for d in failures] == [5.0, 14.0, 31.0, 52.0]
    assert all(d.choice == AUDIO_ONLY for d in failures)
    assert [d.probe_interval_s for d in failures] == [8.0, 16.0, 20.0, 20.0]
    assert POLICY.probe_interval_max_s == 20.0
    # A failed guess says nothing against a later estimate: the up-switch hold is unchanged.
    assert all(d.up_hold_s == POLICY.up_hold_s for d in failures)


def test_previous_rung_withdrawn_is_replaced_by_the_best_fit() -> None:
    start = decide(200_000, 0.0, 0.05, L1T3, None, 0.0)
    assert start.choice == LOW
    without_low = RungCosts(L1T3.layer_bps, low_bps=None)
    decision = decide(200_000, 0.0, 0.05, without_low, start, 1.0)
    assert decision.choice == AUDIO_ONLY and decision.reason is RungReason.UNAVAILABLE


@dataclass
class SimulatedLink:
    """A link of a given capacity carrying audio plus the decided rung. The estimate given to
    `decide` is the capacity one second ago (times `noise()`) minus the audio; every second a
    receiver report gives the share of what was sent in that second beyond capacity as loss."""

    capacity: Callable[[float], float]
    noise: Callable[[], float] = lambda: 1.0
    audio_bps: float = 40_000.0

    def run(
        self, costs: RungCosts, until: float, dt: float = 0.25
    ) -> list[tuple[float, float, RungDecision]]:
        history: list[tuple[float, float, RungDecision]] = []
        decision = decide(self.capacity(0) - self.audio_bps, 0.0, 0.05, costs, None, 0.0)
        per_report = round(1.0 / dt)
        loss = 0.0
        window: list[float] = []
        for i in range(1, round(until / dt) + 1):
            now = i * dt
            sent = self.audio_bps + decision.cost_bps
            window.append(max(0.0, 1.0 - self.capacity(now) / sent))
            if i % per_report == 0:
                loss, window = sum(window) / len(window), []
            lagged = self.capacity(max(0.0, now - 1.0)) * self.noise()
            decision = decide(lagged - self.audio_bps, loss, 0.05, costs, decision, now)
            history.append((now, loss, decision))
        return history


def flap(t: float) -> float:
    return 150_000.0 if 10.0 <= t < 30.0 else 10_000_000.0


def switches(history: list[tuple[float, float, RungDecision]]) -> list[tuple[float, str]]:
    return [(now, short(d.choice)) for now, _, d in history if d.switched]


@pytest.mark.parametrize(
    ("low_bps", "rung_in_dip"),
    [(150_000.0, Rung.AUDIO_ONLY), (90_000.0, Rung.LOW)],
)
def test_flap_profile_adapts_within_3_s_and_returns_to_full_within_10_s(
    low_bps: float, rung_in_dip: Rung
) -> None:
    costs = RungCosts(L1T3.layer_bps, low_bps=low_bps)
    history = SimulatedLink(flap).run(costs, until=60.0)
    fits = [now for now, _, d in history if 10.0 <= now < 30.0 and d.cost_bps + 40_000 <= 150_000]
    assert fits and fits[0] <= 13.0, "adapted within 3 s of the drop"
    settled = [d for now, _, d in history if 13.0 <= now < 30.0 and d.probe_until is None]
    assert {d.rung for d in settled} == {rung_in_dip}, switches(history)  # except probes
    back = [now for now, _, d in history if now >= 30.0 and d.choice == FULL]
    assert back and back[0] <= 40.0, "back to full within 10 s of recovery"
    assert all(d.choice == FULL for now, _, d in history if now >= back[0])
    assert len(switches(history)) <= 8, switches(history)


def test_flap_dip_probes_back_off_while_the_link_stays_weak() -> None:
    history = SimulatedLink(lambda t: 150_000.0 if t >= 10.0 else 10e6).run(L1T3, until=130.0)
    probes = [now for now, _, d in history if d.switched and d.reason is RungReason.PROBE]
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    # Intervals double after each failure up to probe_interval_max_s (20 s): a link that comes
    # back is noticed within ~20 s, a weak one costs a 1 s failed probe every ~21 s.
    assert len(probes) <= 7, probes
    assert gaps == sorted(gaps), probes
    assert POLICY.probe_interval_max_s <= gaps[-1] <= POLICY.probe_interval_max_s + POLICY.probe_s


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("capacity", [1_000_000.0, 1_100_000.0, 1_300_000.0])
def test_noisy_estimate_around_a_rung_boundary_does_not_flap(seed: int, capacity: float) -> None:
    """The estimate jitters +-20% around a capacity near full's cost (1M + 40k audio)."""
    rng = random.Random(seed)
    link = SimulatedLink(lambda t: capacity, noise=lambda: rng.uniform(0.8, 1.2))
    history = link.run(L1T3, until=180.0)
    probing = (RungReason.PROBE, RungReason.PROBE_FAILED)
    settled = [d for _, _, d in history if d.switched and d.reason not in probing]
    assert len(settled) <= 2, switches(history)
    probes = [now for now, _, d in history if d.switched and d.reason is RungReason.PROBE]
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    # Full (1M + 40k of audio) overflows a 1M link by 4%: each probe of it ends with loss
    # risen by more than probe_loss_rise and fails; they back off to one every
    # probe_interval_max_s + probe_s, about 10% of the time spent probing.
    assert len(probes) <= 10 and gaps == sorted(gaps), switches(history)
    assert all(g <= POLICY.probe_interval_max_s + POLICY.probe_s for g in gaps)
    assert all(
        d.reason is RungReason.PROBE_FAILED for _, _, d in history if d.reason in probing[1:]
    )


def test_square_wave_link_backs_off_up_switches() -> None:
    """3 s at 3 Mbit/s, 3 s at 500 kbit/s, for three minutes."""
    link = SimulatedLink(lambda t: 3e6 if int(t // 3) % 2 == 0 else 500_000.0)
    history = link.run(L1T3, until=180.0)
    ups = [
        now
        for now, _, d in history
        if d.switched and d.reason in (RungReason.RECOVERED, RungReason.PROBE)
    ]
    gaps = [b - a for a, b in itertools.pairwise(ups)]
    assert gaps == sorted(gaps), switches(history)
    # A few up-switches fail, then only probes, at most one per probe_interval_max_s (+ the
    # wave's phase): nine in three minutes, each back down within a second.
    assert len(ups) <= 9, switches(history)
    assert all(g >= POLICY.probe_interval_max_s for g in gaps[3:]), switches(history)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0.0, 5e6),
            st.sampled_from([0.0, 0.01, 0.04, 0.07, 0.12, 0.5]),
            st.floats(0.05, 2.0),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_any_input_sequence_gives_a_rung_of_the_ladder_and_no_up_switch_under_loss(
    inputs: list[tuple[float, float, float]],
) -> None:
    ladder = L1T3.ladder()
    for previous, decision, loss in walk(inputs):
        assert decision.choice in ladder
        assert decision.cost_bps == L1T3.cost(decision.choice)
        if previous is not None:
            went_up = ladder.index(decision.choice) < ladder.index(previous.choice)
            assert decision.switched == (decision.choice != previous.choice)
            if went_up:
                assert loss < POLICY.up_loss_max


def walk(
    inputs: list[tuple[float, float, float]], limit_bps: float = math.inf
) -> list[tuple[RungDecision | None, RungDecision, float]]:
    """(previous decision, decision, loss) along (estimate, loss, seconds since the last)
    inputs, from the start."""
    steps: list[tuple[RungDecision | None, RungDecision, float]] = []
    previous: RungDecision | None = None
    now = 0.0
    for estimate, loss, dt in inputs:
        now += dt
        decision = decide(estimate, loss, 0.05, L1T3, previous, now, POLICY, limit_bps)
        steps.append((previous, decision, loss))
        previous = decision
    return steps


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0.0, 5e6),
            st.sampled_from([0.0, 0.04, 0.07, 0.12]),
            st.floats(0.05, 3.0),
        ),
        min_size=1,
        max_size=60,
    ),
    st.sampled_from([150_000.0, 400_000.0, 600_000.0]),
)
def test_no_step_up_ever_goes_above_a_policy_limit(
    inputs: list[tuple[float, float, float]], limit_bps: float
) -> None:
    ladder = L1T3.ladder()
    for previous, decision, _loss in walk(inputs, limit_bps):
        if previous is not None and ladder.index(decision.choice) < ladder.index(previous.choice):
            assert decision.cost_bps <= limit_bps
        previous = decision


def test_a_shortfall_keeps_the_cheapest_video_the_share_covers_rather_than_pausing() -> None:
    """160k: within headroom (136k) nothing fits, but the low rendition (150k) is covered: the
    camera steps down to low rather than to audio only."""
    start = decide(1_000_000, 0.0, 0.05, L1T3, None, 0.0)
    steps = ticks(0.25, 3.0, 160_000)
    decisions = run(steps, start=start)
    assert decisions[-1].choice == LOW and decisions[-1].reason is RungReason.SHORTFALL


SMALL_CAMERA = RungCosts((120_000.0, 60_000.0, 120_000.0), low_bps=110_000.0)
"""A camera whose 7.5 fps layer (120k) costs about its low rendition (110k): weak-link figures."""


@pytest.mark.parametrize(
    ("start_estimate", "estimate", "loss", "expected"),
    [
        # 7.5 fps on a share that covers the low rung: an 11% window (carried 120k x 0.89 x
        # 0.85 = 91k, under the low rung's cost) steps to low, not to audio only
        (160_000, 160_000, 0.11, "low"),
        # already on the cheapest video: a moderate spike leaves it there
        (130_000, 130_000, 0.15, "low"),
        # the link overflowed (25% or more): audio only at once
        (160_000, 160_000, 0.30, "audio_only"),
        (130_000, 130_000, 0.30, "audio_only"),
        # the share no longer covers the cheapest video: audio only
        (160_000, 110_000, 0.15, "audio_only"),
    ],
)
def test_a_moderate_loss_spike_does_not_pause_a_video_its_share_covers(
    start_estimate: float, estimate: float, loss: float, expected: str
) -> None:
    start = decide(start_estimate, 0.0, 0.05, SMALL_CAMERA, None, 0.0)
    assert short(start.choice) == ("reduced_fps/1" if start_estimate > 150_000 else "low")
    decision = decide(estimate, loss, 0.05, SMALL_CAMERA, start, 0.25)
    assert short(decision.choice) == expected


SINGLE = RungCosts.single_layer(1_000_000.0, low_bps=110_000.0)
"""A 1 Mbit/s camera without temporal layers (the relay bench's clip, an aiortc publisher):
full, then only the transcoded low rung."""


@pytest.mark.parametrize(
    ("costs", "estimate", "guessed", "expected"),
    [
        # the starting guess (400k) is no evidence: no transcoder, no lower than the
        # publisher's cheapest layers
        (SINGLE, 400_000, True, "full"),
        (L1T3, 400_000, True, "reduced_fps/1"),
        (L1T3, 2_000_000, True, "full"),
        (SINGLE, 50_000, True, "full"),
        # an estimate from feedback decides as before
        (SINGLE, 400_000, False, "low"),
        (L1T3, 400_000, False, "low"),
        (SINGLE, 50_000, False, "audio_only"),
    ],
)
def test_a_start_on_the_starting_guess_does_not_go_below_the_publishers_layers(
    costs: RungCosts, estimate: float, guessed: bool, expected: str
) -> None:
    decision = decide(estimate, 0.0, 0.0, costs, None, 0.0, guessed=guessed)
    assert short(decision.choice) == expected and decision.reason is RungReason.START


@pytest.mark.parametrize(
    ("at", "guessed", "held"),
    [
        (1.5, True, True),  # a shortfall under the guess: nothing says the link is short
        (2.5, True, True),
        (POLICY.guess_hold_s + 1.5, True, False),  # no feedback at all for long: decide
        (1.5, False, False),  # feedback said so: the shortfall steps down as before
    ],
)
def test_under_the_starting_guess_the_start_holds_for_guess_hold_s(
    at: float, guessed: bool, held: bool
) -> None:
    previous = decide(400_000, 0.0, 0.0, SINGLE, None, 0.0, guessed=True)
    t = 0.5
    while t <= at:
        previous = decide(400_000, 0.0, 0.0, SINGLE, previous, t, guessed=guessed)
        t += 0.5
    assert (previous.choice.rung is Rung.FULL) is held


@pytest.mark.parametrize(
    ("estimate", "app_limited", "probed"),
    [
        (373_000, False, False),  # 400k is beyond the room the estimate leaves
        (373_000, True, True),  # the estimate only says what is sent: probe 25% above it
        (300_000, True, False),  # 400k is more than 1.25 times it
    ],
)
def test_an_estimate_limited_by_what_is_sent_lets_a_probe_reach_above_it(
    estimate: float, app_limited: bool, probed: bool
) -> None:
    previous = decide(200_000, 0.0, 0.05, L1T3, None, 0.0)
    assert previous.choice is LOW
    later = decide(
        estimate, 0.0, 0.05, L1T3, previous, POLICY.probe_interval_s + 1,
        probe_room_bps=estimate - 40_000, app_limited=app_limited,
    )  # fmt: skip
    assert (later.reason is RungReason.PROBE) is probed


SIMULCAST_TOP_FLOOR = replace(SIMULCAST_FLOOR, top_floor_bps=600_000.0)
"""... whose 720p's ceiling follows its subscribers down to 600k (twice the 180p's rate, at
least 450k: `media.adapt.spatial.top_floor`)."""


@pytest.mark.parametrize(
    ("costs", "estimate", "after"),
    [
        # a shortfall under what 720p sends (2M), above what its ceiling can bring it to:
        # held, its ceiling follows (as a direct call lowers its bitrate and keeps its picture)
        (SIMULCAST_TOP_FLOOR, 900_000.0, Rung.FULL),
        # without a floor (a top layer the relay does not cap): 180p
        (SIMULCAST_FLOOR, 900_000.0, Rung.LOW),
        # under the floor: 180p
        (SIMULCAST_TOP_FLOOR, 450_000.0, Rung.LOW),
    ],
)
def test_a_top_layer_whose_ceiling_follows_is_kept_down_to_its_floor(
    costs: RungCosts, estimate: float, after: Rung
) -> None:
    steady = run(ticks(0, 5, 4_000_000.0), costs=costs)[-1]
    assert steady.choice == RungChoice(Rung.FULL, 1)
    decisions = run(ticks(5, 8, estimate), costs=costs, start=steady)
    assert decisions[-1].choice.rung is after
    floor = costs.top_floor_bps
    assert costs.least_cost(RungChoice(Rung.FULL, 1)) == (floor or 2_000_000.0)
