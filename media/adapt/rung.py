"""Which rung of one video track a subscriber receives: the pure decision, with hysteresis.

Rungs, best first: `full` (every temporal layer), `reduced_fps` (VP8 temporal layers dropped:
`temporal_layers=2` is 15 fps and `temporal_layers=1` is 7.5 fps of an L1T3 publisher; the
7.5 fps state is a sub-state of `reduced_fps`, not a public rung of its own), `low` (the shared
~320x180 transcoded rendition of the publisher) and `audio_only` (video paused, the client told
why). Metrics and the protocol use exactly these four names plus `temporal_layers`.

`decide` is a function of its inputs and of the previous decision, which carries every timer
the hysteresis needs; the clock is passed in.
- Down is fast: a shortfall (estimate below the cost by more than a tolerance) sustained for
  `down_after_s` (at once while the subscriber is sent more than its estimate into a queue:
  `overfull`), or at once on a loss spike (which pauses the video only when the loss says
  the link overflowed, or the share no longer covers the cheapest video).
- Up is slow: the estimate must exceed a better rung's cost by `up_margin` for `up_hold_s`.
  A step up that fails (a step down within `failed_up_window_s`) sets a ceiling at the rung it
  reached; steps up to the ceiling or beyond then wait twice as long (and probes of it come
  twice as rarely), doubling on each failure, until one of them lasts. A failed probe only
  makes probes rarer.
- An estimate limited by what we send (audio only, or a low rung far below the next) cannot
  show that the link recovered, so the next rung up is probed: kept if loss has not risen
  (`probe_loss_rise`) after `probe_s`, abandoned on a loss spike. The link's own random loss
  (3-5% on a village link, which RED, FEC and NACK cover) neither prevents probes nor fails
  them.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace


class Rung(enum.StrEnum):
    """The public rung names (metric label `rung`, protocol field `rung`)."""

    FULL = "full"
    REDUCED_FPS = "reduced_fps"
    LOW = "low"
    AUDIO_ONLY = "audio_only"


class RungReason(enum.StrEnum):
    """Why the current rung was chosen (protocol field `reason`)."""

    START = "start"
    """First decision for this subscriber and track."""
    SHORTFALL = "shortfall"
    """The estimate stayed below the rung's cost for `down_after_s`."""
    LOSS = "loss"
    """A loss spike (at or above `loss_spike`)."""
    RECOVERED = "recovered"
    """The estimate exceeded a better rung's cost by the margin for the hold time."""
    PROBE = "probe"
    """Trying the next rung up to learn whether the link carries it."""
    PROBE_OK = "probe_ok"
    """The probe ended with low loss: the rung is kept."""
    PROBE_FAILED = "probe_failed"
    """The probe met a loss spike: back to the rung before it."""
    UNAVAILABLE = "unavailable"
    """The previous rung no longer exists (publisher's layers or low rendition changed)."""


@dataclass(frozen=True, slots=True)
class RungChoice:
    """One step of a track's ladder."""

    rung: Rung
    """Public rung name."""
    temporal_layers: int
    """Temporal layers forwarded from the publisher (all of them for `full`, fewer for
    `reduced_fps`); 0 for `low` and `audio_only`, where the publisher's stream is not sent.
    A `low` that is a simulcast track's lowest layer (`RungCosts.low_forwarded`) may also be
    that layer without its top temporal layer (half its frame rate, `RungCosts.low_layer_bps`)."""


AUDIO_ONLY = RungChoice(Rung.AUDIO_ONLY, 0)
LOW = RungChoice(Rung.LOW, 0)


def half_low(choice: RungChoice) -> bool:
    """Whether `choice` is a simulcast track's lowest layer at half its frames (a `low` with
    temporal layers, `RungCosts.low_layer_bps`)."""
    return choice.rung is Rung.LOW and choice.temporal_layers > 0


LOW_RUNG_NOMINAL_BPS = 110_000.0
"""Cost to assume for the low rendition before it runs and can be measured."""


