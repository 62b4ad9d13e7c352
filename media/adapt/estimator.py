"""A subscriber's downlink estimate, from what it sends back and what we sent it.

Inputs, all with the clock passed in: REMB (the receiver's own estimate; aiortc receivers send
it only when abs-send-time is negotiated, Chromium when transport-cc is not), receiver report
blocks (fraction lost, jitter, LSR/DLSR for the RTT against our sender reports' send times) and
the bytes the relay actually sent (the rate the receiver was offered), with the share of them a
REMB does not measure.

A receiver's REMB measures video only: Chromium's receive-side estimator takes audio packets
only with transport-cc (`call.cc`, "For audio, we only support send side BWE"), which the
relay does not negotiate, and counts payload and padding without headers (aiortc's receivers
each estimate their own video stream). So the REMB's bound on the whole link is the REMB plus
what was sent that it does not see: the audio (with RED, ~90 kbit/s on the wire) and every
video packet's headers (`on_sent`'s `remb_unseen`). Taken alone, a very-weak link's REMB of
48k read as a link too small for audio while it carried audio and the low rung (130k).

The estimate is the smaller of two bounds:
- REMB, while fresh (`remb_timeout_s`) and not contradicted by what gets through
  (`remb_distrust_s`, sooner while the RTT shows no queue);
- a loss-based bound in the manner of GCC's loss controller: above `decrease_above` loss it
  falls to itself (or what was sent, if less) times (1 - loss/2), and to what got through
  (sent times (1 - loss)) when loss says the link overflowed (`overflow_above`); below
  `increase_below` (or the link's own random loss plus `increase_over_floor`) it rises to at
  least what got through and by `increase_per_s` a second (while we send well below it,
  application-limited, only up to `app_limited_reach` times what we send); in between it
  holds.
  So a receiver that sends no REMB still gets an estimate, and one whose REMB lags is still
  cut on loss. When the REMB goes quiet, the loss bound takes over within `remb_pull` of it,
  so the estimate does not leap to a bound left from before a collapse.
A padding probe that passed (`media.adapt.bandwidth_probe`, `probe_passed`) lifts both: the loss
bound to what it proved, and the REMB's bound to at least that for `probed_trust_s`.
The loss is read over a window of every stream's packets (`loss_window_s`), once it holds
enough of them (`loss_min_packets`) or evidently too many lost (`loss_evident_lost`).
A receiver report arriving after `outage_s` without any (about its stream, or about any
stream for `outage_settle_s` after a silence of them all), that lost most of its interval,
describes the outage (the link was cut), not congestion: it neither moves the loss average
nor the bound, so a link that comes back resumes at the rate it had.
"""

from __future__ import annotations

import enum
import logging
import math
from collections import deque
from dataclasses import dataclass, replace

from aiortc.rtp import unpack_remb_fci

logger = logging.getLogger(__name__)


class EstimateBound(enum.StrEnum):
    """Which input limits the estimate (metric label, debugging)."""

    INITIAL = "initial"
    """No feedback yet, or none that moved the configured starting guess (the first reports
    of a subscriber that was sent little yet, without loss): the guess."""
    REMB = "remb"
    """The receiver's REMB."""
    LOSS = "loss"
    """The loss-based bound from receiver reports."""
    DATA_SAVER = "data_saver"
    """Not the link: the subscriber's data budget (`media.adapt.data_saver`) caps it."""


@dataclass(frozen=True, slots=True)
class LinkEstimate:
    """What the relay believes about one subscriber's downlink at a moment."""

    bps: float
    """Bits per second the subscriber can receive (everything: audio, video, overhead)."""
    loss: float
    """Smoothed fraction of packets lost, 0..1."""
    rtt_s: float
    """Smoothed round-trip time in seconds; 0.0 until measured."""
    jitter_s: float
    """Smoothed interarrival jitter in seconds; 0.0 until reported."""
    bound: EstimateBound
    """Which input limits `bps`."""
    sent_bps: float
    """What the relay sent this subscriber over the last `rate_window_s`."""
    delivered_bps: float
    """What got through according to the last report: sent times (1 - its loss)."""
    loss_at: float | None = None
    """When `loss` was last measured (None: never): after a decrease the window needs new
    reports, and until then `loss` is the old reading, not news."""
    rtt_settled: bool = False
    """The latest RTT sample is within `rtt_rise_s` of the floor: no queue is building."""
    carried_bps: float = 0.0
    """The most that got through (`delivered_bps`, or a padding probe) over the last
    `carried_window_s`: what the link carried lately, where a probe may aim."""
    ceiling_bps: float | None = None
    """A cap set by policy, not by the link: the subscriber's data budget
    (`media.adapt.data_saver`); `bps` is at most this, and no probe goes above it."""
    congested_at: float | None = None
    """When the last report of congestion with a queue came (`EstimatorPolicy.congestion_backoff`:
    loss with the RTT up, an overflow the estimate answers; None: none). Not a distrusted
    REMB believed again on a loss reading: on a link losing 3% at random that is the link's
    own loss, against which RED must hold (`media.adapt.budget.red_state`)."""


@dataclass(frozen=True, slots=True)
class Congestion:
    """The answer to the last report of congestion (`EstimatorPolicy.congestion_backoff`)."""

    floor_bps: float
    """The estimate falls no lower than this on the REMB's word..."""
    reach_bps: float | None
    """... and the loss bound rises no higher than this (None: as before the congestion)..."""
    at: float
    """... from this moment, for `congestion_memory_s`."""
    rtt_s: float | None = None
    """The latest RTT sample when it was answered: a next report of congestion backs off
    further only if the queue grew since (`EstimatorPolicy.congestion_growing_s`)."""


