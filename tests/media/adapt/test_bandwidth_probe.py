"""Padding probes as a pure decision: when one starts, where it aims, and its verdict."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from media.adapt.bandwidth_probe import (
    ProbeInputs,
    ProbePolicy,
    ProbeState,
    ProbeStep,
    ProbeVerdict,
    probe_step,
    probe_target,
    probe_unsent,
    remb_fell,
)

POLICY = ProbePolicy()

# After a dip: audio only (with the heartbeat) at 90k on a link that carried 900k a minute ago.
AFTER_DIP = ProbeInputs(
    estimate_bps=90_000,
    loss=0.005,
    loss_at=9.8,
    rtt_sample_s=0.004,
    rtt_settled=True,
    rtt_floor_s=0.004,
    carried_bps=900_000,
    sent_bps=85_000,
    delivered_bps=84_000,
    spent_bps=75_000,
    wanted_bps=1_000_000,
    can_pad=True,
    busy=False,
)


@pytest.mark.parametrize(
    ("change", "target"),
    [
        # what the link carried lately
        ({}, 900_000),
        # never more than everything wanted, with the margin that puts its rungs in reach
        ({"wanted_bps": 500_000}, 625_000),
        # nothing carried lately that is worth more: a quarter over the estimate (twice it
        # overflowed a weak link by 23% and the receiver's REMB fell for 6 s)
        ({"carried_bps": 100_000}, 112_500),
        ({"carried_bps": 0.0, "estimate_bps": 300_000}, 375_000),
        # beside a simulcast layer below its top, on a clean link: twice the estimate (the
        # next layer costs several times the current one) ...
        ({"carried_bps": 0.0, "estimate_bps": 600_000, "climbing": True}, 1_200_000),
        # ... but a quarter over it on a lossy (village) link, where an overflow costs audio
        ({"carried_bps": 0.0, "estimate_bps": 600_000, "climbing": True, "loss": 0.03},
         750_000),
        # ... unless that loss is the link's own (its floor): then what is above it counts
        ({"carried_bps": 0.0, "estimate_bps": 600_000, "climbing": True, "loss": 0.06,
          "loss_floor": 0.04}, 1_200_000),
        ({"carried_bps": 0.0, "estimate_bps": 600_000, "climbing": True, "loss": 0.07,
          "loss_floor": 0.04}, 750_000),
        # ... and below `climb_min_bps` (a weak link at its capacity lost half a second to a
        # probe at twice its estimate)
        ({"carried_bps": 0.0, "estimate_bps": 300_000, "climbing": True}, 375_000),
    ],
)
def test_a_probe_aims_at_what_the_link_carried_or_a_quarter_over_the_estimate(
    change: dict[str, float], target: float
) -> None:
    assert probe_target(replace(AFTER_DIP, **change)) == pytest.approx(target)


@pytest.mark.parametrize(
    ("change", "state", "why"),
    [
        ({"can_pad": False}, ProbeState(), "no paused video stream to carry the padding"),
        ({"busy": True}, ProbeState(), "a rung probe runs"),
        ({"rtt_settled": False}, ProbeState(), "a queue: the link has not drained"),
        ({"loss": 0.08}, ProbeState(), "loss too high"),
        ({"loss": 0.08, "loss_at": 8.5}, ProbeState(), "loss too high, read 1.5 s ago"),
        ({"wanted_bps": 80_000}, ProbeState(), "not worth it: wants little more"),
        ({"estimate_bps": 1_300_000}, ProbeState(), "the estimate covers everything"),
        ({}, ProbeState(next_at=12.0), "the interval after a failure"),
    ],
)
def test_no_probe_starts(change: dict[str, object], state: ProbeState, why: str) -> None:
    step = probe_step(state, replace(AFTER_DIP, **change), now=10.0)
    assert step.verdict is ProbeVerdict.IDLE, why
    assert step.pad_bps == 0.0 and not step.state.running


@pytest.mark.parametrize(
    ("estimate", "climbing", "starts"),
    [
        # 180p on a 1000 kbit/s classroom, 360p wanting 450k beside 48k of audio: 625k is
        # what puts it in reach, less than 1.25 times the estimate but worth a climb ...
        (550_000, True, True),
        (590_000, True, True),
        (600_000, True, False),  # ... from 5% above it
        (550_000, False, False),  # not climbing: `min_gain` as ever
    ],
)
def test_a_climbing_probe_may_aim_just_above_the_estimate_to_reach_what_is_wanted(
    estimate: float, climbing: bool, starts: bool
) -> None:
    inputs = replace(AFTER_DIP, estimate_bps=estimate, carried_bps=0.0, wanted_bps=500_000,
                     climbing=climbing, spent_bps=300_000)  # fmt: skip
    step = probe_step(ProbeState(), inputs, now=10.0)
    assert (step.verdict is ProbeVerdict.STARTED) is starts
    if starts:
        assert step.state.target_bps == pytest.approx(625_000)


def read(now: float, **change: object) -> ProbeInputs:
    """The inputs after the dip with a loss reading just made at `now`."""
    return replace(AFTER_DIP, loss_at=now, **change)


def run(
    state: ProbeState, ticks: list[ProbeInputs], policy: ProbePolicy = POLICY
) -> list[ProbeStep]:
    """Each tick's step; a tick's clock is its reading's time."""
    out = []
    for inputs in ticks:
        assert inputs.loss_at is not None
        step = probe_step(state, inputs, inputs.loss_at, policy)
        state = step.state
        out.append(step)
    return out