@dataclass(frozen=True, slots=True)
class RungCosts:
    """Measured bitrates of what a publisher's video track offers, so rungs compare to reality."""

    layer_bps: tuple[float, ...]
    """Bitrate of each temporal layer alone, base (TID 0) first; one entry when the publisher
    sends no temporal layers (the whole stream)."""
    low_bps: float | None = None
    """Bitrate of the shared low rendition (`LOW_RUNG_NOMINAL_BPS` until it runs), or None when
    this track has none (a screen share: slides must stay legible, so it only drops frames)."""
    low_forwarded: bool = False
    """The `low` rung is a layer the publisher sends (a simulcast track's lowest,
    `media.adapt.spatial`), forwarded at no server CPU, not a transcoded rendition."""
    low_floor_bps: float | None = None
    """The least the `low` rung can be brought to: a simulcast track's lowest layer whose
    ceiling follows its subscribers down (`media.adapt.dynacast`) costs what it is sent now
    only until its ceiling comes down; None: what it costs now is all it can cost."""
    top_floor_bps: float | None = None
    """The least the `full` rung can be brought to: a simulcast track's highest layer whose
    ceiling follows its subscribers' budgets (`media.adapt.dynacast.top_ceiling`) down to
    its floor; None: what it costs now is all it can cost. A 1 Mbit/s classroom whose link
    overflowed on 360p at 992k, its estimate backed off to 880k, went to 180p for 7 s on the
    shortfall of 360p's measured 748k, where a direct call keeps its picture and lowers its
    bitrate."""
    low_layer_bps: tuple[float, ...] = ()
    """A forwarded `low`'s own temporal layers (base first), when it has two or more: the
    ladder then steps from it to it at half its frame rate before audio only (`ladder`)."""

    @classmethod
    def single_layer(cls, full_bps: float, low_bps: float | None = None) -> RungCosts:
        """Costs of a stream without temporal layers."""
        return cls((full_bps,), low_bps)

    @property
    def full_bps(self) -> float:
        """Bitrate of the whole stream."""
        return sum(self.layer_bps)

    def cost(self, choice: RungChoice) -> float:
        """Bits per second `choice` sends to the subscriber."""
        if choice.rung is Rung.AUDIO_ONLY:
            return 0.0
        if choice.rung is Rung.LOW:
            if half_low(choice) and self.low_layer_bps:
                return sum(self.low_layer_bps[: choice.temporal_layers])
            return self.low_bps if self.low_bps is not None else LOW_RUNG_NOMINAL_BPS
        return sum(self.layer_bps[: choice.temporal_layers])

    def least_cost(self, choice: RungChoice) -> float:
        """What `choice` can be brought to cost (`low_floor_bps`), else its cost: whether a
        subscriber can stay on it is judged on this (a 180p whose ceiling follows the
        classroom down is no reason to pause it; a loss spike at 500 kbit/s with 3% loss
        paused it for 5 s, 279k against its 284k)."""
        cost = self.cost(choice)
        if choice.rung is Rung.FULL and self.top_floor_bps is not None:
            return min(cost, self.top_floor_bps)
        if choice.rung is Rung.LOW and self.low_floor_bps is not None:
            whole = self.cost(LOW)
            share = cost / whole if half_low(choice) and whole > 0 else 1.0
            return min(cost, self.low_floor_bps * share)
        return cost

    def ladder(self) -> tuple[RungChoice, ...]:
        """Every choice this track offers, best first; `audio_only` is always last. The low
        rendition is a step only while it costs less than the publisher's cheapest layers: a
        base layer at 7.5 fps of 80k is a better step down than a 110k low rung, which also
        stops the picture while the transcoder starts (a 2.3 s freeze on weak)."""
        layers = max(1, len(self.layer_bps))
        steps = [RungChoice(Rung.FULL, layers)]
        steps += [RungChoice(Rung.REDUCED_FPS, n) for n in range(layers - 1, 0, -1)]
        if self.low_bps is not None and self.cost(LOW) < self.cost(steps[-1]):
            steps.append(LOW)
            if self.low_forwarded and len(self.low_layer_bps) >= 2:
                # the lowest layer at half its frame rate, where its whole no longer fits: a
                # 300 kbit/s classroom whose 180p (218k beside 49k of audio) overflowed the
                # link went to audio only, where a direct call plays 15-30 fps at ~190k. Not
                # at a quarter (7.5 fps): under the 10 fps of a moving picture, it is the
                # stream "mostly lost" that audio only is there to spare (on a 150 kbit/s
                # link, 0.6-0.9 fps with 6-8 s freezes between pauses)
                steps.append(RungChoice(Rung.LOW, len(self.low_layer_bps) - 1))
        steps.append(AUDIO_ONLY)
        return tuple(steps)