@dataclass(frozen=True, slots=True)
class EstimatorPolicy:
    """Constants of the estimator; the defaults are what the relay uses."""

    initial_bps: float = 400_000.0
    """Estimate before any feedback (a join-page network check may give a better one): what a
    weak village link carries. A 1 Mbit/s start sent a 500 kbit/s link 625k for its first
    seconds (a rising publisher behind an estimate waiting for the first REMB), and the
    overflow paused the camera 5.5 s; a good link climbs from here with what it is sent (the
    loss bound to twice it, the REMB to 1.5 times), as libwebrtc starts at 300k."""
    min_bps: float = 30_000.0
    """The estimate never goes below this (audio must keep flowing)."""
    max_bps: float = 20_000_000.0
    """Nor above this."""
    decrease_above: float = 0.10
    """Loss above this lowers the loss-based bound (GCC)."""
    overflow_above: float = 0.25
    """Loss above this means the link overflowed: the bound falls to what got through."""
    increase_below: float = 0.02
    """Loss below this lets the loss-based bound rise (GCC)."""
    increase_over_floor: float = 0.02
    """... or below the least loss seen over `loss_floor_window_s` plus this: on a village
    link with 3% random loss the bound must still rise (else one cut is for good), while
    congestion, which adds loss to the link's own, stops it."""
    loss_floor_window_s: float = 20.0
    """See `increase_over_floor`."""
    increase_per_s: float = 1.08
    """Multiplicative rise of the bound per second, while not application-limited."""
    app_limited_share: float = 0.875
    """Below this share of the bound, the relay is not testing it (as Galène)..."""
    app_limited_reach: float = 2.0
    """... and the bound rises only up to this multiple of what is sent: a loss-free link
    that carries everything offered must not keep the bound at its starting guess (which,
    through the publisher's REMB cap, would hold the publisher's rate down with it)."""
    clean_reach: float = 1.25
    """The report that first lifts the bound above the starting guess, clean (loss below
    the increase threshold, the RTT not above its floor), lifts it to what got through
    times this: what a link carried without loss or queue is a floor under its capacity,
    not the capacity. At exactly what got through, the share left for a 1 Mbit/s camera
    after the audio fell within the shortfall tolerance of its cost (the sent meter reads
    a little low in a stream's first second), and healthy loopback subscribers went from
    full to low a second after joining. Later reports raise it as GCC does
    (`increase_per_s`)."""
    decrease_interval_s: float = 0.3
    """At most one decrease per this interval plus one RTT (GCC)."""
    loss_weight: float = 0.5
    """Weight of the newest report in the loss average."""
    rtt_weight: float = 0.15
    """Weight of the newest sample in the RTT average (aiortc keeps 0.85 of the old)."""
    jitter_weight: float = 0.25
    """Weight of the newest report in the jitter average."""
    remb_timeout_s: float = 5.0
    """A REMB older than this no longer bounds the estimate."""
    remb_distrust_s: float = 3.0
    """A REMB that the subscriber's own reports contradict this long (it gets more than the
    REMB says, by `remb_distrust_margin`, with loss low enough for the bound to rise) is
    replaced by `remb_distrust_reach` times what gets through, until it rises or loss
    returns: a receiver's delay-based estimate climbs back from a collapse at 8% a second,
    far slower than a link that came back."""
    remb_distrust_margin: float = 1.1
    """See `remb_distrust_s`."""
    remb_distrust_quick_s: float = 1.0
    """... or this long while the RTT is within `rtt_rise_s` of its floor: a REMB below what
    gets through with no queue building (a receiver's REMB stays within 1.5 times what it
    receives, so it falls with what we send when we send little) is not congestion."""
    rtt_rise_s: float = 0.05
    """See `remb_distrust_quick_s`."""
    remb_queue_min_s: float = 0.15
    """... or at once when the queue the REMB implies is missing: a link that carries only
    the REMB, sent what got through for the time since the contradiction began, would have
    queued the difference, (delivered - REMB) / REMB seconds of delay for each second. Once
    that implied delay is at least this and the latest RTT sample is above its floor by less
    than `remb_queue_share` of it, the REMB is not the link: an aiortc receiver's
    delay-based REMB computed on a busy event loop read 300-440k while 1.1 Mbit/s got
    through loopback without a loss, and the camera stepped down within a second, long
    before `remb_distrust_s` (the busy loop's RTT jitter kept the quick path off). Real
    congestion fills the queue (the RTT rises with it) or, when the queue is short, loses
    packets (which ends the contradiction)."""
    remb_queue_share: float = 0.5
    """See `remb_queue_min_s`."""
    remb_doubt_rtt_s: float = 0.1
    """A contradicted REMB (below what gets through loss-free), until it is judged (dropped
    as above, or believed after `remb_distrust_s`), bounds the estimate no lower than what
    gets through unless the RTT rose this much: an aiortc receiver's REMB on a busy loop
    hovered 10-15% under what it received, the camera fell within the shortfall tolerance,
    and a second later it was on low, where such a REMB kept it for good. A link that
    overflows shows it in the RTT (its queue) or in loss, which ends the contradiction."""
    remb_doubt_share: float = 0.75
    """... for a REMB at least this share of what gets through: a delay-based estimator that
    detects overuse backs off to 0.85 times what it receives, so a REMB that near what got
    through says the receiver got it all (on a link at capacity it receives only the
    capacity, and its REMB falls further below what we send)."""
    remb_queue_rtt_max_s: float = 0.2
    """... and only while the RTT rose less than this: a rise of 200 ms is a queue, whatever
    the REMB implies (the lab's bottlenecks queue 100 ms; a busy loop's jitter is tens of
    milliseconds), and the REMB then keeps `remb_distrust_s`. For a REMB at least
    `remb_stall_share` of what gets through, the rise must hold over two samples
    (`held_rtt_rise`)."""
    remb_stall_share: float = 0.6
    """A REMB this near what gets through, with one RTT sample 200 ms or more up and the one
    before it not, is a receiver whose event loop stalled, not a queue: a load generator
    starved of CPU for 200-370 ms (`tongxin bench relay --remb`, 20 subscribers on two
    shared cores) showed as one such sample, its aiortc receivers' REMBs at 0.6-0.8 of what
    got through, in every subscriber of that process at once; believing them stepped the
    subscribers down to the transcoded low rung (and started its transcoder). A link that
    collapses leaves its REMB far below (what it carries), and a queue lasts."""
    rtt_floor_window_s: float = 30.0
    """The RTT floor is the smallest RTT sample over this window."""
    queue_hold_rise_s: float = 0.05
    """While the RTT held this far above its floor over its last two samples
    (`held_rtt_rise`), a queue is building: the loss bound does not rise, and a padding
    probe's proof no longer overrides the REMB (`_probed`), so the receiver's delay-based
    REMB bounds again. A half-second probe 11% over a 500 kbit/s link passed (the lab's
    100 ms queue absorbed it); the bound, lifted to 555k, kept rising by `increase_per_s`
    and held the REMB off for `probed_trust_s` while the RTT samples rose by 300 ms, until
    47% loss paused the camera; it happened again every few seconds, the camera paused 44%
    of the time on a clean link where a direct call sent 350k at 30 fps."""
    remb_distrust_reach: float = 1.5
    """A contradicted REMB is replaced by what gets through times this (what a receiver's
    REMB itself allows above its incoming rate), not by the loss bound alone, which may be
    stale after an outage."""
    remb_pull: float = 2.0
    """When the REMB goes stale, the loss-based bound takes over within this multiple of the
    last REMB (or of what gets through, if more): a bound left high from before a collapse
    must not become the estimate the moment the REMB goes quiet (a receiver that gets audio
    alone may send no REMB for seconds)."""
    outage_s: float = 3.0
    """A receiver report after this long a silence, that lost at least `outage_loss` of its
    interval, describes an outage, not congestion."""
    outage_settle_s: float = 2.0
    """After a silence of `outage_s` from every stream, reports for this long that lost at
    least `outage_loss` describe the outage too: each stream's first report after a cut may
    still predate it (nothing new received), and the next one counts the whole cut."""
    outage_loss: float = 0.5
    """See `outage_s`: a silence with little loss is only a slow reporter (a receiver that
    gets audio alone reports every 5 s)."""
    rate_window_s: float = 1.0
    """Window of the sent-rate meter."""
    loss_window_s: float = 2.0
    """Reports whose packet counters say what was lost are summed over this window, every
    stream of the subscriber together: the loss is lost packets over expected packets, so a
    slide share sending 5 packets a second that loses one does not read as 20% loss."""
    loss_min_packets: int = 50
    """A window expecting fewer packets than this leaves the loss as it was..."""
    loss_evident_lost: int = 8
    """... unless this many of them were lost: 8 of fewer than 50 is over 16%, no village
    link's random loss (the chance on a 5% link is under 1%), and waiting for 50 packets of
    a slow stream (a probe of the low rung, the heartbeat of a paused one, at 4-10 packets a
    second) let a probe that lost most of its packets pass as clean."""
    max_decrease: float = 0.5
    """While we send well below the bound (application-limited), one decrease keeps at least
    this share of it (GCC's (1 - loss/2) at 100% loss): a burst lost just after a quiet
    second must not drop the bound to the audio rate. Sending near the bound, an overflow
    goes to what got through at once."""
    carried_window_s: float = 60.0
    """See `LinkEstimate.carried_bps`."""
    probe_failed_hold: float = 0.9
    """See `probe_failed`."""
    failed_reach_share: float = 0.9
    """After a padding probe failed at a target (`probe_failed`'s `failed_bps`), the bound
    rises while application-limited (`app_limited_reach`) only up to this share of it..."""
    failed_reach_s: float = 30.0
    """... for this long, or until a probe passes (as `ProbePolicy.failed_memory_s`)."""
    congestion_backoff: float = 0.85
    """A report of congestion (loss at or above the rise threshold while the RTT sample stands
    `rtt_rise_s` above its floor: a queue that overflowed, not the link's random loss) is
    answered as GCC's delay-based detector answers overuse: the estimate falls to this share
    of what the link carried cleanly just before (`congestion_clean_s`), not lower, whatever
    the REMB says (for `congestion_memory_s`, or until a REMB rises above it). A receiver's
    REMB that lagged the climb (distrusted, `remb_distrust_s`) is believed again the moment
    loss ends its contradiction: a 1 Mbit/s classroom's REMB read 430k when its 360p, at
    992k, first overflowed the link, the estimate fell from 1120k to 569k, the video to 180p
    and then to 15 fps, and took 8 s to climb back, where a direct call backs off to 0.85
    times what got through and keeps its picture. A second congestion without a clean report
    between them backs off from the first one's floor if the queue grew since
    (`congestion_growing_s`). A REMB that was distrusted (contradicted by what got through)
    and is believed again because a report read loss is answered the same way, whatever the
    RTT: a 2 Mbit/s classroom with 1% loss received 1873k cleanly, read 2.0% once with its
    RTT 34 ms up, and its REMB of 652k took the estimate there at once; the teacher's 360p
    ceiling fell to 533k and the picture to 8-12 fps for 3 s."""
    congestion_growing_s: float = 0.01
    """See `congestion_backoff`: the reports that follow an overflow still read its loss and
    its queue while the queue drains, and each backed off from the one before (a 1 Mbit/s
    classroom's floor went 952k, 809k, 688k, 585k, 497k, 422k in 3 s after one overflow,
    its 360p to 180p and a 1.5 s freeze). GCC's detector answers overuse (a delay that
    grows), not a queue that drains."""
    congestion_clean_s: float = 5.0
    """See `congestion_backoff`: a clean report older than this says nothing of the link now."""
    congestion_memory_s: float = 30.0
    """See `congestion_backoff`; and when the link overflowed (loss above `decrease_above`, the
    queue held over two RTT samples: `queue_building`) while the bound was being tested (what
    got through cleanly at least `congestion_testing_share` of the bound), the loss bound
    falls to `congestion_reach_share` of what got through cleanly, and for this long rises no
    higher than that share of the most the link carried cleanly since (what got through, or a
    padding probe that passed): a 1 Mbit/s classroom's bound had crept by 8% a second to
    1120k, its 360p's ceiling followed it, the link overflowed, and it did again each time the
    bound was back (the camera on 180p for 3-7 s each time, audio concealed 0.5-0.7% where a
    direct call's was 0.0%). Lifted by what carried it, the reach follows a link that got
    better (a half-second probe passes on a link just under its target, its queue absorbing
    it: 90% of it). Not on a few percent of loss with the RTT up: a 300 kbit/s classroom's
    RTT also carries the queue of its own camera on its 150k uplink, and held at 90% of the
    242k it was sent, with RED on, its 180p sat at 15 fps."""
    congestion_reach_share: float = 0.9
    """See `congestion_memory_s`: what got through in a second read by the next report reads
    above the link while its queue fills (1046k on a 1000k link); at 100% of it that 360p
    overflowed again. A direct call settles at 80% of such a link."""
    congestion_testing_share: float = 0.75
    """See `congestion_memory_s`: a congestion after sending well below the bound (a paused
    video's resume, a step up to a higher layer) says what the burst did, not what the link
    carries at most."""
    probed_trust_s: float = 10.0
    """A REMB below what a padding probe proved is not believed for this long after it (or
    until loss cuts the bound): time for the receiver's own estimate to climb with what it
    now receives. After that the REMB bounds again (a queue that builds without loss shows
    there first)."""
    sender_reports_kept: int = 32
    """Send times of our last sender reports kept for RTT."""


