"""Padding probes: learning that a subscriber's link carries more than it is sent, without
risking its picture on the guess.

While a subscriber's video is paused, what it is sent is all its estimate can learn from: a
receiver's REMB stays within 1.5 times what it receives, the loss bound within twice what is
sent (`EstimatorPolicy.app_limited_reach`), and rung probes climb one rung every few seconds.
After a dip (a village cell crowded for twenty seconds) that is tens of seconds of audio only
on a link that is back. So, as GCC probes in its application-limited region, the relay probes
with padding: padding-only packets on a paused video stream (`OutboundStream.send_padding`,
paced like video) raise what the subscriber is sent to `target_bps` for `duration_s`. The
verdict comes `judge_after_s` after the padding stops, once a loss reading since its start is
in (none within `judge_grace_s` more fails it): the probe passed if the loss stayed below what
fails a rung probe, no RTT sample rose (`rtt_rise_s`) and the receiver's REMB did not fall
(`remb_fall`: that one also stops the padding at once); the estimator then counts what got
through as carried (`DownlinkEstimator.probe_passed`). A probe that fails costs a moment of
padding on a link that could not carry it (no video was at stake), and the next one waits
twice as long.

When: the allocation wants more than the estimate gives, a video stream is paused (the padding
needs one) or a simulcast subscriber is on a layer below the top (the padding then goes on the
RTX stream beside its video: what it is sent keeps the estimate near the small layer's rate, so
without a probe it would never reach the next layer's cost), no rung probe runs, the loss is
low (or its reading stale) and the RTT is at its floor (no queue: a dip's queue keeps probes
off until it drains). Where to: what the link carried lately (the most that got through over
the last minute), or `estimate_factor` times the estimate if more, never more than everything
wanted with the margin a rung needs to be in reach.

`probe_step` is the pure decision, one call a tick with the clock passed in.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace

from media.adapt.rung import random_loss_only, rtt_stayed


@dataclass(frozen=True, slots=True)
class ProbePolicy:
    """Constants of padding probes; the defaults are what the relay uses."""

    duration_s: float = 0.5
    """Padding is sent this long (one adaptation tick: on a link still in its dip, a probe
    overflows it for as long as it lasts)."""
    judge_after_s: float = 1.0
    """The verdict waits this long after the padding stops: a receiver reports on video about
    once a second."""
    interval_s: float = 3.0
    """Time between the verdict of a failed probe and the next probe's start; doubles after
    each failure..."""
    interval_max_s: float = 24.0
    """... up to this."""
    again_s: float = 0.5
    """After a probe that passed, the next may start this soon (a link that came back is
    climbed in a few probes, not one a minute)."""
    estimate_factor: float = 1.25
    """A probe aims at least at this times the estimate (beyond what the link carried lately,
    it explores: at twice the estimate, a half-second probe overflowed a 500 kbit/s link by
    23%, and the receiver's REMB, falling with it, kept the camera paused 6 s)..."""
    carried_share: float = 1.0
    """... or at this share of what the link carried lately (the rate before a dip: a probe
    that passes there brings every track back at once; GCC probes at 85% of it, a rate that
    leaves the best rung out of reach)..."""
    wanted_margin: float = 1.25
    """... but never more than everything wanted times this (a rung is in reach at its cost
    times 1 + `RungPolicy.up_margin`)."""
    climb_factor: float = 2.0
    """Beside a simulcast layer below the top (`ProbeInputs.climbing`) on a link whose loss is
    below `climb_loss_max`, a probe aims at this times the estimate instead: the next layer
    costs several times the current one (180p 150k, 360p 500k, 720p 1.7 Mbit/s); climbing to
    a 1.5 Mbit/s layer 25% a probe would take a 2 Mbit/s classroom seven probes, 1.6 times
    took four (11 s of 180p), twice takes three..."""
    climb_loss_max: float = 0.025
    """... see `climb_factor`: on a lossier (village) link probes keep `estimate_factor`, as a
    probe that overflows it costs its audio..."""
    climb_min_bps: float = 400_000.0
    """... and so below this estimate: a half-second probe at twice the estimate of a link at
    its capacity overflows any queue under half a second, whatever the rate, and on 300 and
    500 kbit/s classrooms (180p, 360p within 1.25 times of reach) each such probe lost half
    of its second, audio with it, and paused the video for 4-8 s. From here up the next
    layer is several times the estimate away, and 1.25 steps would take a minute."""
    min_gain: float = 1.25
    """No probe aiming at less than this times the estimate (not worth the padding)..."""
    reach_min_gain: float = 1.05
    """... except a climbing probe that aims at everything wanted (times `wanted_margin`): it
    may aim this little above the estimate. The next layer is in reach only at its cost
    times 1 + `RungPolicy.up_margin`, which the estimate may not meet while it is above what
    everything wanted costs: a 1000 kbit/s classroom on 180p, 360p wanting 450k beside 48k of
    audio, sat at an estimate of 547-569k for 28 s without a probe (625k was less than 1.25
    times it) and without 360p (its 521k share under 562k)."""
    loss_max: float = 0.07
    """Only probe while the loss is below this..."""
    loss_stale_s: float = 2.0
    """... or while the loss reading is older than this: an old reading (after a dip) says
    nothing against a link whose RTT is back at its floor, and a slow stream (a heartbeat)
    gives a reading only when its window fills or loses 8 packets
    (`EstimatorPolicy.loss_evident_lost`): a stale reading means no such loss lately."""
    judge_grace_s: float = 1.0
    """A verdict without any loss reading since the probe started waits this much longer,
    then fails (no evidence the link carried it)."""
    loss_rise: float = 0.03
    """A probe after which the loss is above what it was at its start by this much (and at
    least `loss_floor`) failed: the link's own random loss says nothing against it..."""
    loss_floor: float = 0.02
    """... see `loss_rise`."""
    loss_spike: float = 0.10
    """Loss at or above this ends a probe at once, failed."""
    failed_memory_s: float = 30.0
    """A probe that failed bounds the next ones for this long: they aim at most halfway
    between the estimate and its target (a bisection, where aiming at twice the estimate
    again overflowed the same 2 Mbit/s classroom by half every few seconds)."""
    quiet_rtt_s: float = 0.015
    """A probe on a link that lost packets before it (`random_loss_min`), during which an RTT
    sample came and none rose more than this over the one before it, built no queue: its loss
    is the link's random loss, which fails it only `quiet_loss_rise` above the loss at its
    start (or at `loss_spike`)..."""
    random_loss_min: float = 0.01
    """... see `quiet_rtt_s` (on a clean link, loss a probe brings is its own)..."""
    quiet_loss_rise: float = 0.06
    """... see `quiet_rtt_s`: a link losing 6% at random reads 4-10% a second (100 packets a
    report), and `loss_rise` failed a probe to 517k on a 2 Mbit/s link at 9.6% while its RTT
    stayed at 2 ms; the classroom stayed on 180p where a direct call played 360p at 1.5 Mbit/s.
    The spike that ends such a probe at once is then `loss_spike` or this, whichever is more."""
    rtt_rise_s: float = 0.06
    """A probe during which an RTT sample rose this much over the one before it failed: the
    link queued the padding (our sender reports wait in the same queue). A half-second probe
    20% over a 200 kbit/s link fits the lab's 100 ms queue without a loss, and passed."""
    remb_fall: float = 0.85
    """A probe after whose start the receiver's REMB fell below this share of the last one
    before it failed, and its padding stops at once (`remb_fell`): the receiver's delay-based
    estimator saw the queue grow (a receiver sends a lower REMB at once, a higher one about
    once a second), long before a receiver report counts the loss. A probe at twice the
    estimate beside 360p on a 500 kbit/s link was judged a second and a half after it began,
    on 50% loss; its padding and the retransmissions of what it made the link drop paused
    the video for 4 s and cost the audio half a second."""


class ProbeVerdict(enum.StrEnum):
    """What `probe_step` decided this tick."""

    IDLE = "idle"
    """No probe running, none started."""
    STARTED = "started"
    """A probe starts: pad this tick (the loss window restarts with it)."""
    PADDING = "padding"
    """The probe goes on: pad this tick."""
    WAITING = "waiting"
    """The padding has stopped; the reports about it are awaited."""
    PASSED = "passed"
    """The link carried the probe: `carried_bps` got through."""
    FAILED = "failed"
    """The link did not carry it."""


@dataclass(frozen=True, slots=True)
class ProbeInputs:
    """What one tick knows about the subscriber's link and allocation."""

    estimate_bps: float
    loss: float
    loss_at: float | None
    """When the loss was last read (`LinkEstimate.loss_at`)."""
    rtt_sample_s: float | None
    """The latest RTT sample; while a probe runs, the highest since it started
    (`DownlinkEstimator.rtt_sample_peak`). None before any."""
    rtt_settled: bool
    """The RTT is at its floor (`LinkEstimate.rtt_settled`)."""
    rtt_floor_s: float | None
    """The least RTT sample lately (`DownlinkEstimator.rtt_floor`). None before any."""
    carried_bps: float
    """The most the link carried lately (`LinkEstimate.carried_bps`)."""
    sent_bps: float
    """What was sent over the last second (`LinkEstimate.sent_bps`)."""
    delivered_bps: float
    """What got through according to the last report (`LinkEstimate.delivered_bps`): reports
    fall between ticks, where the probe's rate is best seen."""
    spent_bps: float
    """What the allocation spends: the padding fills the rest up to the target."""
    wanted_bps: float
    """What every track at its best rung would cost."""
    can_pad: bool
    """A video stream of the subscriber is paused, or `climbing`."""
    busy: bool
    """A rung probe runs (one probe at a time: each is judged on the loss it causes), or a
    paused track is about to resume within the estimate (`Allocation.resuming`)."""
    aim_max_bps: float = math.inf
    """No probe aims above this: what would bring everything to the best it can be (a top
    layer held by the relay's ceiling at the page's own, `media.adapt.dynacast`); above it a
    probe only risks the link."""
    climbing: bool = False
    """A simulcast stream of the subscriber is on a layer below its top
    (`media.adapt.spatial.below_top_layer`): the probe pads beside it, aiming higher
    (`ProbePolicy.climb_factor`)."""
    remb_bps: float | None = None
    """The receiver's latest REMB (its own figure, video only), None before any..."""
    remb_at: float | None = None
    """... and when it came."""
    loss_floor: float = 0.0
    """The link's own random loss: the least read lately (`DownlinkEstimator.loss_floor`).
    A climb (`climbing`) is judged on the loss above it (`ProbePolicy.climb_loss_max`)."""


@dataclass(frozen=True, slots=True)
class ProbeState:
    """The probe in progress, if any, and when the next may start."""

    next_at: float = 0.0
    """No probe starts before this."""
    interval_s: float = 3.0
    """Wait after a failed probe (the policy's `interval_s` at first; doubles on each
    failure, back to the policy's on a pass)."""
    started_at: float | None = None
    """Start of the probe in progress (None: none)."""
    target_bps: float = 0.0
    """What the subscriber is sent, media and padding, while it runs."""
    loss_before: float = 0.0
    """The loss at its start."""
    rtt_before_s: float | None = None
    """The latest RTT sample at its start."""
    sent_bps: float = 0.0
    """The most sent over a second while it ran (the target, or more: media besides)..."""
    delivered_bps: float = 0.0
    """... and the most that got through by a report: the verdict credits the greatest."""
    estimate_before: float = 0.0
    """The estimate at its start (`DownlinkEstimator.probe_failed` holds it if it fails)."""
    remb_before: float | None = None
    """The receiver's latest REMB at its start (None: none, or an old one): see
    `ProbePolicy.remb_fall`."""
    beside: bool = False
    """It pads on RTX beside a playing layer (`ProbeInputs.climbing`), whose losses no report
    counts: judged on the mean of the reports since it started (`loss_sum`, `loss_reports`),
    not the latest (the layer's reports about the probe's half second are averaged with the
    seconds around it: 7.5% then 3.5% when a quarter of the padding was dropped, where the
    latest alone passed it; the worst alone failed every probe on a link losing 3% at
    random). A probe on a paused stream's own padding is judged on the latest report, which
    counts its padding."""
    loss_sum: float = 0.0
    loss_reports: int = 0
    last_loss_at: float | None = None
    """The time of the last report counted in the mean."""
    failed_bps: float = math.inf
    """The lowest target that failed lately (`ProbePolicy.failed_memory_s`)..."""
    failed_at: float = -math.inf
    """... and when."""
    overflowed_bps: float = math.inf
    """The lowest target lately whose failure visibly overflowed the link (a queue, or the
    loss spike on a link with no random loss of its own), which an estimate that crept past
    it is not probed above and which ends doubling climbs (`probe_target`)..."""
    overflowed_at: float = -math.inf
    """... and when."""
    fast_start: bool = True
    """No probe has failed on this downlink yet: climbs go at `climb_factor` from any estimate,
    not only from `climb_min_bps` (as GCC probes at three and six times its start rate): a
    2 Mbit/s classroom spent its first 9 s on 180p, three probes a quarter apart from 275k.
    The first failure ends it; on a 300 kbit/s link that costs one probe's overflow, once."""

    @property
    def running(self) -> bool:
        """A probe is padding or awaiting its verdict."""
        return self.started_at is not None


@dataclass(frozen=True, slots=True)
class ProbeStep:
    """One tick's decision."""

    state: ProbeState
    verdict: ProbeVerdict
    pad_bps: float = 0.0
    """Padding to send until the next tick, bits per second."""
    carried_bps: float = 0.0
    """`PASSED`: what the probe showed the link carries."""
    why: str = ""
    """`FAILED`: which evidence failed it (`loss`, `rtt`, `remb`, `unknown`: no report)..."""
    overflowed: bool = False
    """... and whether that shows the link did not carry the target: a queue built (`rtt`,
    `remb`) or the loss reached `loss_spike`. A failure on the loss read after it alone
    (`loss_rise` over a half second's hundred packets) may be the link's random loss: a
    2 Mbit/s classroom with 1% loss failed a 648k probe at 3.1%."""


def probe_unsent(state: ProbeState, now: float, policy: ProbePolicy = ProbePolicy()) -> ProbeState:
    """The state after a probe that just started could not send its padding (the allocation
    resumed the paused stream in the same tick): no probe, and the next may start soon."""
    return _idle(state, now + policy.again_s, state.interval_s)


def probe_target(
    inputs: ProbeInputs,
    policy: ProbePolicy = ProbePolicy(),
    failed_bps: float = math.inf,
    fast_start: bool = False,
    overflowed_bps: float = math.inf,
) -> float:
    """Where a probe would aim now (see the module docstring); `failed_bps`: the lowest
    target that failed lately, which bounds it halfway from the estimate; `fast_start`: no
    probe failed yet (`ProbeState.fast_start`); `overflowed_bps`: the lowest that failed
    lately by overflowing the link (`ProbeState.overflowed_bps`)."""
    factor = policy.estimate_factor
    if (
        inputs.climbing
        and inputs.loss - inputs.loss_floor < policy.climb_loss_max
        and (inputs.estimate_bps >= policy.climb_min_bps or fast_start)
        and overflowed_bps == math.inf
    ):
        # not after an overflow lately: a 1 Mbit/s classroom with 3% loss doubled from 905k
        # to 1809k (28% lost), then halfway, 1311k (23.5% lost), and concealed 1.2% of its
        # audio; a quarter over the estimate overflows a link at its capacity far less
        factor = max(factor, policy.climb_factor)
    aim = max(inputs.estimate_bps * factor,
              inputs.carried_bps * policy.carried_share)  # fmt: skip
    aim = min(aim, inputs.wanted_bps * policy.wanted_margin, inputs.aim_max_bps)
    if inputs.estimate_bps < failed_bps < math.inf:
        aim = min(aim, (inputs.estimate_bps + failed_bps) / 2.0)
    if inputs.carried_bps < overflowed_bps <= inputs.estimate_bps:
        # an estimate that crept past a target that overflowed the link lately, which the
        # link has not carried since, is already beyond what the link showed: no probe above
        # it. A 1 Mbit/s classroom's climbing probe aimed at 1.9M from 1.19M, 10 s after
        # 1.19M had failed and with 1.05M the most carried, lost 59% of its second and froze
        # the video for 1.2 s; at 1.25 times instead, another's estimate crept to 1071k 14 s
        # after 1024k failed on its queue, with 898k the most carried: a probe to 1339k built
        # 109 ms of queue, concealed 90 ms of audio and dropped the video to 8 fps for half a
        # second. Not after a failure on loss alone, which may be the link's random loss (on
        # a 2 Mbit/s link losing 1%, a 549k probe failed at 3.9%).
        aim = min(aim, overflowed_bps)
    return aim


def _min_gain(inputs: ProbeInputs, target: float, policy: ProbePolicy) -> float:
    """How far above the estimate a probe to `target` must aim (`min_gain`,
    `reach_min_gain`)."""
    if inputs.climbing and target >= inputs.wanted_bps * policy.wanted_margin:
        return policy.reach_min_gain
    return policy.min_gain


def remb_fell(
    state: ProbeState, remb_bps: float | None, remb_at: float | None,
    policy: ProbePolicy = ProbePolicy(),
) -> bool:
    """Whether a REMB that came after the running probe started is below `remb_fall` of the
    one before it (see there)."""
    started_at, before = state.started_at, state.remb_before
    if started_at is None or before is None or remb_bps is None or remb_at is None:
        return False
    return remb_at > started_at and remb_bps < before * policy.remb_fall


def _remembered(bps: float, at: float, now: float, policy: ProbePolicy) -> float:
    """`bps`, remembered at `at`, while within `failed_memory_s` (inf after)."""
    return bps if now - at <= policy.failed_memory_s else math.inf


def failed_lately(state: ProbeState, now: float, policy: ProbePolicy = ProbePolicy()) -> float:
    """The lowest target that failed within `failed_memory_s` (inf: none)."""
    return _remembered(state.failed_bps, state.failed_at, now, policy)


def overflowed_lately(
    state: ProbeState, now: float, policy: ProbePolicy = ProbePolicy()
) -> float:
    """The lowest target that overflowed the link within `failed_memory_s` (inf: none)."""
    return _remembered(state.overflowed_bps, state.overflowed_at, now, policy)


def _idle(state: ProbeState, next_at: float, interval_s: float) -> ProbeState:
    """No probe running: the next from `next_at`, remembering what failed."""
    return ProbeState(
        next_at=next_at,
        interval_s=interval_s,
        failed_bps=state.failed_bps,
        failed_at=state.failed_at,
        overflowed_bps=state.overflowed_bps,
        overflowed_at=state.overflowed_at,
        fast_start=state.fast_start,
    )


def probe_step(
    state: ProbeState, inputs: ProbeInputs, now: float, policy: ProbePolicy = ProbePolicy()
) -> ProbeStep:
    """Start, continue or judge a padding probe."""
    if state.started_at is not None:
        return _running(state, inputs, now, policy)
    target = probe_target(
        inputs, policy, failed_lately(state, now, policy), state.fast_start,
        overflowed_lately(state, now, policy),
    )  # fmt: skip
    fresh = inputs.loss_at is not None and now - inputs.loss_at <= policy.loss_stale_s
    loss = inputs.loss if fresh else 0.0
    if (
        now < state.next_at
        or not inputs.can_pad
        or inputs.busy
        or not inputs.rtt_settled
        or loss >= policy.loss_max
        or target < inputs.estimate_bps * _min_gain(inputs, target, policy)
        or target <= inputs.spent_bps
    ):
        return ProbeStep(state, ProbeVerdict.IDLE)
    started = replace(
        state,
        started_at=now,
        target_bps=target,
        # a stale reading is no baseline: judge against at most `loss_max` (a link's own
        # random loss must not fail the probe)
        loss_before=loss if fresh else min(inputs.loss, policy.loss_max),
        estimate_before=inputs.estimate_bps,
        beside=inputs.climbing,
        rtt_before_s=inputs.rtt_sample_s,
        remb_before=(
            inputs.remb_bps
            if inputs.remb_at is not None and now - inputs.remb_at <= policy.loss_stale_s
            else None
        ),
        sent_bps=0.0,
        delivered_bps=0.0,
        loss_sum=0.0,
        loss_reports=0,
    )
    return ProbeStep(started, ProbeVerdict.STARTED, pad_bps=target - inputs.spent_bps)


def _running(
    state: ProbeState, inputs: ProbeInputs, now: float, policy: ProbePolicy
) -> ProbeStep:
    started_at = state.started_at
    assert started_at is not None
    elapsed = now - started_at
    if elapsed > 0:  # the first tick's rates predate the padding
        state = replace(
            state,
            sent_bps=max(state.sent_bps, inputs.sent_bps),
            delivered_bps=max(state.delivered_bps, inputs.delivered_bps),
        )
    # only readings since the start are about the probe (the loss window restarted with it)
    reported = inputs.loss_at is not None and inputs.loss_at > started_at
    loss = 0.0
    if reported:
        if inputs.loss_at != state.last_loss_at:  # a new report (a tick may repeat the last)
            state = replace(
                state,
                loss_sum=state.loss_sum + inputs.loss,
                loss_reports=state.loss_reports + 1,
                last_loss_at=inputs.loss_at,
            )
        mean = state.loss_sum / state.loss_reports if state.loss_reports else inputs.loss
        loss = mean if state.beside else inputs.loss
    before, peak = state.rtt_before_s, inputs.rtt_sample_s
    if before is not None and inputs.rtt_floor_s is not None:
        # a probe that started on a queue still draining (a subscriber's first seconds, its
        # RTT floor learned in that queue) is judged against the floor seen since: on a 300
        # kbit/s classroom one started at 243 ms, its samples fell to 97 ms around a 159 ms
        # peak, it passed, and its 352k paused the video 4 s later
        before = min(before, inputs.rtt_floor_s)
    rtt_rose = before is not None and peak is not None and peak > before + policy.rtt_rise_s
    # RTT samples since the start (`peak`: None if none came) that stayed at their level: no
    # queue built, the loss is the link's random loss
    quiet = random_loss_only(
        state.loss_before, before, peak, policy.random_loss_min, policy.quiet_rtt_s
    )
    fell = remb_fell(state, inputs.remb_bps, inputs.remb_at, policy)
    queued = rtt_rose or fell
    due = elapsed >= policy.duration_s + policy.judge_after_s
    judged = due and reported
    overdue = elapsed >= policy.duration_s + policy.judge_after_s + policy.judge_grace_s
    unknown = overdue and not reported
    rise = policy.quiet_loss_rise if quiet else policy.loss_rise
    failed_at = max(policy.loss_floor, state.loss_before + rise)
    # a spike on such a link is a spike above its own loss (a 6% link read 10.9% once, and
    # the probe that failed on it held the next ones off for 30 s)
    spike = max(policy.loss_spike, failed_at) if quiet else policy.loss_spike
    overflowed = queued or loss >= spike
    if overflowed or unknown or (judged and loss >= failed_at):
        interval = state.interval_s
        failed = _idle(state, now + interval, min(interval * 2.0, policy.interval_max_s))
        # the link did not carry the target (a queue, a spike, or loss with the RTT risen):
        # the next probes aim below it. A probe without any report is no such evidence (on a
        # 2 Mbit/s classroom's 180p, no loss reading came within its 2.5 s; remembered, that
        # 576k held every climbing probe off for 30 s, at 180p), nor is a loss failure with
        # the RTT where it started (no queue built, `quiet_rtt_s`; the sender report behind
        # the padding measures its queue): random loss read on a clean start (on a 2 Mbit/s
        # classroom with 3% loss, a 758k probe started on a 0.0% reading failed at 3.2%, RTT
        # 6-8 ms; remembered, it held every probe off for 30 s and the classroom on 360p)
        rtt_quiet = rtt_stayed(before, peak, policy.quiet_rtt_s)
        if overflowed or not (unknown or rtt_quiet):
            failed = replace(
                failed,
                failed_bps=min(failed_lately(state, now, policy), state.target_bps),
                failed_at=now,
                fast_start=False,
            )
        # what holds the climb back (`overflowed_bps`) is a queue, or a spike on a link that
        # loses nothing of its own: a link losing 6% at random reads 10-15% now and then,
        # which says nothing of the probe's target
        if queued or (loss >= spike and state.loss_before < policy.random_loss_min):
            failed = replace(
                failed,
                overflowed_bps=min(overflowed_lately(state, now, policy), state.target_bps),
                overflowed_at=now,
            )
        why = "rtt" if rtt_rose else "remb" if fell else "unknown" if unknown else "loss"
        return ProbeStep(failed, ProbeVerdict.FAILED, why=why, overflowed=overflowed)
    if judged:
        passed = _idle(state, now + policy.again_s, policy.interval_s)
        if state.target_bps >= passed.failed_bps:  # the link carries what failed before
            passed = replace(passed, failed_bps=math.inf, failed_at=-math.inf)
        if state.target_bps >= passed.overflowed_bps:
            passed = replace(passed, overflowed_bps=math.inf, overflowed_at=-math.inf)
        # the link took the target for the probe's duration and lost `loss` of it (the sent
        # and delivered meters, a second long, read a half-second probe at about half)
        carried = max(state.target_bps, state.sent_bps) * (1.0 - loss)
        carried = max(carried, state.delivered_bps)
        return ProbeStep(passed, ProbeVerdict.PASSED, carried_bps=carried)
    if elapsed < policy.duration_s and inputs.can_pad:
        pad = max(state.target_bps - inputs.spent_bps, 0.0)
        return ProbeStep(state, ProbeVerdict.PADDING, pad_bps=pad)
    return ProbeStep(state, ProbeVerdict.WAITING)