@dataclass(frozen=True, slots=True)
class RungPolicy:
    """Thresholds and times of the hysteresis; the defaults are what the relay uses."""

    headroom: float = 0.85
    """A rung chosen on the way down (or at start) must cost at most this share of the
    estimate, leaving room for audio jitter and retransmissions."""
    shortfall_tolerance: float = 0.10
    """A shortfall is the estimate below the rung's cost by more than this share; smaller
    gaps are noise (a real overflow shows as loss and is handled by `loss_spike`)."""
    down_after_s: float = 1.0
    """A shortfall sustained this long steps down."""
    loss_spike: float = 0.10
    """Loss at or above this steps down at once (GCC's loss controller threshold)..."""
    loss_pause_above: float = 0.25
    """... but below this (the estimator's overflow), not past the cheapest video rung while
    the track's share still covers it: one window reading 11% on a village link with 3%
    random loss (a keyframe's burst) paused the slides and the camera for 2.5-7 s. If the
    link really shrank, the estimate falls with the loss and the shortfall pauses it a second
    later."""
    loss_step_interval_s: float = 1.5
    """After a loss-driven step, wait this long plus one RTT before the next one: the next
    receiver report (about one a second) still describes what was sent before the step."""
    up_margin: float = 0.25
    """A better rung is in reach when the estimate is at least its cost times (1 + this)."""
    up_loss_max: float = 0.08
    """No up-switch at or above this loss (a village link loses 3-5% at random: RED, FEC and
    NACK cover that, and video must not wait for a loss-free link that never comes)."""
    up_hold_s: float = 2.0
    """How long a better rung must stay in reach before switching up."""
    up_hold_max_s: float = 30.0
    """The hold doubles after each failed up-switch, up to this."""
    failed_up_window_s: float = 10.0
    """A step down within this time after a step up marks the step up as failed; an up-switch
    that lasts this long resets the hold and the probe interval."""
    probe_interval_s: float = 4.0
    """Time on a rung (without better rungs in reach) before probing the next one up."""
    probe_interval_max_s: float = 20.0
    """The probe interval doubles after each failed probe, up to this (a link that comes
    back must not wait a minute to be noticed)."""
    probe_again_s: float = 1.0
    """After a successful probe, the next rung up may be probed this soon: a link that came
    back climbs the ladder a rung every `probe_s` + this, not every `probe_interval_s`."""
    probe_loss_max: float = 0.07
    """Only probe while loss is below this."""
    probe_loss_rise: float = 0.03
    """A probe ending with loss above what it started with by this much (and at least
    `probe_loss_floor`) failed: the link's random loss says nothing against the probe."""
    probe_loss_floor: float = 0.02
    """See `probe_loss_rise`."""
    probe_quiet_rtt_s: float = 0.015
    """A probe on a link that lost packets before it (`probe_random_loss_min`) and at whose end
    the RTT is within this of the RTT at its start built no queue: its loss is the link's
    random loss, which fails it only `probe_quiet_loss_rise` above the loss at its start (or
    at `loss_spike`)..."""
    probe_random_loss_min: float = 0.01
    """... see `probe_quiet_rtt_s` (on a clean link, loss a probe brings is its own)..."""
    probe_quiet_loss_rise: float = 0.06
    """... see `probe_quiet_rtt_s`: a link losing 6% at random reads 4-10% a second, and
    `probe_loss_rise` sent a 2 Mbit/s classroom back from 360p to 180p at 7.1% (3.8% at the
    start) with its RTT at 1-3 ms."""
    probe_reach: float = 1.5
    """A probe's rung costs at most this times the track's share (or `probe_floor_bps`): the
    next rung up may cost twice the current one (15 -> 30 fps), and a probe that overflows the
    link costs every track a second of loss."""
    probe_reach_app_limited: float = 1.25
    """See `decide`'s `app_limited`: the probe's rung costs at most this times the estimate
    (GCC's application-limited probes go to twice the rate sent; the estimate is already
    up to twice it)."""
    probe_floor_bps: float = 150_000.0
    """A rung this cheap may always be probed (the low rendition, from audio only: a share
    next to nothing must not keep video off a link that came back)."""
    probe_rtt_rise_s: float = 0.1
    """A probe during which the RTT rises by this much failed: the link queues what it cannot
    carry (100 ms of queue on the lab's rate caps), and loss follows."""
    probe_s: float = 2.0
    """A probe lasts this long (at least one receiver-report interval plus an RTT); it is
    judged on reports about it (the estimator's loss window restarts when it starts)."""
    probe_failed_grace_s: float = 3.0
    """After a rung probe up failed, the rung it went back to is not stepped down from by a
    shortfall for this long: the estimate that fell is the probe's own overflow (a receiver's
    REMB drops to what it received while the probe's queue drained), and the rung below
    carried the link until the probe. A 500 kbit/s classroom back on its 180p from a failed
    360p was paused half a second later on a REMB of 199k (its 180p cost 266k), for 10 s."""
    proven_grace_s: float = 6.0
    """After a successful probe, a shortfall in the estimate is ignored this long unless loss
    or the RTT rises (`proven_rtt_rise_s`): receiver estimates (REMB) lag the rate a probe
    proved."""
    guess_hold_s: float = 3.0
    """While the estimate is only the starting guess (no receiver report, no REMB yet), a
    start does not go below the publisher's cheapest layers and nothing moves for this long
    after it (see `decide`'s `guessed`): the guess says nothing about the link."""
    proven_rtt_rise_s: float = 0.1
    """After the grace, the proven rung is kept against a short estimate while the loss stays
    below what would have failed the probe and the RTT has not risen by this much since the
    probe started: a receiver's delay-based REMB under-reads a link with random loss, and an
    overflowing link shows as loss (short queue) or a growing RTT (long queue)."""