class SentRate:
    """Bytes sent, as a rate over a sliding window. Bytes may come per packet or in batches
    (the relay counts its streams' octets at each tick and each report): a batch is what was
    sent since the previous one, so the rate is measured between two counts, from the last
    count at or before the window's start to the newest, never over a window that holds a
    batch's end but not its beginning."""

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._counts: deque[tuple[float, int]] = deque()  # (at, bytes counted up to then)
        self._total = 0

    def add(self, nbytes: int, now: float) -> None:
        """Count `nbytes` sent since the previous call, up to `now` (0 marks a quiet spell)."""
        self._total += nbytes
        counts = self._counts
        if counts and counts[-1][0] >= now:
            counts[-1] = (counts[-1][0], self._total)
        else:
            counts.append((now, self._total))
        while len(counts) > 2 and counts[1][0] <= now - self._window_s:
            counts.popleft()

    def bps(self, now: float) -> float:
        """Bits per second over about the last window before `now` (0 when nothing was
        counted in it)."""
        counts = self._counts
        if not counts or now - counts[-1][0] > self._window_s:
            return 0.0
        base_at, base = counts[0]
        for at, total in counts:  # the last count at or before the window's start
            if at > now - self._window_s:
                break
            base_at, base = at, total
        last_at, last = counts[-1]
        if last_at <= base_at:
            return 0.0
        return (last - base) * 8 / (last_at - base_at)