def test_a_probe_pads_up_to_its_target_then_waits_and_passes() -> None:
    steps = run(
        ProbeState(),
        [
            read(10.0),  # a tick of padding (half a second)
            read(10.5, sent_bps=600_000),  # the padding stopped: the reports are awaited
            read(11.0, sent_bps=300_000, delivered_bps=700_000),  # a report saw its peak
            read(11.5, loss=0.01),
        ],
    )
    assert [s.verdict for s in steps] == [
        ProbeVerdict.STARTED,
        ProbeVerdict.WAITING,
        ProbeVerdict.WAITING,
        ProbeVerdict.PASSED,
    ]
    assert steps[0].pad_bps == pytest.approx(900_000 - 75_000)
    # credited: the target (what the link took for the probe's half second) less the loss;
    # the one-second meters read the half-second probe at about half
    assert steps[-1].carried_bps == pytest.approx(900_000 * 0.99)
    assert not steps[-1].state.running


def test_a_longer_probe_pads_on_each_tick_while_a_stream_is_paused() -> None:
    longer = ProbePolicy(duration_s=1.0)
    steps = run(ProbeState(), [read(10.0), read(10.5, spent_bps=100_000)], longer)
    assert [s.verdict for s in steps] == [ProbeVerdict.STARTED, ProbeVerdict.PADDING]
    assert steps[1].pad_bps == pytest.approx(900_000 - 100_000)
    step = probe_step(steps[1].state, read(10.5, can_pad=False), 10.5, longer)
    assert step.verdict is ProbeVerdict.WAITING and step.pad_bps == 0.0


def test_a_stale_loss_reading_does_not_hold_a_probe_off() -> None:
    # 65% read during the dip, 2.5 s ago; the RTT is back at its floor since
    step = probe_step(ProbeState(), replace(AFTER_DIP, loss=0.65, loss_at=7.5), 10.0)
    assert step.verdict is ProbeVerdict.STARTED
    # no baseline either: the verdict takes the loss up to loss_max as the link's own
    assert step.state.loss_before == POLICY.loss_max
    stale_low = probe_step(ProbeState(), replace(AFTER_DIP, loss=0.04, loss_at=7.5), 10.0)
    assert stale_low.state.loss_before == 0.04


def test_a_probe_without_a_reading_since_its_start_fails() -> None:
    stale = replace(AFTER_DIP, loss_at=9.8)
    steps = [probe_step(ProbeState(), stale, 10.0)]
    for now in (10.5, 11.0, 11.5, 12.0, 12.5):
        steps.append(probe_step(steps[-1].state, stale, now))
    verdicts = [s.verdict for s in steps]
    assert verdicts[1:5] == [ProbeVerdict.WAITING] * 4, "its verdict is due at 11.5"
    assert verdicts[-1] is ProbeVerdict.FAILED


def test_after_a_pass_the_next_probe_may_start_soon() -> None:
    steps = run(ProbeState(), [read(10.0), read(10.5), read(11.5)])
    assert steps[-1].verdict is ProbeVerdict.PASSED
    assert probe_step(steps[-1].state, read(12.0), 12.0).verdict is ProbeVerdict.STARTED


