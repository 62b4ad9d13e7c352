"""Priorities inside one subscriber's downlink budget: what each incoming track may use.

Order: every audio track first, teacher or doctor audio before other audio, and never cut
(audio is what must survive); when the link is lossy and the subscriber negotiated
`red/48000/2`, audio goes with RED redundancy and its extra cost is counted. Then the screen
share, then the speaker's (or spotlighted) video, then other classrooms' video. Video tracks
of one class split what is left equally; what a class does not use passes to the next one,
except that a screen share leaves the camera after it its cheapest picture when the budget
holds both (slides at a few frames a second, and the teacher's face).
Each video track's rung comes from `rung.decide` with its share as the estimate, so every
track keeps its own hysteresis across calls. Probes are the subscriber's, not the track's:
one at a time, none while the allocation already tests the estimate or a paused track is about
to resume, none that would take the whole above the estimate, and the loss a probe causes is
its own (the other tracks count it as their loss step rather than falling with it).
The budget is the estimate less what the relay sends besides the tracks' costs
(`unaccounted_bps`: retransmissions, heartbeats, costs lagging a publisher that ramps up);
while more than the whole estimate goes out into a queue, a track short of its cost steps down
at once.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from media.adapt.estimator import EstimateBound, LinkEstimate
from media.adapt.rung import (
    Rung,
    RungCosts,
    RungDecision,
    RungPolicy,
    RungReason,
    decide,
    half_low,
)
from media.rtp.red import red_wanted


class Priority(enum.IntEnum):
    """Priority classes, most important first."""

    LEAD_AUDIO = 0
    """The teacher's or the doctor's microphone."""
    AUDIO = 1
    """Any other microphone (a classroom called on, the clinic)."""
    SCREEN = 2
    """A shared screen (slides must stay legible: give it no low rendition)."""
    SPEAKER_VIDEO = 3
    """The speaker's or the spotlighted classroom's camera."""
    OTHER_VIDEO = 4
    """Every other camera (the teacher's grid of classrooms)."""


AUDIO_PRIORITIES = frozenset({Priority.LEAD_AUDIO, Priority.AUDIO})


@dataclass(frozen=True, slots=True)
class IncomingTrack:
    """One track the subscriber receives, with what it costs."""

    track_id: str
    """The forwarder's id for this subscriber's copy of the track."""
    priority: Priority
    """Its priority class."""
    audio_bps: float = 0.0
    """Audio: the measured Opus bitrate, without RED."""
    costs: RungCosts | None = None
    """Video: the measured costs of the publisher's layers and low rendition."""

    @property
    def is_audio(self) -> bool:
        """True for a microphone track."""
        return self.priority in AUDIO_PRIORITIES


@dataclass(frozen=True, slots=True)
class BudgetPolicy:
    """Constants of the allocation; the defaults are what the relay uses."""

    red_on_above: float = 0.01
    """Turn RED on when loss exceeds this (at 2%, a 2 Mbit/s link losing 1% at random went
    without it: the classroom concealed 1.5% of the audio, a direct call 1.1%)."""
    red_off_below: float = 0.005
    """Turn RED off again only when loss falls below this (hysteresis)."""
    red_extra: float = 0.5
    """Extra cost of RED as a share of the measured audio bitrate: one redundant copy doubles
    the Opus payload, not the packet overhead counted in the rate (about half of it at 50
    packets a second)."""
    red_hold_s: float = 15.0
    """RED stays on this long after the loss last exceeded `red_on_above`: random loss on a
    village link dips below `red_off_below` for a few seconds at a time, and each switch costs
    the packets lost before it comes back..."""
    red_congestion_hold_s: float = 3.0
    """... but only this long when that loss was read within `red_congestion_s` of a report of
    congestion (`LinkEstimate.congested_at`): an overflow the estimate answers, not the link's
    own loss, which goes on being read after it. Half again the audio's rate, held 15 s after
    one overflow on a loss-free 300 kbit/s link (74k of audio beside a 180p sharing 232k), kept
    the 180p at 15 fps where 30 fps fitted without it."""
    red_congestion_s: float = 3.0
    """See `red_congestion_hold_s`: the loss window (2 s) still holds an overflow's loss for a
    report or two after the congestion."""
    probe_spent_max: float = 0.85
    """No probe starts while the allocation spends, or the relay sends, more than this share of
    the estimate: what is sent then tests the estimate, which rises by itself if the link
    allows (a receiver's REMB grows with what it receives). Probes are for an estimate held
    down by sending little (audio only, a low rung); they do not stack on proven rungs
    either."""
    camera_reserve: bool = True
    """While a camera is also received, the screen share leaves it enough for its cheapest
    picture (the low rendition, or the base layer) when the budget allows both: slides stay
    legible at a few frames a second, and the teacher's face keeps some video."""
    app_limited_share: float = 0.6
    """A loss-bound estimate that the relay sends less than this share of is limited by what
    it sends (`rung.decide`'s `app_limited`)."""
    unaccounted_max: float = 0.25
    """What the relay sends beyond the allocation's costs is left out of the budget up to this
    share of the estimate (`unaccounted_bps`)."""
    rung: RungPolicy = field(default_factory=RungPolicy)
    """Policy of each video track's rung decision."""


@dataclass(frozen=True, slots=True)
class TrackAllocation:
    """What one track gets."""

    track_id: str
    """The track."""
    priority: Priority
    """Its priority class."""
    share_bps: float
    """The budget this track was offered (what the higher classes left, split in its class)."""
    cost_bps: float
    """What it will use: audio with RED if on, or the chosen rung's cost."""
    decision: RungDecision | None
    """Video: the rung decision (pass it back through `previous`); None for audio."""

    @property
    def rung(self) -> Rung | None:
        """Video: the rung; None for audio, which is always forwarded."""
        return self.decision.rung if self.decision is not None else None


@dataclass(frozen=True, slots=True)
class Allocation:
    """The allocation of one subscriber's budget at one moment."""

    tracks: tuple[TrackAllocation, ...]
    """Every track, most important first."""
    red: bool
    """Whether audio goes with RED redundancy."""
    estimate_bps: float
    """The estimate that was divided."""
    spent_bps: float
    """Total cost of what was allocated."""
    reason: str
    """One human-readable line: what each class got and why (logs, operator dashboard)."""
    lossy_at: float | None = None
    """When the loss last exceeded `red_on_above` while RED was on (its hold)."""
    unaccounted_bps: float = 0.0
    """What was left out of the estimate for what is sent besides the tracks' costs."""

    @property
    def rung_probe_running(self) -> bool:
        """Whether one of the tracks is probing a rung (the subscriber's one probe)."""
        return any(
            t.decision is not None and t.decision.probe_until is not None for t in self.tracks
        )

    @property
    def resuming(self) -> bool:
        """Whether a paused video track has a rung in reach and waits out the hold before
        resuming: the estimate already covers it, and a padding probe now would only risk
        the link (one overflowed weak's, and the receiver's REMB fell to half)."""
        return any(
            t.decision is not None
            and t.decision.video_paused
            and t.decision.surplus_since is not None
            for t in self.tracks
        )

    def of(self, track_id: str) -> TrackAllocation | None:
        """The allocation of `track_id`, or None when it is not a track of this subscriber."""
        for track in self.tracks:
            if track.track_id == track_id:
                return track
        return None


def unaccounted_bps(
    sent_bps: float, spent_bps: Sequence[float], estimate_bps: float, policy: BudgetPolicy
) -> float:
    """What the relay sends beyond what the allocations of the last second cost (`spent_bps`,
    the sent meter's window): retransmissions, paused streams' heartbeats, and the lag of the
    smoothed costs behind a publisher that ramps up. It takes the same link, so the budget
    leaves it out, up to `unaccounted_max` of the estimate. On weak, 510k went out for an
    allocation of 440k under a 410k estimate: the slides held full while the camera paused."""
    if not spent_bps:
        return 0.0
    extra = max(sent_bps - max(spent_bps), 0.0)
    return min(extra, estimate_bps * policy.unaccounted_max)


def allocate(
    link: LinkEstimate,
    tracks: Sequence[IncomingTrack],
    previous: Allocation | None,
    now: float,
    policy: BudgetPolicy = BudgetPolicy(),
    *,
    red_negotiated: bool = True,
    padding_probe: bool = False,
    probe_loss: bool = False,
    unaccounted: float = 0.0,
    resume_probe_max_bps: float = math.inf,
    padding_climbs: frozenset[str] = frozenset(),
) -> Allocation:
    """Divide `link.bps` among `tracks` by priority; `previous` carries each track's hysteresis
    (tracks it does not know start fresh; tracks gone are forgotten). `padding_probe`: a
    padding probe runs (`media.adapt.bandwidth_probe`), which counts as the subscriber's one probe
    (no rung probe starts, and a loss spike is the probe's); `probe_loss`: the loss reading
    is still one a padding probe's overflow made (neither turns RED on). `unaccounted`: what is sent
    besides the tracks' costs (`unaccounted_bps`), left out of the budget.
    `resume_probe_max_bps`: a paused video is not probed back when what is sent now plus its
    cheapest picture would reach this (the subscriber's adaptation knows: what a padding
    probe failed to carry lately, or nothing after a failed probe back until padding passes;
    on a 150 kbit/s classroom each such rung probe played 2 s of 2 fps video every 8 s,
    where the padding alone costs no picture).
    `padding_climbs`: the tracks whose next step up is proven by padding probes (a simulcast
    layer below the top one, with RTX to carry them), so no rung probe starts for them: a
    rung probe tests the next layer with its picture, and on a 500 kbit/s classroom with 3%
    loss each such probe of 360p (403-450k beside 74k of audio, on an estimate a REMB held
    at 540k) lost 24-40% of its second, the audio with it; the padding probe that fails
    there costs no picture, and the step comes once one passes (`padding_probe_passed`)."""
    # a padding probe's loss is its own padding's overflow, not the link's: no RED for it
    # (turned on by a failed probe on a 300 kbit/s classroom, RED's 25k more paused its 180p)
    loss = 0.0 if padding_probe or probe_loss else link.loss
    red, lossy_at = red_state(loss, previous, now, policy, red_negotiated, link.congested_at)
    remaining = link.bps - unaccounted
    allocated: list[TrackAllocation] = []
    ordered = sorted(tracks, key=lambda t: t.priority)
    for track in ordered:
        if not track.is_audio:
            continue
        cost = track.audio_bps * (1.0 + policy.red_extra if red else 1.0)
        allocated.append(TrackAllocation(track.track_id, track.priority, remaining, cost, None))
        remaining -= cost
    audio_over = remaining < 0
    remaining = max(remaining, 0.0)

    video_priorities = sorted({t.priority for t in ordered if not t.is_audio})
    # one probe at a time; a loss spike while one runs is the probe's: it alone steps back, and
    # the other tracks count it as their loss step (they wait before reacting to it again)
    rung_probing = previous is not None and previous.rung_probe_running
    probing = padding_probe or rung_probing
    probe_spike = probing and link.loss >= policy.rung.loss_spike
    # what goes out exceeds the whole estimate and the RTT says the link queues it: a track
    # short of its cost steps down at once (at the start on weak, while the publisher's rates
    # rose, 517-579k went out under a 420k estimate for the second the shortfall waited, and
    # the overflow paused everything). On a good link a receiver's REMB trails what it gets
    # by design, without a queue: there the shortfall waits as before. Nor is a link without
    # an RTT sample yet, and without loss, known to queue: an aiortc subscriber's first
    # reports carry no LSR, and a healthy loopback one, sent its first keyframes a little
    # over the estimate the first report gave, went from full to low at once
    queued = link.rtt_s > 0.0 and not link.rtt_settled
    overfull = (
        not probing
        and link.bound is not EstimateBound.INITIAL
        and not link.rtt_settled
        and (queued or link.loss >= policy.rung.probe_loss_floor)
        and link.sent_bps > link.bps * (1.0 + policy.rung.shortfall_tolerance)
    )
    # nor while what is allocated, or what is actually sent (retransmissions and headers
    # besides the rungs' costs), already tests the estimate (video, that is: with every video
    # paused, audio over an estimate cut low must not block the only way back up). On weak,
    # the slides probed full from 423k allocated of a 498k estimate while 440k went out, and
    # the overflow paused the camera for 4.5 s
    crowded = (
        previous is not None
        and max(previous.spent_bps, link.sent_bps) > link.bps * policy.probe_spent_max
        and any(t.decision is not None and t.cost_bps > 0 for t in previous.tracks)
    )
    # nor while a paused track is about to resume within the estimate: that tests the link,
    # and the probe's two seconds (with every other track held) would delay it
    crowded = crowded or (previous is not None and previous.resuming)
    # the estimate is limited by what is sent, not by the link (see `decide`)
    app_limited = (
        link.bound is EstimateBound.LOSS
        and link.rtt_settled
        and link.sent_bps < link.bps * policy.app_limited_share
    )
    probe_started = probe_failed = False
    # an estimate that is a policy ceiling (a data budget, a bandwidth the subscriber
    # declared) has nothing above it for a rung probe to find: a rung comes only with the
    # up margin (a 360p layer probed into a 350k declared cap's last 10% lost a third of it)
    ceiling_binds = link.ceiling_bps is not None and link.bps >= link.ceiling_bps
    for priority in video_priorities:
        in_class = [t for t in ordered if t.priority == priority]
        share = remaining / len(in_class)
        limit = math.inf
        last = priority == video_priorities[-1]
        if priority is Priority.SCREEN and not last and policy.camera_reserve:
            after = video_priorities[video_priorities.index(priority) + 1]
            cameras = [t for t in ordered if t.priority == after]
            capped = _screen_share(share, remaining, in_class, cameras, policy)
            if capped < share:
                share = limit = capped
        if link.ceiling_bps is not None:
            # the data budget's cap is policy, not the link: no probe or proven hold above it
            limit = min(limit, share + max(link.ceiling_bps - link.bps, 0.0) / len(in_class))
        for track in in_class:
            costs = track.costs if track.costs is not None else RungCosts(())
            before = previous.of(track.track_id) if previous is not None else None
            prior = before.decision if before is not None else None
            bystander = probe_spike and (prior is None or prior.probe_until is None)
            # a loss reading older than this track's last loss step is the one it answered
            stale = (
                prior is not None
                and prior.last_loss_step_at is not None
                and (link.loss_at is None or link.loss_at <= prior.last_loss_step_at)
            )
            loss = link.loss
            if bystander or stale:
                loss = min(loss, policy.rung.loss_spike * 0.99)
            if stale and prior is not None and prior.video_paused:
                # the reading that paused it says nothing about the link since: with only
                # audio and slow slides sent, a new one took 5 s on weak, and the camera
                # stayed paused that long under an estimate that covered it twice over
                loss = min(loss, policy.rung.up_loss_max * 0.99)
            track_share, track_limit = share, limit
            if rung_probing and prior is not None and prior.probe_until is None:
                # another track's rung probe runs: what it takes above its rung, and the
                # estimate's fall while the link queues it, are its test, not this track's
                # shortfall (the camera was paused for 3.5 s on weak while the slides probed
                # full). Hold the rung until the verdict: no step down on the share, none up
                track_share = max(share, prior.cost_bps)
                track_limit = min(limit, prior.cost_bps)
            # a probe tests the link above what the estimate gives one track, not above the
            # whole estimate: the slides probing full (+133k) beside the camera's 15 fps took a
            # 500k link to 554k under a 529k REMB, and loss reached 37%
            probe_room = math.inf
            if previous is not None and prior is not None:
                others = previous.spent_bps - prior.cost_bps
                probe_room = link.bps - unaccounted - others
            hopeless = (
                prior is not None
                and prior.video_paused
                and previous is not None
                and previous.spent_bps + _cheapest_video(costs) >= resume_probe_max_bps
            )
            decision = decide(
                track_share,
                loss,
                link.rtt_s,
                costs,
                prior,
                now,
                policy.rung,
                track_limit,
                may_probe=not (
                    probing or crowded or probe_started or ceiling_binds or hopeless
                    or track.track_id in padding_climbs
                ),
                overfull=overfull,
                probe_room_bps=probe_room,
                guessed=link.bound is EstimateBound.INITIAL,
                app_limited=app_limited,
            )
            if bystander:
                decision = replace(decision, last_loss_step_at=now)
            probe_started = probe_started or (
                decision.switched and decision.reason is RungReason.PROBE
            )
            probe_failed = probe_failed or (
                decision.switched and decision.reason is RungReason.PROBE_FAILED
            )
            allocated.append(
                TrackAllocation(track.track_id, priority, share, decision.cost_bps, decision)
            )
            # a screen share over its capped share (its cost rose, and its shortfall waits
            # out `down_after_s`) does not take the camera's reserve: the camera went from
            # full to paused on weak while the slides held full 10% over their share
            remaining -= min(decision.cost_bps, share) if limit < math.inf else decision.cost_bps
        remaining = max(remaining, 0.0)

    if probe_failed:  # the loss that failed it is the probe's: the others wait before reacting
        allocated = [
            replace(t, decision=replace(t.decision, last_loss_step_at=now))
            if t.decision is not None and t.decision.reason is not RungReason.PROBE_FAILED
            else t
            for t in allocated
        ]
    spent = sum(t.cost_bps for t in allocated)
    return Allocation(
        tracks=tuple(allocated),
        red=red,
        estimate_bps=link.bps,
        spent_bps=spent,
        reason=_reason(link, allocated, red, audio_over, unaccounted),
        lossy_at=lossy_at,
        unaccounted_bps=unaccounted,
    )


def _screen_share(
    share: float,
    remaining: float,
    screens: list[IncomingTrack],
    cameras: list[IncomingTrack],
    policy: BudgetPolicy,
) -> float:
    """A screen share's budget while cameras wait for what it leaves: what remains once the
    dearest camera's cheapest picture is set aside, but never less than the screen's own
    cheapest rung (a paused screen helps nobody), nor more than its split of the budget."""
    headroom = policy.rung.headroom
    reserve = max((_cheapest_video(t.costs) for t in cameras if t.costs), default=0.0)
    cheapest = max((_cheapest_video(t.costs) for t in screens if t.costs), default=0.0)
    capped = (remaining - reserve / headroom) / len(screens)
    return min(share, max(capped, cheapest / headroom))


def _cheapest_video(costs: RungCosts) -> float:
    """What the cheapest rung that still sends video costs (0 when there is none)."""
    ladder = costs.ladder()
    return costs.cost(ladder[-2]) if len(ladder) > 1 else 0.0


def red_state(
    loss: float,
    previous: Allocation | None,
    now: float,
    policy: BudgetPolicy,
    negotiated: bool = True,
    congested_at: float | None = None,
) -> tuple[bool, float | None]:
    """Whether audio goes with RED, and since when the link was last lossy enough for it:
    the loss thresholds of `red.red_wanted`, plus `red_hold_s` after the last lossy moment
    (`red_congestion_hold_s` when that loss came with the congestion at `congested_at`)."""
    if not negotiated:
        return False, None
    was_on = previous is not None and previous.red
    lossy_at = previous.lossy_at if previous is not None else None
    if loss > policy.red_on_above:
        lossy_at = now
    on = red_wanted(loss, was_on, policy.red_on_above, policy.red_off_below)
    hold = policy.red_hold_s
    if (
        lossy_at is not None
        and congested_at is not None
        and 0.0 <= lossy_at - congested_at <= policy.red_congestion_s
    ):
        hold = policy.red_congestion_hold_s
    if not on and was_on and lossy_at is not None and now - lossy_at < hold:
        on = True
    return on, lossy_at if on else None


def _reason(
    link: LinkEstimate,
    allocated: list[TrackAllocation],
    red: bool,
    audio_over: bool,
    unaccounted: float = 0.0,
) -> str:
    """E.g. `estimate 450k loss 3.0%: audio 40k+RED; screen full; speaker low; other 2 paused`
    (`estimate 450k-60k` when 60k are sent besides the tracks' costs)."""
    parts: list[str] = []
    audio = [t for t in allocated if t.decision is None]
    if audio:
        text = f"audio {_kbit(sum(t.cost_bps for t in audio))}" + ("+RED" if red else "")
        parts.append(text + (" over budget" if audio_over else ""))
    names = {
        Priority.SCREEN: "screen",
        Priority.SPEAKER_VIDEO: "speaker",
        Priority.OTHER_VIDEO: "other",
    }
    for priority, name in names.items():
        rungs = [_rung_text(t.decision) for t in allocated if t.priority == priority and t.decision]
        if not rungs:
            continue
        counted = sorted({r: rungs.count(r) for r in rungs}.items())
        parts.append(f"{name} " + ", ".join(r if n == 1 else f"{n} {r}" for r, n in counted))
    less = f"-{_kbit(unaccounted)}" if unaccounted >= 500 else ""
    head = f"estimate {_kbit(link.bps)}{less} loss {link.loss * 100:.1f}%"
    return head + ": " + "; ".join(parts) if parts else head


def _rung_text(decision: RungDecision) -> str:
    if decision.rung is Rung.AUDIO_ONLY:
        return "paused"
    if decision.rung is Rung.REDUCED_FPS or half_low(decision.choice):
        return f"{decision.rung}/{decision.temporal_layers}"  # fewer frames: how many layers
    return str(decision.rung)


def _kbit(bps: float) -> str:
    return f"{bps / 1000:.0f}k"