@dataclass(frozen=True, slots=True)
class RungDecision:
    """The rung a subscriber receives of one track, why, and the memory the next decision needs."""

    choice: RungChoice
    """The rung and the temporal layers forwarded."""
    reason: RungReason
    """Why this rung was chosen (kept while it holds)."""
    switched: bool
    """True when this decision changed the rung (emit the metric and the event)."""
    changed_at: float
    """Clock time the current rung was entered."""
    cost_bps: float
    """What the rung costs according to the costs given to this decision."""
    up_hold_s: float
    """Hold before stepping up to the ceiling or beyond (doubles after each failure there)."""
    probe_interval_s: float
    """Interval before probing the ceiling or beyond (doubles after each failure there)."""
    probe_clock: float
    """The next probe may start `probe interval` after this time."""
    ceiling: RungChoice | None = None
    """The worst rung a step up recently failed to hold, or None: steps up to it or beyond
    use `up_hold_s` and `probe_interval_s`, other steps the policy's base values."""
    shortfall_since: float | None = None
    """Since when the estimate has been short of the rung's cost, or None."""
    surplus_since: float | None = None
    """Since when a better rung has been in reach, or None."""
    last_loss_step_at: float | None = None
    """When loss last forced a step down."""
    last_up_at: float | None = None
    """When the last step up (probe or recovery) happened, until it is judged."""
    last_up_to: RungChoice | None = None
    """Where the last step up went, until it is judged."""
    last_up_probed: bool = False
    """The last step up was a probe: if it fails, only the probe interval doubles."""
    probe_until: float | None = None
    """End of the probe in progress, or None when not probing."""
    probe_from: RungChoice | None = None
    """The rung to go back to if the probe in progress fails."""
    probe_loss_before: float = 0.0
    """The loss when the probe in progress started."""
    proven_until: float | None = None
    """End of the grace after a successful probe."""
    proven_loss_limit: float = 0.0
    """After the grace, the proven rung is kept against a short estimate below this loss..."""
    proven_rtt_limit: float = 0.0
    """... and below this RTT..."""
    proven_floor_bps: float = 0.0
    """... and while the estimate stays at or above this (what the rung below cost, less the
    shortfall tolerance): below it, the receiver says even the rung before the probe is too
    much."""
    probe_rtt_before: float = 0.0
    """The RTT when the probe in progress started."""

    @property
    def rung(self) -> Rung:
        """Public rung name."""
        return self.choice.rung

    @property
    def temporal_layers(self) -> int:
        """Temporal layers forwarded (0 for `low` and `audio_only`)."""
        return self.choice.temporal_layers

    @property
    def video_paused(self) -> bool:
        """True when the subscriber receives no video of this track."""
        return self.choice.rung is Rung.AUDIO_ONLY


def best_fitting(
    ladder: tuple[RungChoice, ...], costs: RungCosts, budget_bps: float, least: bool = False
) -> int:
    """Index in `ladder` of the best choice costing at most `budget_bps` (audio only if none);
    `least`: judged on what each can be brought to (`RungCosts.least_cost`)."""
    for index, choice in enumerate(ladder):
        if (costs.least_cost(choice) if least else costs.cost(choice)) <= budget_bps:
            return index
    return len(ladder) - 1


def cheapest_forwarded(ladder: tuple[RungChoice, ...], low_forwarded: bool = False) -> int:
    """Index in `ladder` of the cheapest rung forwarded from the publisher (neither a
    transcoded `low` nor `audio_only`; a simulcast track's `low` is its lowest layer, so it
    counts when `low_forwarded`, at its full frame rate: a start goes no lower than the
    publisher's cheapest layer, not to half its frames)."""
    kept = (Rung.FULL, Rung.REDUCED_FPS, Rung.LOW) if low_forwarded else (
        Rung.FULL, Rung.REDUCED_FPS)
    forwarded = [
        i for i, c in enumerate(ladder)
        if c.rung in kept and not half_low(c)
    ]
    return forwarded[-1] if forwarded else len(ladder) - 1