@pytest.mark.parametrize(
    ("at", "change", "why"),
    [
        # a loss spike ends it at once, padding or not
        (10.5, {"loss": 0.15}, "loss spike while padding"),
        # an RTT sample rose by 60 ms or more: the link queued the padding
        (11.0, {"rtt_sample_s": 0.1}, "queue"),
        # at the verdict: loss risen by 3 points over where it started
        (11.5, {"loss": 0.04}, "loss rose"),
    ],
)
def test_a_probe_fails_and_the_next_waits_twice_as_long(
    at: float, change: dict[str, float], why: str
) -> None:
    ticks = [read(now, **(change if now == at else {})) for now in (10.0, 10.5, 11.0, 11.5)]
    steps = run(ProbeState(), [t for t in ticks if t.loss_at is not None and t.loss_at <= at])
    assert steps[-1].verdict is ProbeVerdict.FAILED, why
    state = steps[-1].state
    assert not state.running
    assert state.next_at == pytest.approx(at + POLICY.interval_s)
    assert state.interval_s == pytest.approx(2 * POLICY.interval_s)
    # and the next failure doubles it again
    again = probe_step(state, read(state.next_at), state.next_at).state
    failed = probe_step(again, read(state.next_at + 0.5, loss=0.2), state.next_at + 0.5).state
    assert failed.interval_s == pytest.approx(4 * POLICY.interval_s)


@pytest.mark.parametrize(("fast_start", "target"), [(True, 600_000), (False, 375_000)])
def test_until_a_probe_fails_a_climb_doubles_from_any_estimate(
    fast_start: bool, target: float
) -> None:
    inputs = replace(AFTER_DIP, carried_bps=0.0, estimate_bps=300_000, climbing=True)
    assert probe_target(inputs, POLICY, fast_start=fast_start) == pytest.approx(target)


def test_the_first_failed_probe_ends_the_fast_start_and_a_pass_keeps_it() -> None:
    failed = run(ProbeState(), [read(10.0), read(10.5, rtt_sample_s=0.1)])
    assert failed[-1].verdict is ProbeVerdict.FAILED and not failed[-1].state.fast_start
    passed = run(ProbeState(), [read(10.0), read(10.5), read(11.5)])
    assert passed[-1].verdict is ProbeVerdict.PASSED and passed[-1].state.fast_start
    started = probe_step(ProbeState(), read(10.0), 10.0).state
    unknown = probe_step(started, read(9.9), 13.0)  # no report since its start: no evidence
    assert unknown.verdict is ProbeVerdict.FAILED and unknown.state.fast_start


def test_a_link_with_random_loss_may_pass() -> None:
    lossy = [read(now, loss=0.04) for now in (10.0, 10.5, 11.0)]  # its own 4%
    steps = run(ProbeState(), [*lossy, read(11.5, loss=0.05)])
    assert steps[-1].verdict is ProbeVerdict.PASSED


@pytest.mark.parametrize(
    ("loss_before", "peak", "loss", "verdict"),
    [
        # a link losing 4-6% at random whose RTT samples stayed put: its loss, not the probe's
        (0.06, 0.004, 0.096, ProbeVerdict.PASSED),
        (0.04, 0.018, 0.095, ProbeVerdict.PASSED),  # 14 ms over: still no queue
        (0.04, 0.004, 0.10, ProbeVerdict.FAILED),  # up by quiet_loss_rise (and a spike)
        (0.06, 0.004, 0.109, ProbeVerdict.PASSED),  # a spike on it is one above its own 6%
        (0.04, 0.025, 0.08, ProbeVerdict.FAILED),  # 21 ms over: a queue builds, loss_rise
        (0.04, None, 0.08, ProbeVerdict.FAILED),  # no sample during it: nothing says so
        (0.005, 0.004, 0.04, ProbeVerdict.FAILED),  # a clean link: the loss is the probe's
    ],
)
def test_a_probe_that_queued_nothing_is_judged_on_the_links_random_loss(
    loss_before: float, peak: float | None, loss: float, verdict: ProbeVerdict
) -> None:
    ticks = [read(10.0, loss=loss_before), read(10.5, loss=loss_before, rtt_sample_s=peak),
             read(11.5, loss=loss, rtt_sample_s=peak)]  # fmt: skip
    assert run(ProbeState(), ticks)[-1].verdict is verdict