class RecentValues:
    """The least, the greatest and the latest of the values seen over a sliding window (the
    RTT floor, the link's own random loss, the most it carried lately). The least and the
    greatest are kept in monotonic queues, so reading them costs nothing: the estimate reads
    them on every adaptation tick of every subscriber, over windows of up to a minute of
    receiver reports."""

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._values: deque[tuple[float, float]] = deque()  # (at, value)
        self._lows: deque[tuple[float, float]] = deque()  # rising values: the floor first
        self._highs: deque[tuple[float, float]] = deque()  # falling values: the peak first

    def add(self, value: float, now: float) -> None:
        """One more value, seen at `now`; those older than the window are forgotten."""
        lows, highs = self._lows, self._highs
        while lows and lows[-1][1] >= value:
            lows.pop()
        while highs and highs[-1][1] <= value:
            highs.pop()
        for values in (self._values, lows, highs):
            values.append((now, value))
            while values[0][0] < now - self._window_s:
                values.popleft()

    @property
    def floor(self) -> float | None:
        """The least value in the window (None before any)."""
        return self._lows[0][1] if self._lows else None

    @property
    def peak(self) -> float | None:
        """The greatest value in the window (None before any)."""
        return self._highs[0][1] if self._highs else None

    @property
    def held(self) -> float | None:
        """The lesser of the two newest values (the newest alone while there is one; None
        before any): a level the values held, not a one-off spike."""
        values = self._values
        if not values:
            return None
        return min(values[-1][1], values[-2][1]) if len(values) > 1 else values[-1][1]

    def peak_since(self, since: float) -> float | None:
        """The greatest value seen at or after `since` within the window (None if none)."""
        return max((v for at, v in self._values if at >= since), default=None)

    @property
    def latest(self) -> float | None:
        """The newest value (None before any)."""
        return self._values[-1][1] if self._values else None