def up_cost(available: RungCosts, current: RungChoice, target: RungChoice) -> float:
    """What stepping up from `current` to `target` is judged to cost: its cost, but within a
    simulcast track's lowest layer (to more of its temporal layers) what that layer can be
    brought to (`RungCosts.least_cost`): its ceiling follows the subscriber's budget
    (`media.adapt.dynacast.lowest_ceiling`, 85% of it), so its cost times the up margin
    never fits the budget, and a classroom that stepped down to 15 fps would never get
    back to 30."""
    if half_low(current) and target.rung is Rung.LOW:
        return available.least_cost(target)
    return available.cost(target)


def decide(
    estimate_bps: float,
    loss: float,
    rtt_s: float,
    available: RungCosts,
    previous: RungDecision | None,
    now: float,
    policy: RungPolicy = RungPolicy(),
    limit_bps: float = math.inf,
    may_probe: bool = True,
    overfull: bool = False,
    probe_room_bps: float = math.inf,
    guessed: bool = False,
    app_limited: bool = False,
) -> RungDecision:
    """The rung for the next interval, given the link estimate for this track (its share of the
    subscriber's budget), the loss fraction (0..1), the RTT, the publisher's measured costs, the
    previous decision (None at start) and the clock. `limit_bps` is a cap set by policy, not
    by the link (a screen share's share while cameras wait): no step up, probe or proven hold
    goes above it. `may_probe` False holds off a new probe (another track of the subscriber
    is probing: one probe at a time, so a failure is known to be its own). `overfull`: the
    subscriber is sent more than its whole estimate (by the shortfall tolerance) and its link
    queues it (`budget.allocate` decides), so a shortfall steps down at once rather than after
    `down_after_s`. `probe_room_bps`: what the subscriber's budget leaves this track beside
    what the others spend now; a probe above `probe_floor_bps` must fit in it.
    `app_limited`: the estimate is the loss bound, far above what is sent, with the RTT at
    its floor: it is limited by what the relay sends (the loss bound rises only to twice
    that), not by the link, and says nothing about what lies above it. Then a probe may
    reach `probe_reach_app_limited` times the estimate, beyond the room the estimate leaves
    (`probe_room_bps`): from a low rung (150k with the audio, an estimate of at most 300k)
    the 400k base layer of a 1 Mbit/s camera was out of every probe's reach, and a 700k link
    stayed on low for good.
    `guessed`: the estimate is only the estimator's starting guess (no feedback yet). Then a
    start goes no lower than the publisher's cheapest layers, and for `guess_hold_s` after it
    the rung holds: the guess is no evidence, and the `low` rung it picked for a 1 Mbit/s
    camera without temporal layers started the transcoder for every late joiner on a healthy
    loopback (which then had no way back up: a low rung sends too little to show the link
    carries nine times more). The stream sends the publisher's base layer anyway until the
    low rendition's first keyframe, so a weak link loses nothing to it: its first receiver
    report, a second later, decides."""
    ladder = available.ladder()
    redecided = False
    if (
        previous is not None
        and available.low_forwarded
        and previous.reason is RungReason.START
        and previous.cost_bps <= 0.0
        and not previous.video_paused
        and available.full_bps > 0.0
    ):
        # a simulcast start decided before any layer was measured: decide it now they are
        # (held as `full` for `guess_hold_s`, it sent a 500 kbit/s classroom the 1.5 Mbit/s
        # top layer of a teacher with transport-cc, and 74% of it was lost), on the lowest
        # layer at least: the estimate is a browser's first REMB (its own starting guess,
        # about 250k), and below the 180p layer's first second (keyframes) it paused every
        # classroom for a second at join, on any link; a link that cannot carry 180p shows it
        # a second later (the shortfall)
        previous = None
        redecided = True
    if previous is None:
        index = best_fitting(ladder, available, estimate_bps * policy.headroom)
        if guessed or redecided:
            index = min(index, cheapest_forwarded(ladder, available.low_forwarded))
        return RungDecision(
            choice=ladder[index],
            reason=RungReason.START,
            switched=True,
            changed_at=now,
            cost_bps=available.cost(ladder[index]),
            up_hold_s=policy.up_hold_s,
            probe_interval_s=policy.probe_interval_s,
            probe_clock=now,
        )
    if previous.choice not in ladder:
        index = best_fitting(ladder, available, estimate_bps * policy.headroom)
        ceiling = previous.ceiling if previous.ceiling in ladder else None
        return replace(
            _move(previous, ladder[index], RungReason.UNAVAILABLE, available, now),
            ceiling=ceiling,
            up_hold_s=previous.up_hold_s if ceiling else policy.up_hold_s,
            probe_interval_s=previous.probe_interval_s if ceiling else policy.probe_interval_s,
        )
    if guessed and now - previous.changed_at < policy.guess_hold_s:
        return _hold(previous, available.cost(previous.choice))
    if previous.probe_until is not None:
        return _judge_probe(previous, ladder, estimate_bps, loss, rtt_s, available, now, policy)
    state = _judge_last_up(previous, ladder, now, policy)
    current = ladder.index(state.choice)
    cost = available.cost(state.choice)

    if loss >= policy.loss_spike and current < len(ladder) - 1:
        wait = policy.loss_step_interval_s + max(rtt_s, 0.0)
        if state.last_loss_step_at is None or now - state.last_loss_step_at >= wait:
            carried = min(estimate_bps, cost * (1.0 - loss)) * policy.headroom
            index = max(current + 1, best_fitting(ladder, available, carried))
            cheapest = len(ladder) - 2  # the cheapest rung that still sends video
            if (
                loss < policy.loss_pause_above
                and index > cheapest >= 0
                and available.least_cost(ladder[cheapest]) <= estimate_bps * policy.headroom
            ):
                index = max(current, cheapest)
            if index > current:
                down = _down(state, ladder[index], RungReason.LOSS, available, now, policy)
                return replace(down, last_loss_step_at=now)

    short = available.least_cost(state.choice) * (1.0 - policy.shortfall_tolerance) > estimate_bps
    proven = cost <= limit_bps and _proven(state, estimate_bps, loss, rtt_s, now, policy)
    aftermath = (
        state.reason is RungReason.PROBE_FAILED
        and now - state.changed_at < policy.probe_failed_grace_s
        and not state.video_paused
    )
    if short and not proven and not aftermath:
        since = state.shortfall_since if state.shortfall_since is not None else now
        if overfull or now - since >= policy.down_after_s:
            index = best_fitting(ladder, available, estimate_bps * policy.headroom)
            if index == len(ladder) - 1 or half_low(ladder[index]):
                # rather the cheapest video the share covers, if any, by what it can be
                # brought to (a lowest layer whose ceiling follows the share): 180p at all
                # its frames before half of them (a 1 Mbit/s classroom overflowed on 360p
                # went to 15 fps for 3 s, its 30 fps 180p within the share but not its
                # headroom)
                index = min(index, best_fitting(ladder, available, estimate_bps, least=True))
            index = min(max(current + 1, index), len(ladder) - 1)
            return _down(state, ladder[index], RungReason.SHORTFALL, available, now, policy)
        return _hold(state, cost, shortfall_since=since)

    in_reach = [
        index
        for index in range(current)
        if up_cost(available, state.choice, ladder[index]) * (1.0 + policy.up_margin)
        <= estimate_bps
        and available.cost(ladder[index]) <= limit_bps
    ]
    if in_reach and loss < policy.up_loss_max:
        since = state.surplus_since if state.surplus_since is not None else now
        held = now - since
        for index in in_reach:
            if held >= _hold_for(state, ladder, index, policy):
                up = _move(state, ladder[index], RungReason.RECOVERED, available, now)
                return replace(up, last_up_at=now, last_up_to=ladder[index], last_up_probed=False)
        return _hold(state, cost, surplus_since=since)

    # the probe floor is for a picture at all frames (the low rendition, the lowest layer): the
    # lowest layer at half its frames beside the audio overflowed a 150 kbit/s link probe
    # after probe, 0.6-1.3 fps between pauses, where the video had stayed cleanly paused
    above = ladder[current - 1] if current > 0 else None
    floor = 0.0 if above is not None and half_low(above) else policy.probe_floor_bps
    if (
        may_probe
        and above is not None
        and cost <= estimate_bps
        and loss < policy.probe_loss_max
        and available.cost(above)
        <= min(
            limit_bps,
            max(
                min(estimate_bps * policy.probe_reach, probe_room_bps),
                floor,
                estimate_bps * policy.probe_reach_app_limited if app_limited else 0.0,
            ),
        )
    ):
        if now - state.probe_clock >= _interval_for(state, ladder, current - 1, policy):
            target = above
            probe = _move(state, target, RungReason.PROBE, available, now)
            return replace(
                probe,
                probe_until=now + policy.probe_s,
                probe_from=state.choice,
                probe_loss_before=loss,
                probe_rtt_before=rtt_s,
                last_up_at=now,
                last_up_to=target,
                last_up_probed=True,
            )
    return _hold(state, cost)