@pytest.mark.parametrize(
    ("sent", "delivered", "carried"),
    [
        (400_000, 380_000, 900_000 * 0.99),  # the target
        (950_000, 380_000, 950_000 * 0.99),  # more was sent (media besides the padding)
        (400_000, 950_000, 950_000),  # a report saw more get through
    ],
)
def test_a_passed_probe_credits_the_most_it_saw_carried(
    sent: float, delivered: float, carried: float
) -> None:
    steps = run(
        ProbeState(),
        [read(10.0), read(10.5, sent_bps=sent, delivered_bps=delivered), read(11.5, loss=0.01)],
    )
    assert steps[-1].verdict is ProbeVerdict.PASSED
    assert steps[-1].carried_bps == pytest.approx(carried)


def test_a_probe_that_could_not_pad_is_no_probe() -> None:
    started = probe_step(ProbeState(), read(10.0), 10.0).state
    unsent = probe_unsent(started, 10.0)
    assert not unsent.running and unsent.next_at == pytest.approx(10.0 + POLICY.again_s)


@pytest.mark.parametrize(
    ("peak", "verdict"),
    [
        (0.004, ProbeVerdict.PASSED),
        (0.05, ProbeVerdict.PASSED),  # 46 ms: jitter, not a queue
        (0.07, ProbeVerdict.FAILED),  # a sender report waited 66 ms in the padding's queue
        (None, ProbeVerdict.PASSED),  # no sample (none was taken): the loss decides
    ],
)
def test_a_queue_seen_in_any_rtt_sample_during_the_probe_fails_it(
    peak: float | None, verdict: ProbeVerdict
) -> None:
    # the glue hands the highest sample since the start, so a short queue is not missed
    ticks = [read(10.0), read(10.5, rtt_sample_s=peak), read(11.5, rtt_sample_s=peak)]
    verdicts = [s.verdict for s in run(ProbeState(), ticks)]
    assert verdicts[1:] in ([ProbeVerdict.WAITING, verdict], [verdict, ProbeVerdict.IDLE])


def test_a_probe_started_on_a_draining_queue_is_judged_against_the_floor_seen_since() -> None:
    """A subscriber's first seconds: its RTT floor was learned in the queue of its first
    keyframes. A probe started at 243 ms whose samples fell to 97 ms around a 159 ms peak
    queued its padding: judged against its start (243 ms) it would pass."""
    start = read(10.0, rtt_sample_s=0.243, rtt_floor_s=0.243)
    ticks = [start, read(10.5, rtt_sample_s=0.159, rtt_floor_s=0.159),
             read(11.5, rtt_sample_s=0.159, rtt_floor_s=0.097)]  # fmt: skip
    assert run(ProbeState(), ticks)[-1].verdict is ProbeVerdict.FAILED
    # the same samples on a settled link (floor 97 ms before it started): no queue
    settled = [read(10.0, rtt_sample_s=0.097, rtt_floor_s=0.097),
               read(10.5, rtt_sample_s=0.120, rtt_floor_s=0.097),
               read(11.5, rtt_sample_s=0.120, rtt_floor_s=0.097)]  # fmt: skip
    assert run(ProbeState(), settled)[-1].verdict is ProbeVerdict.PASSED