class DownlinkEstimator:
    """The downlink estimate of one subscriber, fed by its RTCP and by what we send it."""

    def __init__(self, policy: EstimatorPolicy = EstimatorPolicy()) -> None:
        self.policy = policy
        self._sent = SentRate(policy.rate_window_s)
        self._remb_unseen = SentRate(policy.rate_window_s)  # sent, but not measured by REMB
        self._remb_bps: float | None = None
        self._remb_at = 0.0
        self._remb_expired = False
        self._remb_contradicted_since: float | None = None
        self._loss_at: float | None = None
        self._loss_bound: float | None = None  # None until the first receiver report
        self._guess_only = False  # the loss bound is still the starting guess, untouched
        self._last_clean = False  # the last report's loss let the bound rise
        self._loss: float | None = None
        self._rtt_s: float | None = None
        self._rtt_floor = RecentValues(policy.rtt_floor_window_s)
        self._jitter_s: float | None = None
        self._delivered_bps = 0.0
        self._last_report_at: dict[int | None, float] = {}  # per SSRC (None: without counters)
        self._last_any_report_at: float | None = None
        self._outage_until: float | None = None  # reports until then may describe a cut
        self._last_decrease_at: float | None = None
        self._last_increase_at: float | None = None
        self._sender_reports: dict[int, float] = {}
        # ssrc -> (highest seq, lost, packets the relay dropped unsent) at its last report
        self._counters: dict[int, tuple[int, int, int]] = {}
        self._losses: deque[tuple[float, int, int]] = deque()  # (at, expected, lost)
        self._loss_floor = RecentValues(policy.loss_floor_window_s)
        self._window_from: float | None = None  # reports before this are out of the window
        self._carried = RecentValues(policy.carried_window_s)
        self._probed_bps: float | None = None  # what a padding probe proved, until a decrease
        self._probed_at = 0.0
        self._probed_by_failure = False  # held after a failed probe, not proved by a passed one
        self._failed_reach: tuple[float, float] | None = None  # (bps, until): `failed_reach_share`
        self._clean: tuple[float, float] | None = None  # (delivered bps, at): last clean report
        self._congestion: Congestion | None = None  # the last congestion's answer
        self._queue_congested_at: float | None = None  # see `LinkEstimate.congested_at`
        self.outages = 0
        """Receiver reports left out as describing an outage (see `outage_s`)."""

    def on_sent(self, nbytes: int, now: float, remb_unseen: int = 0) -> None:
        """Count bytes sent to this subscriber (per packet, or batched), `remb_unseen` of them
        such as its REMB does not measure (audio, packet headers: see the module docstring)."""
        self._sent.add(nbytes, now)
        self._remb_unseen.add(remb_unseen, now)

    def remb_sample(self) -> tuple[float, float] | None:
        """The receiver's latest REMB as it sent it (video only) and when it came (None
        before any)."""
        return None if self._remb_bps is None else (self._remb_bps, self._remb_at)

    def remb_link_bps(self, now: float) -> float | None:
        """The REMB as a bound on the whole link: the REMB plus what was sent over the last
        `rate_window_s` that it does not measure (None before any REMB)."""
        if self._remb_bps is None:
            return None
        return self._remb_bps + self._remb_unseen.bps(now)

    def on_remb(self, bps: float, now: float) -> None:
        """A REMB bitrate from the subscriber. One below what the last clean report says got
        through starts the contradiction at once (a receiver sends several REMBs a second,
        receiver reports about one), so its missing queue shows sooner."""
        self._remb_bps = float(bps)
        self._remb_at = now
        self._remb_expired = False
        if self._remb_contradicted_since is None and self._last_clean:
            link = self.remb_link_bps(now)
            if link is not None and self._delivered_bps > link * self.policy.remb_distrust_margin:
                self._remb_contradicted_since = now

    def on_remb_fci(self, fci: bytes, now: float) -> bool:
        """A REMB from its feedback control information; False (ignored) if malformed."""
        try:
            bitrate, _ssrcs = unpack_remb_fci(fci)
        except ValueError:
            return False
        self.on_remb(bitrate, now)
        return True

    def on_sender_report(self, ntp_timestamp: int, now: float) -> None:
        """We sent a sender report with this 64-bit NTP timestamp at `now`."""
        self._sender_reports[(ntp_timestamp >> 16) & 0xFFFFFFFF] = now
        while len(self._sender_reports) > self.policy.sender_reports_kept:
            del self._sender_reports[next(iter(self._sender_reports))]

    def on_rtt(self, rtt_s: float, now: float) -> None:
        """An RTT measured elsewhere (e.g. by aiortc's own sender)."""
        if rtt_s < 0:
            return
        weight = self.policy.rtt_weight
        self._rtt_s = rtt_s if self._rtt_s is None else weight * rtt_s + (1 - weight) * self._rtt_s
        self._rtt_floor.add(rtt_s, now)

    def loss_floor(self) -> float:
        """The link's own random loss: the least loss read over `loss_floor_window_s` (0
        before any reading)."""
        return self._loss_floor.floor or 0.0

    def rtt_floor(self) -> float | None:
        """The least RTT sample over the floor's window (None before any)."""
        return self._rtt_floor.floor

    def rtt_sample_peak(self, since: float | None = None) -> float | None:
        """The highest RTT sample since `since` (None: the latest sample); None if there is
        none (a padding probe's queue shows in the samples of our sender reports caught in it,
        long before the smoothed RTT moves)."""
        if since is None:
            return self._rtt_floor.latest
        return self._rtt_floor.peak_since(since)

    def _queued(self) -> bool:
        """Whether the latest RTT sample is above the floor by `rtt_rise_s` (False before
        any sample)."""
        floor, latest = self._rtt_floor.floor, self._rtt_floor.latest
        return floor is not None and latest is not None and latest > floor + self.policy.rtt_rise_s

    def rtt_settled(self) -> bool:
        """Whether the latest RTT sample is within `rtt_rise_s` of the floor (no queue
        building); False before any sample (nothing says so)."""
        floor, latest = self._rtt_floor.floor, self._rtt_floor.latest
        if floor is None or latest is None:
            return False
        return latest <= floor + self.policy.rtt_rise_s

    def on_receiver_report(
        self,
        fraction_lost: int,
        jitter: int,
        lsr: int,
        dlsr: int,
        now: float,
        *,
        clock_rate: int = 90_000,
        counters: tuple[int, int, int] | None = None,
        first_seq: int | None = None,
        unsent: int = 0,
        probing: bool = False,
    ) -> None:
        """One report block about a stream we send: `fraction_lost` as in RTCP (0..255, the share
        of 256 lost since the previous report), `jitter` in units of `clock_rate`, `lsr` and
        `dlsr` as in RTCP (middle 32 bits of our SR's NTP time; delay in 1/65536 s).
        `counters` (SSRC, extended highest sequence number, cumulative packets lost) make the
        loss packet-weighted over every stream (`loss_window_s`); without them each report's
        `fraction_lost` is averaged in. `first_seq`, the sequence number of the stream's first
        packet, lets its first report count too (from that packet): otherwise the first report
        only sets the counters' baseline, and the estimate stays the starting guess until each
        stream's second one (1-3 s with aiortc's randomised report interval), long enough for
        a good link to be stepped down on the guess. `unsent`: how many of the stream's packets
        the relay dropped before sending them so far (its pacer's queue outgrew itself, or held
        the video of a track just paused): the receiver counts them as lost, but they are the
        relay's, not the link's (a 300 kbit/s classroom's pause dropped its queued video, the
        next report said 87% lost, and the camera stayed paused on it for 6 s). `probing`: a
        padding probe is on the link, awaiting its verdict, or failed so lately that its queue
        may still drain, so a congestion the report shows is the probe's (`probe_failed`
        answers it), not the media's (`congestion_backoff`)."""
        policy = self.policy
        if lsr and lsr in self._sender_reports:
            self.on_rtt(now - self._sender_reports[lsr] - dlsr / 65536, now)
        jitter_s = jitter / clock_rate
        self._jitter_s = (
            jitter_s
            if self._jitter_s is None
            else policy.jitter_weight * jitter_s + (1 - policy.jitter_weight) * self._jitter_s
        )
        key = counters[0] if counters is not None else None
        last = self._last_report_at.get(key)
        # the loss since the last report we got: the counters span the whole silence, where
        # `fraction_lost` spans only the receiver's last interval (its reports in between
        # were lost too)
        interval = (
            self._since_last(counters, first_seq, unsent) if counters is not None else None
        )
        if interval is not None and interval[0] == 0:
            # nothing new received (a report made during a cut, arriving as it ends): it does
            # not end the silence, or the next report, counting the whole cut as lost, would
            # read as congestion 0.1 s after this one
            interval = None
        else:
            self._last_report_at[key] = now
        silence_loss = fraction_lost / 256
        if interval is not None:
            silence_loss = max(silence_loss, interval[1] / interval[0])
        heard = self._last_any_report_at
        self._last_any_report_at = now
        if heard is not None and now - heard >= policy.outage_s:
            # nothing at all for outage_s: the link was cut. Whatever the receiver reports
            # first, about whichever stream, the reports just after it describe the cut
            self._outage_until = now + policy.outage_settle_s
        silent = (last is not None and now - last >= policy.outage_s) or (
            self._outage_until is not None and now < self._outage_until
        )
        outage = silent and silence_loss >= policy.outage_loss
        if interval is not None and interval[1] * 2 >= interval[0] and logger.isEnabledFor(
            logging.DEBUG
        ):
            logger.debug(
                "report ssrc=%s lost %d of %d since the last, %.1f s ago: %s",
                key, interval[1], interval[0], now - last if last is not None else -1.0,
                "outage" if outage else "counted",
            )
        counted = self._count(interval, now, outage) if counters is not None else None
        if outage:
            self.outages += 1
            return
        if counters is not None:
            if counted is None:  # too few packets in the window to say
                return
            loss = counted
            self._loss = loss
        else:
            loss = min(max(fraction_lost, 0), 255) / 256
            self._loss = (
                loss
                if self._loss is None
                else policy.loss_weight * loss + (1 - policy.loss_weight) * self._loss
            )
        self._loss_at = now
        self._loss_floor.add(loss, now)
        # the link's own random loss (the least seen lately) is not congestion: the bound may
        # rise while the loss stays within increase_over_floor of it
        increase_below = max(
            policy.increase_below,
            (self._loss_floor.floor or 0.0) + policy.increase_over_floor,
        )
        sent = self._sent.bps(now)
        self._delivered_bps = sent * (1 - loss)
        self._carried.add(self._delivered_bps, now)
        bound = self._loss_bound
        if bound is None:
            bound = self._remb_or_initial(now)
            self._guess_only = self._fresh_remb(now) is None
        before = bound
        if loss >= policy.increase_below:  # the link said something: it loses packets
            self._guess_only = False
        if loss > policy.decrease_above:
            wait = policy.decrease_interval_s + (self._rtt_s or 0.0)
            due = self._last_decrease_at is None or now - self._last_decrease_at >= wait
            if sent > 0 and due:
                if loss > policy.overflow_above:
                    cut = min(bound, self._delivered_bps)
                else:
                    cut = min(bound, sent) * (1 - loss / 2)
                if sent < policy.app_limited_share * bound:  # not testing the bound
                    cut = max(cut, bound * policy.max_decrease)
                bound = cut
                self._last_decrease_at = now
                self._probed_bps = None
            self._last_increase_at = None
        elif loss < increase_below and self.queue_building():
            self._last_increase_at = None  # no loss yet, but no room either: hold
        elif loss < increase_below:
            if self._guess_only and self._delivered_bps > bound and not self._queued():
                bound = self._delivered_bps * policy.clean_reach  # see `clean_reach`
            bound = max(bound, self._delivered_bps)
            if self._last_increase_at is not None:
                elapsed = min(now - self._last_increase_at, 1.0)
                grown = bound * policy.increase_per_s**elapsed
                reach = self._congestion_reach_bps(now)
                if sent < policy.app_limited_share * bound:
                    # application-limited: rise only to a multiple of what we send
                    reach = min(reach, sent * policy.app_limited_reach,
                                self._failed_reach_bps(now))  # fmt: skip
                bound = max(bound, min(grown, reach))
            self._last_increase_at = now
        else:
            self._last_increase_at = None
        queued = self._queued()
        distrusted = self._remb_contradicted_since is not None  # believed again on this loss
        if loss >= increase_below and (queued or distrusted) and not probing:
            bound = self._on_congestion(bound, before, loss, now, queued)
        elif loss < increase_below and not queued and not probing:  # a probe's: its verdict
            self._clean = (self._delivered_bps, now)
            self._carried_cleanly(self._delivered_bps, now)
        self._last_clean = loss < increase_below
        remb = self.remb_link_bps(now)
        if (
            loss < increase_below
            and remb is not None
            and self._delivered_bps > remb * policy.remb_distrust_margin
        ):
            if self._remb_contradicted_since is None:
                self._remb_contradicted_since = now
        else:
            self._remb_contradicted_since = None
        bound = min(max(bound, policy.min_bps), policy.max_bps)
        if bound != before:
            self._guess_only = False
        self._loss_bound = bound
        self._expire_remb(now)

    def _since_last(
        self, counters: tuple[int, int, int], first_seq: int | None, unsent: int = 0
    ) -> tuple[int, int] | None:
        """(expected, lost) packets of one stream since its previous report, which it
        replaces (expected 0: nothing new), or for its first report since `first_seq`; None
        for a first report without it, or counters that went backwards or wrapped. `unsent`:
        the stream's packets the relay itself dropped before sending so far (its pacer's),
        which the receiver counts as lost but the link never saw."""
        ssrc, highest, lost = counters
        before = self._counters.get(ssrc)
        self._counters[ssrc] = (highest, lost, unsent)
        unsent_before = before[2] if before is not None else 0
        lost -= unsent - unsent_before if unsent >= unsent_before else unsent  # or a new pacer
        if before is None and first_seq is not None:
            # a receiver's extended numbers start at its first packet's (no cycles yet)
            before = (first_seq - 1, 0, 0)
        if before is None:
            return None
        expected = highest - before[0]
        if not 0 <= expected < 0x8000:
            return None
        return expected, min(max(lost - before[1], 0), expected)

    def _count(self, interval: tuple[int, int] | None, now: float, outage: bool) -> float | None:
        """Add one stream's (expected, lost) since its last report to the loss window; the
        window's loss, or None when it holds too few packets to say (`loss_min_packets`,
        `loss_evident_lost`). Reports after an outage are left out."""
        window = self._losses
        if interval is not None and not outage:
            window.append((now, *interval))
        # a decrease answered the loss before it: from then on the window holds only reports
        # made since (those of the same compound report included), not the same loss again
        cutoff = now - self.policy.loss_window_s
        for start in (self._last_decrease_at, self._window_from):
            if start is not None:
                cutoff = max(cutoff, start)
        while window and window[0][0] < cutoff:
            window.popleft()
        total = sum(e for _, e, _ in window)
        lost = sum(n for _, _, n in window)
        if total < self.policy.loss_min_packets and lost < self.policy.loss_evident_lost:
            return None
        return lost / total

    def _on_congestion(
        self, bound: float, before: float, loss: float, now: float, queued: bool
    ) -> float:
        """Answer a report of congestion (`congestion_backoff`, `congestion_memory_s`), at
        most once per decrease interval: the loss bound after it (`bound` so far, `before`
        the report, `loss` read with it, `queued`: with the RTT up, else a distrusted REMB
        believed again on its loss)."""
        policy = self.policy
        last = self._congestion
        wait = policy.decrease_interval_s + (self._rtt_s or 0.0)
        if last is not None and now - last.at < wait:
            return bound
        clean = self._clean
        if clean is None or now - clean[1] > policy.congestion_clean_s:
            return bound
        carried = clean[0]
        floor = carried * policy.congestion_backoff
        fresh = self._fresh_congestion(now)
        rtt = self._rtt_floor.latest
        if fresh is not None and fresh.at >= clean[1]:  # no clean report since
            grew = (
                rtt is not None
                and fresh.rtt_s is not None
                and rtt > fresh.rtt_s + policy.congestion_growing_s
            )
            # the queue grew since: not enough; else the same congestion, draining
            floor = min(floor, fresh.floor_bps * (policy.congestion_backoff if grew else 1.0))
        reach = fresh.reach_bps if fresh is not None else None
        overflowed = loss > policy.decrease_above and self.queue_building()
        if overflowed and carried >= policy.congestion_testing_share * before:
            reach = carried * policy.congestion_reach_share
        self._congestion = Congestion(floor, reach, now, rtt)
        if queued:
            self._queue_congested_at = now
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "congestion: %.0fk got through cleanly %.1f s ago, floor %.0fk, reach %s",
                carried / 1000, now - clean[1], floor / 1000,
                f"{reach / 1000:.0f}k" if reach is not None else "-",
            )  # fmt: skip
        return bound if reach is None else min(bound, reach)

    def _fresh_congestion(self, now: float) -> Congestion | None:
        """The last congestion's answer while it holds (`congestion_memory_s`)."""
        last = self._congestion
        if last is None or now - last.at >= self.policy.congestion_memory_s:
            return None
        return last

    def _congestion_floor(self, now: float) -> float:
        """How low the REMB may take the estimate after a congestion (0: any)."""
        last = self._fresh_congestion(now)
        return 0.0 if last is None else last.floor_bps

    def _congestion_reach_bps(self, now: float) -> float:
        """How high the loss bound may rise after a congestion (inf: any)."""
        last = self._fresh_congestion(now)
        return math.inf if last is None or last.reach_bps is None else last.reach_bps

    def _carried_cleanly(self, bps: float, now: float) -> None:
        """The link carried `bps` cleanly: a congestion's reach follows it up."""
        last = self._fresh_congestion(now)
        if last is not None and last.reach_bps is not None:
            reach = max(last.reach_bps, bps * self.policy.congestion_reach_share)
            self._congestion = replace(last, reach_bps=reach)

    def _failed_reach_bps(self, now: float) -> float:
        """How far an application-limited bound may rise after a failed probe (inf: any)."""
        if self._failed_reach is None or now >= self._failed_reach[1]:
            return math.inf
        return self._failed_reach[0]

    def probe_failed(
        self, before_bps: float, now: float, failed_bps: float | None = None
    ) -> None:
        """A padding probe overflowed the link, and the estimate was `before_bps` when it
        started: a REMB below `probe_failed_hold` of that is not believed for `probed_trust_s`
        or until loss cuts the bound, nor while the RTT stays above its floor (a queue that
        outlasts the probe is the link's). What the probe overflowed was its own padding: the link
        carried the media before it, and carries it after, but a receiver's REMB, which saw the
        queue, falls to what it received and climbs back at 8% a second (a 2 Mbit/s
        classroom's fell from 1.68 to 1.26 Mbit/s for ten seconds, and its 360p with it).
        The loss bound goes back to `before_bps` if it rose while the padding went: the reports
        that let it rise predate the probe's losses (a 300 kbit/s classroom's rose from 417k to
        552k under a probe that failed, was paced there, and its queue and NACKs paused the
        video).
        `failed_bps`: the target the link was shown not to carry (a queue built, or loss beyond
        its own; None for a failure that says nothing of the link). While little is sent the
        bound then rises only to `failed_reach_share` of it (`failed_reach_s`): a 300 kbit/s
        classroom on 180p, sent 270k, had its bound creep past a 392k probe that failed to
        396k, which let the next probe aim at 495k (the failed target bounds a probe only from
        an estimate below it); each such probe lost 40-50% of its second and paused the video,
        every 14 s."""
        if failed_bps is not None:
            self._failed_reach = (failed_bps * self.policy.failed_reach_share,
                                  now + self.policy.failed_reach_s)  # fmt: skip
        if self._loss_bound is not None and self._loss_bound > before_bps:
            self._loss_bound = max(before_bps, self.policy.min_bps)
        held = before_bps * self.policy.probe_failed_hold
        if held > self._probed(now):
            self._probed_bps = held
            self._probed_at = now
            self._probed_by_failure = True

    def probe_passed(self, bps: float, now: float) -> None:
        """A padding probe (`media.adapt.bandwidth_probe`) showed that the link carries `bps`: the
        loss bound rises to it, and a REMB below it is not believed for `probed_trust_s` or
        until loss cuts the bound (a receiver's REMB stays within 1.5 times what it received
        before the probe, and climbs from there at 8% a second)."""
        policy = self.policy
        bps = min(max(bps, policy.min_bps), policy.max_bps)
        self._carried_cleanly(bps, now)
        bps = min(bps, self._congestion_reach_bps(now))
        self._loss_bound = max(self._loss_bound or 0.0, bps)
        self._guess_only = False
        self._probed_bps = bps
        self._probed_at = now
        self._probed_by_failure = False
        self._carried.add(bps, now)
        self._last_increase_at = now
        if self._failed_reach is not None and bps >= self._failed_reach[0]:
            self._failed_reach = None  # the link carries what failed before

    def restart_loss_window(self, now: float) -> None:
        """Count only reports from `now` on in the loss (a probe starts: it is judged on what
        the link did with it, not on the seconds before)."""
        self._window_from = now

    def estimate(self, now: float) -> LinkEstimate:
        """The estimate at `now`."""
        policy = self.policy
        self._expire_remb(now)
        remb = self._fresh_remb(now)
        if self._loss_bound is None or (self._guess_only and remb is None):
            # before any report, or while the reports have neither moved the starting guess
            # nor shown loss (an aiortc receiver's first report comes when little was sent
            # yet): the estimate is still only the guess, and says so
            bps = remb if remb is not None else self._loss_bound or policy.initial_bps
            bound = EstimateBound.REMB if remb is not None else EstimateBound.INITIAL
        elif remb is not None and remb < self._loss_bound:
            bps, bound = remb, EstimateBound.REMB
        else:
            bps, bound = self._loss_bound, EstimateBound.LOSS
        return LinkEstimate(
            bps=min(max(bps, policy.min_bps), policy.max_bps),
            loss=self._loss or 0.0,
            rtt_s=self._rtt_s or 0.0,
            jitter_s=self._jitter_s or 0.0,
            bound=bound,
            sent_bps=self._sent.bps(now),
            delivered_bps=self._delivered_bps,
            loss_at=self._loss_at,
            rtt_settled=self.rtt_settled(),
            carried_bps=self._carried.peak or 0.0,
            congested_at=self._queue_congested_at,
        )

    def _expire_remb(self, now: float) -> None:
        """When the REMB goes quiet, the loss bound takes over from it (within `remb_pull`),
        not from where it was before the REMB fell."""
        if self._remb_bps is None or self._remb_expired or self._loss_bound is None:
            return
        if now - self._remb_at <= self.policy.remb_timeout_s:
            return
        self._remb_expired = True
        pulled = max(self.remb_link_bps(now) or 0.0, self._delivered_bps, self._probed(now))
        pulled *= self.policy.remb_pull
        self._loss_bound = max(min(self._loss_bound, pulled), self.policy.min_bps)

    def _probed(self, now: float) -> float:
        """What a padding probe proved, while it still overrides the REMB (0 otherwise)."""
        if self._probed_bps is None or now - self._probed_at > self.policy.probed_trust_s:
            return 0.0
        if self._probed_by_failure and not self.rtt_settled():
            return 0.0  # a queue that stays after a failed probe is the link's, not the probe's
        if self.queue_building():
            return 0.0  # what a probe passed is more than the link drains
        return self._probed_bps

    def _fresh_remb(self, now: float) -> float | None:
        """The REMB's bound while fresh: the REMB itself, or once contradicted, what gets
        through times `remb_distrust_reach` (climbing with what is sent, not at 8% a second)."""
        link = self.remb_link_bps(now)
        if link is None or now - self._remb_at > self.policy.remb_timeout_s:
            return None
        since = self._remb_contradicted_since
        policy = self.policy
        wait = policy.remb_distrust_quick_s if self.rtt_settled() else policy.remb_distrust_s
        remb = max(link, self._probed(now))
        if since is not None and (now - since >= wait or self._queue_missing(link, now - since)):
            return max(remb, self._delivered_bps * policy.remb_distrust_reach)
        if (
            since is not None
            and link >= self._delivered_bps * policy.remb_doubt_share
            and not self._queue_evident()
        ):
            # doubted: until it is judged, not below what got through loss-free (see
            # `remb_doubt_rtt_s`)
            return max(remb, self._delivered_bps)
        return max(remb, self._congestion_floor(now))

    def held_rtt_rise(self) -> float:
        """How far above the floor the RTT held over its last two samples (the lesser of
        their rises; 0.0 before any sample): a queue lasts from one sample to the next, a
        receiver's stalled event loop inflates one (see `remb_stall_share`)."""
        floor, held = self._rtt_floor.floor, self._rtt_floor.held
        if floor is None or held is None:
            return 0.0
        return held - floor

    def queue_building(self) -> bool:
        """Whether the RTT held `queue_hold_rise_s` above its floor (see there)."""
        return self.held_rtt_rise() >= self.policy.queue_hold_rise_s

    def _queue_evident(self) -> bool:
        """Whether the latest RTT sample is above the floor by `remb_doubt_rtt_s`."""
        floor, latest = self._rtt_floor.floor, self._rtt_floor.latest
        return (
            floor is not None
            and latest is not None
            and latest - floor >= self.policy.remb_doubt_rtt_s
        )

    def _queue_missing(self, remb_link: float, elapsed: float) -> bool:
        """Whether the queue a contradicted REMB implies after `elapsed` seconds is missing
        from the RTT (see `remb_queue_min_s`); False without an RTT sample (no evidence)."""
        policy = self.policy
        floor, latest = self._rtt_floor.floor, self._rtt_floor.latest
        if floor is None or latest is None or remb_link <= 0:
            return False
        implied = (self._delivered_bps - remb_link) / remb_link * elapsed
        rise = latest - floor
        near = remb_link >= self._delivered_bps * policy.remb_stall_share
        queue_rise = self.held_rtt_rise() if near else rise
        return (
            implied >= policy.remb_queue_min_s
            and rise < implied * policy.remb_queue_share
            and queue_rise < policy.remb_queue_rtt_max_s
        )

    def _remb_or_initial(self, now: float) -> float:
        remb = self._fresh_remb(now)
        return remb if remb is not None else self.policy.initial_bps