def padding_probe_passed(
    state: RungDecision,
    now: float,
    policy: RungPolicy = RungPolicy(),
    room_bps: float = math.inf,
    costs: RungCosts | None = None,
) -> RungDecision:
    """The decision after a padding probe showed that the link carries more than when its
    failed steps up failed (`media.adapt.bandwidth_probe`): without their memory (the ceiling, the
    doubled hold and probe interval), free to probe again after `probe_again_s`, and with the
    surplus counted as held: the probe measured what `up_hold_s` waits to be sure of, so a
    rung the new estimate reaches is switched to at once (a link back after a dip got its
    video 2 s later than its probe said it could).
    Unless what the probe left this track (`room_bps`: what it carried, less what the other
    tracks spend) is below what the rung that failed costs (`costs`): then it proved nothing
    about that rung, and the memory stays. On a 500 kbit/s classroom with 3% loss, a probe
    that carried 486k (the 74k audio in it) cleared the memory of a failed 360p at 403k, and
    the next 360p probe came 4 s after the last: each overflowed the link (40% lost, 22 fps)."""
    failed = state.ceiling
    if (
        failed is not None
        and costs is not None
        and failed in costs.ladder()
        and costs.cost(failed) > room_bps
    ):
        return state
    return replace(
        state,
        ceiling=None,
        up_hold_s=policy.up_hold_s,
        probe_interval_s=policy.probe_interval_s,
        probe_clock=min(state.probe_clock, now - policy.probe_interval_s + policy.probe_again_s),
        surplus_since=now - policy.up_hold_s,
    )