def test_a_failed_probe_bounds_the_next_ones_halfway() -> None:
    climbing = replace(AFTER_DIP, carried_bps=0.0, estimate_bps=1_500_000, wanted_bps=4_000_000,
                       climbing=True)  # fmt: skip
    assert probe_target(climbing) == pytest.approx(3_000_000)
    assert probe_target(climbing, failed_bps=2_500_000) == pytest.approx(2_000_000)
    # stale: the link carried more since
    carried = replace(climbing, carried_bps=1_200_000)
    assert probe_target(carried, failed_bps=1_000_000) == pytest.approx(3_000_000)
    # ... with an estimate that crept past it uncarried: as if it had not failed, but no
    # probe above it if it overflowed the link (a failure on loss alone may be random loss)
    assert probe_target(climbing, failed_bps=1_000_000) == pytest.approx(3_000_000)
    overflowed = dict(failed_bps=1_000_000, overflowed_bps=1_000_000)
    assert probe_target(climbing, **overflowed) == pytest.approx(1_000_000)
    for state, verdict in [
        (ProbeState(failed_bps=1_000_000, failed_at=5.0), ProbeVerdict.STARTED),
        (ProbeState(failed_bps=1_000_000, failed_at=5.0, overflowed_bps=1_000_000,
                    overflowed_at=5.0), ProbeVerdict.IDLE),
        (ProbeState(failed_bps=1_000_000, failed_at=5.0, overflowed_bps=1_000_000,
                    overflowed_at=-25.0), ProbeVerdict.STARTED),  # 35 s ago: forgotten
    ]:  # fmt: skip
        assert probe_step(state, replace(climbing, loss_at=10.0), 10.0).verdict is verdict
    # through the steps: a probe to 3M overflows the link (20% lost); the next aims a quarter
    # over the estimate (halfway, 2.25M, would overflow it again), and none starts once
    # halfway is not worth a probe
    started = probe_step(ProbeState(), replace(climbing, loss_at=10.0), 10.0)
    assert started.state.target_bps == pytest.approx(3_000_000)
    failed = probe_step(started.state, replace(climbing, loss=0.2, loss_at=10.4), 10.5)
    assert failed.verdict is ProbeVerdict.FAILED and failed.overflowed
    assert failed.state.failed_bps == pytest.approx(3_000_000)
    later = failed.state.next_at
    second = probe_step(failed.state, replace(climbing, loss_at=later), later)
    assert second.state.target_bps == pytest.approx(1_875_000)
    failed = probe_step(second.state, replace(climbing, loss=0.2, loss_at=later + 0.4), later + 0.5)
    assert failed.state.failed_bps == pytest.approx(1_875_000)
    later = failed.state.next_at
    idle = probe_step(failed.state, replace(climbing, loss_at=later), later)
    assert idle.verdict is ProbeVerdict.IDLE  # 1.69M is not worth it over a 1.5M estimate
    # forgotten after `failed_memory_s`
    much_later = later + POLICY.failed_memory_s + 1.0
    fresh = probe_step(failed.state, replace(climbing, loss_at=much_later), much_later)
    assert fresh.verdict is ProbeVerdict.STARTED
    assert fresh.state.target_bps == pytest.approx(3_000_000)


@pytest.mark.parametrize(
    ("rtt_during", "remembered"),
    [
        (0.006, False),  # the RTT where it started: random loss on a clean-read start
        (0.004 + POLICY.quiet_rtt_s + 0.002, True),  # a queue built: the link's limit
    ],
)
def test_a_probe_failed_on_loss_alone_with_a_quiet_rtt_bounds_nothing(
    rtt_during: float, remembered: bool
) -> None:
    """A 758k probe on a 2 Mbit/s link losing 3%, started on a 0.0% reading, failed at 3.2%
    with its RTT at 6-8 ms: remembered, it held every probe off for 30 s."""
    climbing = replace(AFTER_DIP, carried_bps=0.0, estimate_bps=650_000, wanted_bps=4_000_000,
                       climbing=True, loss=0.0)  # fmt: skip
    started = probe_step(ProbeState(), replace(climbing, loss_at=10.0), 10.0)
    assert started.verdict is ProbeVerdict.STARTED
    during = replace(climbing, loss=0.032, rtt_sample_s=rtt_during)
    judged = run(started.state, [replace(during, loss_at=10.5), replace(during, loss_at=11.5)])
    failed = judged[-1]
    assert failed.verdict is ProbeVerdict.FAILED and failed.why == "loss"
    assert (failed.state.failed_bps < math.inf) is remembered
    assert failed.state.fast_start is not remembered
    # 3.2% on the loss read after it: not the evidence that bounds the estimate's rise
    # (`EstimatorPolicy.failed_reach_share`), even when the probes remember it
    assert not failed.overflowed


def test_a_probe_without_any_report_fails_but_bounds_nothing() -> None:
    """No loss reading came in time (a 180p's slow reports): not carried, so it fails, but it
    is no evidence that the link cannot carry its target, and the next probe aims as high."""
    climbing = replace(AFTER_DIP, carried_bps=0.0, estimate_bps=1_500_000, wanted_bps=4_000_000,
                       climbing=True)  # fmt: skip
    started = probe_step(ProbeState(), replace(climbing, loss_at=10.0), 10.0)
    overdue = 10.0 + POLICY.duration_s + POLICY.judge_after_s + POLICY.judge_grace_s
    failed = probe_step(started.state, replace(climbing, loss_at=10.0), overdue)
    assert failed.verdict is ProbeVerdict.FAILED
    assert failed.state.failed_bps == math.inf
    later = failed.state.next_at
    again = probe_step(failed.state, replace(climbing, loss_at=later), later)
    assert again.state.target_bps == pytest.approx(3_000_000)


def test_a_probe_beside_a_layer_is_judged_on_the_mean_of_the_reports_about_it() -> None:
    # padding beside a layer goes on RTX, whose losses no report counts; the layer's two
    # reports read 7.5% then 3%: their mean (5.25%) fails it, the latest alone would not
    beside = [read(10.0, climbing=True), read(10.6, loss=0.075, climbing=True),
              read(11.5, loss=0.03, climbing=True)]  # fmt: skip
    assert run(ProbeState(), beside)[-1].verdict is ProbeVerdict.FAILED
    # a paused stream's own padding is counted by its reports: the latest one judges
    alone = [read(10.0), read(10.6, loss=0.075), read(11.5, loss=0.03)]
    assert run(ProbeState(), alone)[-1].verdict is ProbeVerdict.PASSED
    # on a link losing 3% at random, one report reading 6.1% does not fail it
    lossy = [read(10.0, loss=0.03, climbing=True), read(10.6, loss=0.061, climbing=True),
             read(11.5, loss=0.03, climbing=True)]  # fmt: skip
    assert run(ProbeState(), lossy)[-1].verdict is ProbeVerdict.PASSED


# --- the receiver's REMB ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remb_before", "remb", "remb_at", "fell"),
    [
        (400_000, 300_000, 10.2, True),  # fell by a quarter after the start: a queue
        (400_000, 350_000, 10.2, False),  # 12.5% less: within the receiver's own wobble
        (400_000, 500_000, 10.2, False),  # rose with the padding: the link took it
        (400_000, 300_000, 9.9, False),  # that REMB came before the probe started
        (None, 100_000, 10.2, False),  # no REMB before it to compare with
        (400_000, None, None, False),  # none since
    ],
)
def test_a_remb_that_falls_after_the_start_says_the_padding_queued(
    remb_before: float | None, remb: float | None, remb_at: float | None, fell: bool
) -> None:
    state = ProbeState(started_at=10.0, remb_before=remb_before)
    assert remb_fell(state, remb, remb_at) is fell
    assert not remb_fell(ProbeState(remb_before=remb_before), remb, remb_at), "no probe runs"


def test_a_probe_fails_at_once_when_the_remb_falls() -> None:
    start = read(10.0, remb_bps=400_000, remb_at=9.9)
    steps = run(ProbeState(), [start, read(10.5, remb_bps=280_000, remb_at=10.3)])
    assert steps[0].state.remb_before == 400_000
    assert steps[-1].verdict is ProbeVerdict.FAILED and steps[-1].why == "remb"
    # a REMB older than a stale loss reading is no baseline
    old = probe_step(ProbeState(), read(10.0, remb_bps=400_000, remb_at=7.0), 10.0)
    assert old.verdict is ProbeVerdict.STARTED and old.state.remb_before is None


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"loss": 0.15}, "loss"),  # a spike: the link overflowed
        ({"rtt_sample_s": 0.1}, "rtt"),
    ],
)
def test_a_failed_probe_says_why(change: dict[str, float], why: str) -> None:
    steps = run(ProbeState(), [read(10.0), read(10.5, **change)])
    assert steps[-1].verdict is ProbeVerdict.FAILED and steps[-1].why == why
    assert steps[-1].overflowed


@pytest.mark.parametrize(
    ("loss_before", "change", "held"),
    [
        (0.005, {"loss": 0.15}, True),  # a spike on a clean link: the probe's own overflow
        (0.005, {"rtt_sample_s": 0.1}, True),  # a queue
        (0.06, {"rtt_sample_s": 0.1}, True),  # a queue, on a lossy link too
        # a link losing 6% at random reads 10-15% now and then: no evidence of the target
        (0.06, {"loss": 0.15}, False),
    ],
)
def test_only_a_visible_overflow_holds_the_climb_back(
    loss_before: float, change: dict[str, float], held: bool
) -> None:
    steps = run(ProbeState(), [read(10.0, loss=loss_before), read(10.5, **change)])
    assert steps[-1].verdict is ProbeVerdict.FAILED
    assert (steps[-1].state.overflowed_bps < math.inf) is held