def _proven(
    state: RungDecision,
    estimate_bps: float,
    loss: float,
    rtt_s: float,
    now: float,
    policy: RungPolicy,
) -> bool:
    """Whether a probe proved the current rung and nothing since says otherwise."""
    if state.proven_until is None:
        return False
    if estimate_bps < state.proven_floor_bps:
        return False
    if rtt_s >= state.proven_rtt_limit:
        return False
    if now < state.proven_until:
        return loss < policy.up_loss_max
    return loss < state.proven_loss_limit


def _at_or_above_ceiling(state: RungDecision, ladder: tuple[RungChoice, ...], index: int) -> bool:
    # a ceiling the ladder no longer has (a simulcast layer stopped) holds nothing back
    ceiling = state.ceiling
    return ceiling is not None and ceiling in ladder and index <= ladder.index(ceiling)


def _hold_for(
    state: RungDecision, ladder: tuple[RungChoice, ...], index: int, policy: RungPolicy
) -> float:
    """How long a surplus must last before stepping up to `ladder[index]`."""
    if _at_or_above_ceiling(state, ladder, index):
        return state.up_hold_s
    return policy.up_hold_s


def _interval_for(
    state: RungDecision, ladder: tuple[RungChoice, ...], index: int, policy: RungPolicy
) -> float:
    """How long after `probe_clock` a probe of `ladder[index]` may start."""
    if _at_or_above_ceiling(state, ladder, index):
        return state.probe_interval_s
    return policy.probe_interval_s


def _judge_last_up(
    state: RungDecision, ladder: tuple[RungChoice, ...], now: float, policy: RungPolicy
) -> RungDecision:
    """A step up that lasted the failed-up window succeeded: if it reached the ceiling, the
    ceiling and its longer holds are lifted."""
    if state.last_up_at is None or now - state.last_up_at < policy.failed_up_window_s:
        return state
    lasted = replace(state, last_up_at=None, last_up_to=None)
    up_to = state.last_up_to
    if up_to is None or up_to not in ladder:
        return lasted
    if _at_or_above_ceiling(state, ladder, ladder.index(up_to)):
        return replace(
            lasted,
            ceiling=None,
            up_hold_s=policy.up_hold_s,
            probe_interval_s=policy.probe_interval_s,
        )
    return lasted


def rtt_stayed(rtt_before: float | None, rtt_after: float | None, quiet_rtt_s: float) -> bool:
    """Whether the RTT stayed within `quiet_rtt_s` of where a probe started it (no queue
    built); None: no RTT known, so no."""
    if rtt_before is None or rtt_after is None:
        return False
    return rtt_after <= rtt_before + quiet_rtt_s


def random_loss_only(
    loss_before: float,
    rtt_before: float | None,
    rtt_after: float | None,
    random_loss_min: float,
    quiet_rtt_s: float,
) -> bool:
    """Whether what a probe lost is the link's own random loss: the link lost packets before
    it (`random_loss_min`: on a clean link, loss a probe brings is its own) and the RTT stayed
    within `quiet_rtt_s` of where it started (no queue built). None: no RTT known. Rung probes
    (`RungPolicy.probe_quiet_rtt_s`) and padding probes (`media.adapt.bandwidth_probe`) judge
    by it."""
    return loss_before >= random_loss_min and rtt_stayed(rtt_before, rtt_after, quiet_rtt_s)


def _judge_probe(
    state: RungDecision,
    ladder: tuple[RungChoice, ...],
    estimate_bps: float,
    loss: float,
    rtt_s: float,
    costs: RungCosts,
    now: float,
    policy: RungPolicy,
) -> RungDecision:
    """Keep probing, keep the probed rung, or go back to where the probe started: on a loss
    spike, on loss risen by the end, when the estimate fell below what the rung before the
    probe cost (a receiver's delay-based estimate drops at once when a probe overloads it), or
    when the RTT rose by `probe_rtt_rise_s` (a queue building: loss comes next)."""
    assert state.probe_until is not None
    ended = now >= state.probe_until
    quiet = random_loss_only(
        state.probe_loss_before, state.probe_rtt_before or None, rtt_s,  # 0: no RTT before
        policy.probe_random_loss_min, policy.probe_quiet_rtt_s,
    )
    rise = policy.probe_quiet_loss_rise if quiet else policy.probe_loss_rise
    failed_at = max(policy.probe_loss_floor, state.probe_loss_before + rise)
    before = costs.cost(state.probe_from) if state.probe_from in ladder else 0.0
    overloaded = estimate_bps < before * (1.0 - policy.shortfall_tolerance)
    queued = 0.0 < state.probe_rtt_before < rtt_s - policy.probe_rtt_rise_s
    if loss >= policy.loss_spike or overloaded or queued or (ended and loss >= failed_at):
        back = state.probe_from
        if back is None or back not in ladder:
            back = ladder[min(ladder.index(state.choice) + 1, len(ladder) - 1)]
        down = _down(state, back, RungReason.PROBE_FAILED, costs, now, policy)
        return replace(down, last_loss_step_at=now)
    if ended:
        return replace(
            state,
            reason=RungReason.PROBE_OK,
            switched=False,
            cost_bps=costs.cost(state.choice),
            probe_until=None,
            probe_from=None,
            proven_until=now + policy.proven_grace_s,
            proven_loss_limit=failed_at,
            proven_floor_bps=before * (1.0 - policy.shortfall_tolerance),
            proven_rtt_limit=state.probe_rtt_before + policy.proven_rtt_rise_s,
            probe_clock=now - policy.probe_interval_s + policy.probe_again_s,
        )
    return _hold(state, costs.cost(state.choice))


def _move(
    state: RungDecision, choice: RungChoice, reason: RungReason, costs: RungCosts, now: float
) -> RungDecision:
    """A decision on `choice`, keeping the backoff memory and restarting the timers."""
    moved = choice != state.choice
    return RungDecision(
        choice=choice,
        reason=reason,
        switched=moved,
        changed_at=now if moved else state.changed_at,
        cost_bps=costs.cost(choice),
        up_hold_s=state.up_hold_s,
        probe_interval_s=state.probe_interval_s,
        probe_clock=now,
        ceiling=state.ceiling,
        last_loss_step_at=state.last_loss_step_at,
        last_up_at=state.last_up_at,
        last_up_to=state.last_up_to,
    )


def _down(
    state: RungDecision,
    choice: RungChoice,
    reason: RungReason,
    costs: RungCosts,
    now: float,
    policy: RungPolicy,
) -> RungDecision:
    """A step down; when it comes within the failed-up window of a step up, that step failed:
    the ceiling drops to where it went, and the probe interval above the ceiling doubles (the
    up-switch hold too, unless the failed step was a probe: a failed guess says nothing against
    a later estimate)."""
    down = replace(_move(state, choice, reason, costs, now), last_up_at=None, last_up_to=None)
    failed = state.last_up_to
    if state.last_up_at is None or failed is None:
        return down
    if now - state.last_up_at >= policy.failed_up_window_s:
        return down
    ladder = costs.ladder()
    ceiling = failed
    if state.ceiling in ladder and failed in ladder:
        ceiling = max(state.ceiling, failed, key=ladder.index)
    return replace(
        down,
        ceiling=ceiling,
        up_hold_s=state.up_hold_s
        if state.last_up_probed
        else min(state.up_hold_s * 2.0, policy.up_hold_max_s),
        probe_interval_s=min(state.probe_interval_s * 2.0, policy.probe_interval_max_s),
    )


def _hold(
    state: RungDecision,
    cost: float,
    *,
    shortfall_since: float | None = None,
    surplus_since: float | None = None,
) -> RungDecision:
    """The same rung, with the hysteresis timers updated."""
    return replace(
        state,
        switched=False,
        cost_bps=cost,
        shortfall_since=shortfall_since,
        surplus_since=surplus_since,
    )
