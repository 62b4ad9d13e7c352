"""Bandwidth adaptation of one subscriber's downlink: estimate -> allocate -> apply, on a tick.

A `DownlinkAdaptation` belongs to one `Downlink`. Its outbound streams hand it what the
subscriber reports (receiver report blocks, REMB) and the send times of our sender reports; a
tick every `TICK_S` feeds the bytes sent since the last tick to the `DownlinkEstimator`, divides
the estimate among the subscriber's tracks with `budget.allocate` (costs measured on each
published track) and applies each video track's rung to its outbound stream: `full` sends every
temporal layer, `reduced_fps` fewer, `low` switches the stream to the publisher's shared
transcoded rendition (`media.adapt.transcode`, started on demand and stopped when its last
subscriber leaves it), `audio_only` pauses the stream (the m-line stays). When a rung
switches, or a video is paused or resumed, a `link` event goes out through the downlink's
event callback. A paused video stream carries a padding heartbeat, so the subscriber keeps
reporting on it (`OutboundStream.send_padding`), and, when `media.adapt.bandwidth_probe` says so, a
padding probe: half a second of padding up to what the link carried before, whose verdict
lifts the estimate (and makes every track forget its failed steps up) so that a link that
came back gets its video back at once. Each tick also sets the downlink's pacing rate
(`pacing_rate`, `media.forward.pacer`, raised to a padding probe's target while it pads) and tells
the estimator when a probe starts or fails, so that the probe is judged on the reports about it.

A VP8 camera offers `low` (at its measured bitrate once it runs, `LOW_RUNG_NOMINAL_BPS`
before); a screen share or another codec does not. A simulcast camera's rungs are its spatial
layers (`media.adapt.spatial`): no transcoder.
One clock (monotonic, passed in) serves every input and the tick.
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from media.adapt.bandwidth_probe import (
    ProbeInputs,
    ProbePolicy,
    ProbeState,
    ProbeStep,
    ProbeVerdict,
    failed_lately,
    probe_step,
    probe_unsent,
    remb_fell,
)
from media.adapt.budget import (
    Allocation,
    BudgetPolicy,
    IncomingTrack,
    Priority,
    allocate,
    red_state,
    unaccounted_bps,
)
from media.adapt.data_saver import DataSaver
from media.adapt.dynacast import TOP_STAY_SHARE, lowest_ceiling
from media.adapt.estimator import DownlinkEstimator, EstimateBound, LinkEstimate, SentRate
from media.adapt.rung import (
    LOW_RUNG_NOMINAL_BPS,
    Rung,
    RungCosts,
    RungDecision,
    RungReason,
    padding_probe_passed,
)
from media.adapt.spatial import (
    LOWEST_FLOOR_BPS,
    TOP_LAYER_MAX_BPS,
    apply_layer,
    below_top_layer,
    capped_top_layer,
    ladder_rates,
    simulcast_costs,
)
from media.adapt.ticker import Ticker
from media.adapt.transcode import low_rendition, offers_low
from media.forward.forwarder import PACKET_OVERHEAD, InboundTrack, OutboundStream
from media.rtp.rtcp_feedback import ReportBlock
from media.rtp.timing import abs_send_time

logger = logging.getLogger(__name__)

TICK_S = 0.5
"""Time between two adaptation decisions of one downlink."""
STATS_EVERY_S = 5.0
"""A `link_stats` event (estimate, loss, RTT, rung: signaling's histograms) this often."""

SPENT_TICKS = 2
"""The allocations whose costs the sent meter's window (`EstimatorPolicy.rate_window_s`, 1 s)
spans: what was sent beyond the dearest of them is unaccounted (`budget.unaccounted_bps`)."""
UNACCOUNTED_TICKS = 3
"""The budget leaves out the least that was sent beyond the allocation over this many ticks."""
LOSS_SETTLE_S = 1.0
"""After a failed probe, reports for this long (one report interval) still describe it."""
PROBE_AFTERMATH_S = 3.0
"""... and for this long its queue may still be draining: a congestion the reports show then
is the probe's, not the media's (`DownlinkEstimator.on_receiver_report`'s `probing`). A 300
kbit/s classroom's RTT stayed at 140-160 ms for 3 s after a probe failed there; read as the
media's congestion, it held the estimate at 90% of the 251k sent before it, and with RED's
25k the 180p went to 15 fps, then to audio only."""
PROBE_POLICY = ProbePolicy()
"""The padding probes' constants (`media.adapt.bandwidth_probe`'s defaults)."""
PROBE_SPAN_S = PROBE_POLICY.duration_s + PROBE_POLICY.judge_after_s + PROBE_POLICY.judge_grace_s
"""From a padding probe's start to its latest verdict: the loss readings it can have made."""
HEARTBEAT_PACKETS = 2
"""Padding packets a tick on each paused video stream (4 a second at `TICK_S`)..."""
HEARTBEAT_BYTES = 200
"""... of this many padding bytes each: about 8 kbit/s with headers, a few percent of the
weakest link, for reports every second and a REMB while the video is off."""
PROBE_PADDING_BYTES = 255
"""Padding bytes of each packet of a padding probe (the most one RTP packet's padding holds)."""
PROBE_PACKET_COST = PROBE_PADDING_BYTES + PACKET_OVERHEAD
"""What one probe packet costs on the wire, as the estimator counts it."""
PROBE_QUIET_S = 3.0
"""No padding probe in a subscriber's first seconds: its first keyframes queue on a weak link,
and the RTT floor its probes are judged by is still that queue's (a probe 0.4 s after joining
a 300 kbit/s classroom, at a 165 ms RTT taken as the floor, lost a third of it, the NACKs
that followed overflowed the link again, and the camera paused for the rest of the class)."""
PROBE_PACE_FACTOR = 1.1
"""While a padding probe pads, the downlink is paced at least at its target times this."""
PACE_BELOW_BPS = 4_000_000.0
"""Downlinks estimated at this or more are not paced (no queue in the relay on a good link)."""
UNPACED_HEADROOM = 1.5
"""... nor downlinks whose estimate is at least this times everything they would receive at
every track's best rung: nothing is constrained, and bursts have room. A loss-free link sent a
1 Mbit/s camera is estimated at twice what it is sent at most (`app_limited_reach`), never
`PACE_BELOW_BPS`: every healthy subscriber was paced, the pacer's timers and queue costing
more CPU than forwarding (8.6-9.3 against 5.5 ms per subscriber-second on loopback)."""
FAILED_PROBE_PACE_S = 2.0
"""See `DownlinkAdaptation._after_failed_probe`."""
PADDING_PROOF_S = 3.0
"""See `DownlinkAdaptation._padding_climbs`."""
FAILED_PROBE_MEDIA_HEADROOM = 1.1
"""See `failed_probe_pace_cap`: over the media sent lately, room for the pacer's queue of a
burst to drain."""
RESUME_AFTER_FAILURE_S = 45.0
"""After a rung probe from audio only failed, or a loss spike behind a deep queue paused the
video, a rung probe back waits for a padding probe to pass, or this long (a link whose RTT
never settles gets no padding probe)."""
PROBE_AFTERMATH_S = 3.0
"""A loss spike this soon after a failed rung probe up is that probe's overflow: it does not
make the way back wait for padding (a 500 kbit/s classroom that played 180p for 10 s, probed
360p and paused in the NACKs that followed stayed on audio only 10 s)."""
DEEP_QUEUE_RTT_S = 0.3
"""A loss spike that pauses the video with the RTT this high overflowed a link far too small
for the cheapest picture (a 150 kbit/s classroom, 400-550 ms, whose probes back played 2 fps);
at 300 kbit/s with 3% loss (110 ms) the probe back brings 180p at 23 fps, and padding probes,
judged against the link's own loss, rarely pass there."""
CAPPED_CLIMB = 2.0
"""A simulcast top layer held by the ceiling the relay set it (`spatial.capped_top_layer`)
counts as wanting this times its cost when a padding probe aims (`ProbeInputs.wanted_bps`):
a passed probe then lifts the subscriber's budget, and the ceiling with it, about twofold a
round (with the cost alone, a 2 Mbit/s classroom's 360p climbed 5% a second, on its REMB);
a probe that fails bounds the next ones (`ProbePolicy.failed_memory_s`)."""
PACE_FACTOR = 1.25
"""Pacing rate over the estimate: room for audio, RTCP and retransmissions."""
PACE_VIDEO_FLOOR_BPS = 40_000.0
"""Added to the pacing rate so video always moves: audio borrows from the same bucket at its
wire cost (RED on a lossy link, IP/UDP/SRTP overhead: ~90 kbit/s), more than the allocation
counts for it, and with little video allocated it used to take every token, starving the
video queue (a paused stream's heartbeat, a probe's first keyframe) until it was trimmed."""

RUNG_ORDER = (Rung.FULL, Rung.REDUCED_FPS, Rung.LOW, Rung.AUDIO_ONLY)
"""Best first."""

Event = dict[str, Any]
PriorityOf = Callable[[InboundTrack], Priority]


def default_priority(track: InboundTrack) -> Priority:
    """Priority when the room does not say: audio, then screen, then cameras."""
    if track.kind == "audio":
        return Priority.AUDIO
    return Priority.SCREEN if track.source == "screen" else Priority.SPEAKER_VIDEO


def rung_costs(
    layer_bps: tuple[float, float, float, float], low_bps: float | None = None
) -> RungCosts:
    """Costs of a video track from its bitrate per temporal layer (TID 0, 1, 2, and packets
    without layer information) and its low rendition's (None: it has none)."""
    layered = layer_bps[:3]
    layers = max((i + 1 for i, bps in enumerate(layered) if bps > 0), default=0)
    if layers == 0:
        return RungCosts.single_layer(layer_bps[3], low_bps)
    return RungCosts((layered[0] + layer_bps[3], *layered[1:layers]), low_bps)


def low_cost(measured_bps: float | None) -> float:
    """What the low rung costs: its measured rate while it runs, the nominal rate before."""
    return measured_bps if measured_bps else LOW_RUNG_NOMINAL_BPS


def summary_rung(allocation: Allocation) -> Rung | None:
    """The best rung among the subscriber's video tracks (audio only means all video paused),
    or None when it receives no video."""
    rungs = [t.rung for t in allocation.tracks if t.rung is not None]
    if not rungs:
        return None
    return min(rungs, key=RUNG_ORDER.index)


def paused_tracks(allocation: Allocation) -> tuple[str, ...]:
    """The video tracks (`participant:source`) this subscriber does not receive now."""
    return tuple(
        sorted(t.track_id for t in allocation.tracks if t.decision and t.decision.video_paused)
    )


def link_event(
    participant_id: str,
    rung: Rung,
    link: LinkEstimate,
    reason: str,
    detail: str,
    paused: tuple[str, ...] = (),
) -> Event:
    """The media event signaling turns into a WebSocket `link` frame; `paused` lets the page
    say which video the weak link stopped (the teacher's camera while the slides go on)."""
    return {
        "type": "link",
        "participant": participant_id,
        "rung": str(rung),
        "estimate_kbps": round(link.bps / 1000, 1),
        "loss_pct": round(link.loss * 100, 1),
        "rtt_ms": round(link.rtt_s * 1000, 1),
        "reason": reason,
        "detail": detail,
        "paused": list(paused),
    }


def link_stats_event(participant_id: str, rung: Rung | None, link: LinkEstimate) -> Event:
    """The periodic sample signaling turns into metrics (not sent to any client)."""
    return {
        "type": "link_stats",
        "participant": participant_id,
        "rung": str(rung) if rung is not None else None,
        "estimate_bps": round(link.bps),
        "loss": round(link.loss, 4),
        "rtt_s": round(link.rtt_s, 4),
    }


def decision_trace(participant_id: str, link: LinkEstimate, allocation: Allocation) -> str:
    """One debug line per decision: the estimate and what limits it, the allocation, and per
    track its share, its cost and why its rung was chosen."""
    tracks = " ".join(
        f"{t.track_id.rsplit(':', 1)[-1]}={t.share_bps / 1000:.0f}k/{t.cost_bps / 1000:.0f}k"
        + (f"/{t.decision.reason}" if t.decision is not None else "")
        for t in allocation.tracks
    )
    return (
        f"adaptation {participant_id} bound={link.bound} rtt={link.rtt_s * 1000:.0f}ms "
        f"sent={link.sent_bps / 1000:.0f}k delivered={link.delivered_bps / 1000:.0f}k | "
        f"{allocation.reason} | {tracks}"
    )


def pacing_rate(
    estimate_bps: float, spent_bps: float, guessed: bool = False, wanted_bps: float = 0.0
) -> float | None:
    """The rate a downlink's video is paced at (`media.forward.pacer`), or None for unpaced: a
    constrained link is paced a little above both its estimate and what was allocated, so
    bursts (keyframes, retransmissions) are spread out rather than dropped by the bottleneck's
    short queue, while the allocation, which fits the estimate, keeps the average below it.
    An estimate that is only the starting guess (`guessed`: no feedback yet) says nothing
    about the link: paced at it, a 1 Mbit/s stream overflowed the pacer's queue on loopback
    and the loss paused it. `wanted_bps`: what every track at its best rung would cost (0:
    unknown); an estimate `UNPACED_HEADROOM` times that is not constrained either."""
    if guessed or estimate_bps >= PACE_BELOW_BPS:
        return None
    if wanted_bps > 0 and estimate_bps >= wanted_bps * UNPACED_HEADROOM:
        return None
    return max(estimate_bps, spent_bps) * PACE_FACTOR + PACE_VIDEO_FLOOR_BPS


def failed_probe_pace_cap(delivered_bps: float, spent_bps: float, media_bps: float) -> float:
    """The pacing cap after a padding probe failed (`DownlinkAdaptation._after_failed_probe`):
    what the last report says got through, but never below what the pictures cost
    (`spent_bps`) nor below the media sent lately (`media_bps`, padding left out) with a
    little headroom. A failed probe says the link does not carry the probe's target, not that
    it stopped carrying the media it carried: capped at the 631-669k of the last report while
    a 2 Mbit/s classroom's top layer was ramping to the 1.2M the probe before had proven, the
    pacer's queue grew to 60-76 KB in a second, its oldest packets were dropped or flushed in
    one burst when the cap ended, the classroom lost 21-56% and fell to 180p."""
    return max(delivered_bps, spent_bps, media_bps * FAILED_PROBE_MEDIA_HEADROOM)


def pace_with_backlog(
    rate: float | None, estimate_bps: float, backlog_s: float
) -> float | None:
    """The pacing `rate`, but while video waits in the pacer (`backlog_s` > 0) never None:
    unpaced, the pacer sends all it holds at once (61 KB in one burst on a 2 Mbit/s link lost
    56% of it); it drains at the estimate first, and goes unpaced once empty."""
    if rate is None and backlog_s > 0:
        return estimate_bps * PACE_FACTOR + PACE_VIDEO_FLOOR_BPS
    return rate


def padding_climbs(
    streams: Iterable[OutboundStream], saving: bool, since_padding_passed_s: float
) -> frozenset[str]:
    """The video tracks whose way up is padding probes, not rung probes (`allocate`'s
    `padding_climbs`): a simulcast layer below the top one (`spatial.below_top_layer`), while
    padding may be sent (not `saving` under a data budget), except for `PADDING_PROOF_S` after
    a padding probe passed: the rung probe then confirms with the picture what the padding
    proved (its estimate, what the probe carried less the loss, kept a 2 Mbit/s classroom with
    6% loss short of 360p's cost times the up margin, probe after passed probe at the same
    target)."""
    if saving or since_padding_passed_s < PADDING_PROOF_S:
        return frozenset()
    return frozenset(
        f"{s.track.participant_id}:{s.track.source}"
        for s in streams
        if s.kind == "video" and s.track is not None and below_top_layer(s)
    )


def stream_shares(
    allocation: Allocation, estimate_bps: float, by_id: dict[str, OutboundStream]
) -> None:
    """Each video stream's `share_bps` (dynacast sets a simulcast top layer's ceiling from it):
    its track's share of the allocation, with its part of what the allocation left out as
    sent beyond the costs (`Allocation.unaccounted_bps`: while a layer ramps up to a higher
    ceiling its measured cost lags what it sends, and that must not lower the ceiling again),
    moved by its part of the change in the estimate since (`estimate_bps`; on a steady tick,
    with no new allocation, a budget that grew while the rung stayed, the usual climb on a
    good link, must lift the ceiling, not wait for the next allocation)."""
    video = [t for t in allocation.tracks if t.decision is not None]
    if not video:
        return
    delta = (estimate_bps - allocation.estimate_bps + allocation.unaccounted_bps) / len(video)
    for item in video:
        stream = by_id.get(item.track_id)
        if stream is not None:
            stream.share_bps = max(item.share_bps + delta, 0.0)


def audio_red(allocation: Allocation, probing: bool) -> bool:
    """Whether the audio goes with RED: when the allocation says (the link loses packets), and
    while a padding probe runs or its verdict is awaited (`probing`), beside the budget as the
    probe's own test traffic: a probe risks the link's queue on purpose, and on loss-free
    links, where RED is otherwise off, the probes' overflows were what the classroom concealed
    (1.2% of the audio at 1000 kbit/s, 1.6% at 300, against 0.0-0.2% in a direct call)."""
    return allocation.red or probing


def wanted_bps(incoming: list[IncomingTrack]) -> float:
    """What every track would cost at its best rung (audio without RED)."""
    return sum(
        t.audio_bps if t.is_audio else t.costs.full_bps if t.costs is not None else 0.0
        for t in incoming
    )


def apply_decision(stream: OutboundStream, decision: RungDecision) -> None:
    """Make the stream send what the rung says: from the publisher, from its low rendition
    (which runs while anyone is on it), or nothing."""
    track = stream.track
    if track is None:
        return
    if track.spatial_layers:
        apply_layer(stream, track, decision)
        return
    rendition = low_rendition(track) if decision.rung is Rung.LOW else None
    if rendition is not None:
        rendition.acquire(stream)
        stream.switch_source(rendition.track)
    elif stream.source is not track or stream.pending is not None:
        stream.switch_source(track)
        if track.low_rendition is not None:
            track.low_rendition.release(stream)
    if decision.video_paused:
        stream.pause()
        return
    if decision.rung is Rung.LOW:
        # until the low rendition's first keyframe (the transcoder may take a second or two to
        # start) the publisher's stream goes on: only its base layer, not its full rate on a
        # link that just proved too weak for more (the rendition has no layers to drop)
        stream.set_temporal_layers(1)
    elif decision.rung is Rung.FULL:
        stream.set_temporal_layers(3)
    else:
        stream.set_temporal_layers(max(1, decision.temporal_layers))
    stream.resume()


def is_steady(
    link: LinkEstimate,
    incoming: list[IncomingTrack],
    previous: Allocation,
    policy: BudgetPolicy,
    *,
    red_negotiated: bool = False,
    now: float = 0.0,
    unaccounted: float = 0.0,
) -> bool:
    """True when deciding again cannot change anything: every video track is on `full` with
    no timer running, the tracks and their layers are those decided on, loss is low and the
    estimate covers every track's full cost. The tick then skips `allocate`
    (the usual case on a good link, and most of the tick's cost)."""
    if link.loss >= policy.rung.up_loss_max or len(incoming) != len(previous.tracks):
        return False
    red, _ = red_state(link.loss, previous, now, policy, red_negotiated, link.congested_at)
    if red != previous.red:
        return False
    audio = 0.0
    video = 0
    most = 0.0
    for track in incoming:
        before = previous.of(track.track_id)
        if before is None:
            return False
        if track.is_audio:
            audio += track.audio_bps
            continue
        decision = before.decision
        costs = track.costs
        if (
            decision is None
            or costs is None
            or decision.rung is not Rung.FULL
            or decision.temporal_layers != max(1, len(costs.layer_bps))
            or decision.shortfall_since is not None
            or decision.last_up_at is not None
            or decision.probe_until is not None
        ):
            return False
        video += 1
        most = max(most, costs.full_bps)
    # every video track's share (an equal split at worst) covers the dearest one's cost: no
    # shortfall, so `decide` would only hold
    return audio + video * most + unaccounted <= link.bps


class DownlinkAdaptation:
    """The estimate, the allocation and the rungs of one subscriber's downlink."""

    def __init__(
        self,
        participant_id: str,
        streams: Callable[[], list[OutboundStream]],
        emit: Callable[[Event], None],
        *,
        priority_of: PriorityOf = default_priority,
        clock: Callable[[], float] = time.monotonic,
        policy: BudgetPolicy = BudgetPolicy(),
        interval_s: float = TICK_S,
        pace: Callable[[float | None], None] | None = None,
        drop_paced: Callable[[], object] | None = None,
        drop_padding: Callable[[], object] | None = None,
        unsent_of: Callable[[int], int] | None = None,
        send_reports: Callable[[], object] | None = None,
    ) -> None:
        self.participant_id = participant_id
        self.estimator = DownlinkEstimator()
        self.allocation: Allocation | None = None
        self._spent_lately: tuple[float, ...] = ()
        """What the allocations of the last `SPENT_TICKS` ticks cost."""
        self._unaccounted_lately: tuple[float, ...] = ()
        """What was sent beyond them, the last `UNACCOUNTED_TICKS` ticks."""
        self.rung: Rung | None = None
        """The subscriber's summary rung (None before the first decision or without video)."""
        self.paused: tuple[str, ...] = ()
        """The video tracks it does not receive now (`paused_tracks`)."""
        self._all_paused = False
        self._streams = streams
        self._emit = emit
        self._priority_of = priority_of
        self._clock = clock
        self._policy = policy
        self._pace = pace
        self._drop_paced = drop_paced
        """Drops the video waiting in the pacer (called when the last video stream pauses)."""
        self._drop_padding = drop_padding
        """Drops the probe padding the pacer still holds from the last tick."""
        self._unsent_of = unsent_of
        """How many packets of an SSRC the pacer dropped unsent so far (not the link's loss)."""
        self._send_reports = send_reports
        """Sends a sender report on each video stream now (`_report_behind_probe`)."""
        self._probe_padded = False
        """Whether the last tick wrote a padding probe's padding."""
        self._padding_passed_at = -math.inf
        """When a padding probe last passed (`_padding_climbs`)."""
        # per stream: (bytes counted, of them headers, of them probe padding) up to the last count
        self._counted: weakref.WeakKeyDictionary[OutboundStream, tuple[int, int, int]] = (
            weakref.WeakKeyDictionary()
        )
        self._media_sent = SentRate(1.0)
        """Audio and video sent (retransmissions in, probe padding out): `failed_probe_pace_cap`."""
        self._interval_s = interval_s
        self.probe = ProbeState()
        """The padding probe's state (`media.adapt.bandwidth_probe`)."""
        self._resume_failed_at: float | None = None
        """When a rung probe bringing a paused video back last failed, or a loss spike behind a
        deep queue paused it (`_resume_probe_max`)."""
        self._probe_up_failed_at = -math.inf
        """When a rung probe up from a playing rung last failed (`PROBE_AFTERMATH_S`)."""
        self._failed_probe_pace: tuple[float, float] | None = None
        """The pacing cap after a failed padding probe, and until when (`_after_failed_probe`)."""
        self._first_tick_at: float | None = None
        self.ticker = Ticker(self.tick, interval_s, f"adaptation tick participant={participant_id}")
        self.steady_ticks = 0
        """Ticks that found every video track on `full` with room to spare (no decision)."""
        self._stats_at: float | None = None
        self.data_saver: DataSaver | None = None
        """The participant's data meter and budget: caps the estimate (`media.adapt.data_saver`)."""
        self.ceiling_bps: float | None = None
        """What the subscriber declared it takes at most (`b=AS`/`b=TIAS` in its answer,
        `media.peers.sdp_bandwidth`): the estimate is never above it."""

    def _estimate(self, now: float) -> LinkEstimate:
        link = self.estimator.estimate(now)
        ceiling = self.ceiling_bps
        if ceiling is None:
            return link
        # policy, not the link: the budget allows no probe or proven hold above it
        if link.ceiling_bps is not None:
            ceiling = min(ceiling, link.ceiling_bps)
        return replace(link, bps=min(link.bps, ceiling), ceiling_bps=ceiling)

    # -- what the subscriber reports (called by its outbound streams) -------------------------

    def on_report(self, report: ReportBlock, clock_rate: int, first_seq: int) -> None:
        now = self._clock()
        self._count_sent(self._streams(), now)  # what was sent up to the report, not a tick ago
        self.estimator.on_receiver_report(
            report.fraction_lost, report.jitter, report.lsr, report.dlsr, now,
            clock_rate=clock_rate,
            counters=(report.ssrc, report.highest_seq, report.packets_lost),
            first_seq=first_seq,
            unsent=self._unsent_of(report.ssrc) if self._unsent_of is not None else 0,
            probing=self.probe.running or now - self.probe.failed_at < PROBE_AFTERMATH_S,
        )

    def on_remb(self, bps: float) -> None:
        now = self._clock()
        self.estimator.on_remb(bps, now)
        probe = self.probe
        if (
            self._drop_padding is not None
            and probe.started_at is not None
            and now - probe.started_at < PROBE_POLICY.duration_s
            and remb_fell(probe, bps, now)
        ):
            # the receiver saw the padding queue up: the rest of it would only overflow the
            # link (the next tick fails the probe on the same REMB)
            self._drop_padding()

    def on_sender_report(self, ntp_timestamp: int) -> None:
        self.estimator.on_sender_report(ntp_timestamp, self._clock())

    def _count_sent(self, streams: Iterable[OutboundStream], now: float) -> None:
        """Tell the estimator what the streams sent since the last count (0 included: the
        sent rate is measured between counts), retransmissions included, and how much of it
        a REMB does not measure: audio, and the headers of video packets (payload and
        padding are what it counts)."""
        sent = unseen = padding = 0
        for stream in streams:
            if stream.track is None:
                continue
            packets = stream.packets + stream.retransmitted + stream.probe_packets
            total = (stream.octets + stream.retransmitted_octets + stream.probe_octets
                     + packets * PACKET_OVERHEAD)
            headers = packets * PACKET_OVERHEAD
            probes = stream.probe_octets + stream.probe_packets * PACKET_OVERHEAD
            before, before_headers, before_probes = self._counted.get(stream, (0, 0, 0))
            sent += total - before
            unseen += total - before if stream.kind == "audio" else headers - before_headers
            padding += probes - before_probes
            self._counted[stream] = (total, headers, probes)
        self.estimator.on_sent(sent, now, remb_unseen=unseen)
        self._media_sent.add(sent - padding, now)

    # -- the tick ------------------------------------------------------------------------------

    def tick(self) -> Allocation:
        """Decide once: count what was sent, estimate, allocate, apply, emit on a switch."""
        now = self._clock()
        if self._first_tick_at is None:
            self._first_tick_at = now
            self.probe = replace(self.probe, next_at=max(self.probe.next_at, now + PROBE_QUIET_S))
        streams = [s for s in self._streams() if s.track is not None]
        self._count_sent(streams, now)
        link = self._estimate(now)
        if self._stats_at is None or now - self._stats_at >= STATS_EVERY_S:
            if self._stats_at is not None:  # the first sample would only show the default
                self._emit(link_stats_event(self.participant_id, self.rung, link))
            self._stats_at = now
        incoming: list[IncomingTrack] = []
        by_id: dict[str, OutboundStream] = {}
        for stream in streams:
            track = stream.track
            assert track is not None
            track_id = f"{track.participant_id}:{track.source}"
            by_id[track_id] = stream
            rates = track.layer_rates(now)
            if stream.kind == "audio":
                incoming.append(IncomingTrack(track_id, self._priority_of(track), sum(rates)))
            elif track.spatial_layers:  # simulcast: the rungs are its layers (adapt/spatial)
                # the lowest layer costs no more than the ceiling this subscriber's own budget
                # would set it (`lowest_ceiling`): that ceiling follows it down
                reach = lowest_ceiling([stream.share_bps or 0.0])
                layer_rates = [
                    ladder_rates(layer, now, reach if i == 0 else None)
                    for i, layer in enumerate(track.spatial_layers)
                ]
                capped = [i for i, layer in enumerate(track.spatial_layers)
                          if layer.ceiling_bps is not None]  # fmt: skip
                floor = LOWEST_FLOOR_BPS if 0 in capped else None
                incoming.append(IncomingTrack(
                    track_id, self._priority_of(track),
                    costs=simulcast_costs(layer_rates, floor, capped),
                ))  # fmt: skip
            else:
                low: float | None = None
                if offers_low(track):
                    rendition = track.low_rendition
                    measured = None
                    if rendition is not None and rendition.running:
                        measured = sum(rendition.track.layer_rates(now))
                    low = low_cost(measured)
                incoming.append(
                    IncomingTrack(
                        track_id, self._priority_of(track), costs=rung_costs(rates, low)
                    )
                )
        red_negotiated = any(s.red_pt is not None for s in streams if s.kind == "audio")
        guessed = link.bound is EstimateBound.INITIAL
        probe = self._probe_step(link, incoming, now)
        # a failing probe's loss is its own, as a failed rung probe's (the others wait)
        # (and the second after it: the reports and the sent rate still hold its padding, and
        # read as an overfull link, a 2 Mbit/s classroom went from 360p to 180p at once)
        probing = (
            self.probe.running
            or probe.verdict is ProbeVerdict.FAILED
            or now - self.probe.failed_at < LOSS_SETTLE_S
        )
        if probe.verdict is ProbeVerdict.PASSED:  # the estimate it proved, for this decision
            link = self._estimate(now)
        if self.data_saver is not None:  # min(estimate, what the data budget allows now)
            link = self.data_saver.limit(link, streams, incoming, self.allocation, now)
        # a probe's padding is sent on purpose, beside the allocation; what is left out is
        # what went beyond it tick after tick (one keyframe or burst of retransmissions
        # would make the shares jump, and a shortfall timer start and stop with them)
        extra = 0.0 if probing else unaccounted_bps(
            link.sent_bps, self._spent_lately, link.bps, self._policy
        )
        self._unaccounted_lately = (*self._unaccounted_lately[1 - UNACCOUNTED_TICKS :], extra)
        unaccounted = min(self._unaccounted_lately)
        if self.allocation is not None and not probing and is_steady(
            link, incoming, self.allocation, self._policy, red_negotiated=red_negotiated,
            now=now, unaccounted=unaccounted,
        ):
            self.steady_ticks += 1
            self._note_spent(self.allocation)
            stream_shares(self.allocation, link.bps, by_id)
            if self._pace is not None:
                rate = pacing_rate(
                    link.bps, self.allocation.spent_bps, guessed, wanted_bps(incoming)
                )
                self._pace(self._paced(rate, link, streams, now))
            return self.allocation
        allocation = allocate(
            link, incoming, self.allocation, now, self._policy,
            red_negotiated=red_negotiated, padding_probe=probing, unaccounted=unaccounted,
            probe_loss=self._loss_is_probes(link),
            resume_probe_max_bps=self._resume_probe_max(now),
            padding_climbs=self._padding_climbs(now),
        )  # fmt: skip
        self.allocation = allocation
        self._note_spent(allocation)
        if self._pace is not None:  # for what is sent from now on (a probe's keyframe too)
            # a rung probe tests the link with the picture it steps up to: paced, whatever
            # room the estimate seems to leave (the new layer's keyframe is the burst)
            wanted = 0.0 if allocation.rung_probe_running else wanted_bps(incoming)
            rate = pacing_rate(link.bps, allocation.spent_bps, guessed, wanted)
            if probe.pad_bps > 0:
                # the padding of a tick is written at once: paced at the probe's target, also
                # on a link paced at nothing (unpaced, 56 KB of padding left in one burst, a
                # 2 Mbit/s classroom's queue dropped a third of it and the RTT rose)
                rate = max(rate or 0.0, self.probe.target_bps * PROBE_PACE_FACTOR)
            self._pace(self._paced(rate, link, streams, now))
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s", decision_trace(self.participant_id, link, allocation))
        red_on = audio_red(allocation, probing)
        for stream in streams:
            if stream.kind == "audio":
                stream.set_red(red_on)
        stream_shares(allocation, link.bps, by_id)
        switched: RungDecision | None = None
        for item in allocation.tracks:
            decision = item.decision
            if decision is None:
                continue
            apply_decision(by_id[item.track_id], decision)
            if decision.switched and switched is None:
                switched = decision
            if decision.switched and decision.reason is RungReason.PROBE:
                self.estimator.restart_loss_window(now)
            elif decision.switched and decision.reason is RungReason.PROBE_FAILED:
                # the next reports still describe the probe: they must not cut the bound
                self.estimator.restart_loss_window(now + LOSS_SETTLE_S)
                if decision.video_paused:  # a paused video's way back failed: padding next
                    self._resume_failed_at = now
                else:
                    self._probe_up_failed_at = now
            elif (
                decision.switched
                and decision.reason is RungReason.LOSS
                and decision.video_paused
                and link.rtt_s >= DEEP_QUEUE_RTT_S
                and now - self._probe_up_failed_at >= PROBE_AFTERMATH_S
            ):
                # paused by a loss spike behind a deep queue: the link overflowed with the
                # cheapest picture on it, so the way back is proven by padding first, as after
                # a failed probe back (not when the overflow was a failed probe's up: the link
                # carried the picture it came back to)
                self._resume_failed_at = now
        video = [s for s in by_id.values() if s.kind == "video"]
        all_paused = bool(video) and all(s.paused for s in video)
        if all_paused and self._drop_paced is not None and not self._all_paused:
            # what waits is video no one will play (a keyframe restarts it at resume)
            dropped = self._drop_paced()
            logger.debug("paced video dropped participant=%s packets=%s", self.participant_id,
                         dropped)  # fmt: skip
        self._all_paused = all_paused
        if self._drop_padding is not None:
            self._drop_padding()  # the last tick's probe padding: its probe tick is over
        self._report_behind_probe(probe.pad_bps > 0)
        padded = self._heartbeat(allocation, by_id, probe.pad_bps)
        if probe.verdict is ProbeVerdict.STARTED and not padded:
            self.probe = probe_unsent(self.probe, now)
        rung = summary_rung(allocation)
        paused = paused_tracks(allocation)
        if rung is not None and (rung != self.rung or paused != self.paused):
            reason = str(switched.reason) if switched is not None else "unavailable"
            if self.data_saver is not None:
                reason = self.data_saver.reason(reason)
            self._emit(
                link_event(self.participant_id, rung, link, reason, allocation.reason, paused)
            )
        self.rung = rung
        self.paused = paused
        return allocation

    def _report_behind_probe(self, padding: bool) -> None:
        """When a padding probe's padding has just left (it padded the last tick, not this
        one), a sender report on each video stream: it reaches the subscriber behind the
        padding, and the RTT of the receiver report that echoes it measures the queue the
        probe built. The relay's usual reports come every 0.5-1.5 s, mostly before a probe or
        after its queue drained: a 500 kbit/s classroom's probe at 606k passed with its RTT
        samples falling, and the 360p it proved lost 24% and paused the video."""
        if self._probe_padded and not padding and self._send_reports is not None:
            self._send_reports()
        self._probe_padded = padding

    def _loss_is_probes(self, link: LinkEstimate) -> bool:
        """Whether the loss reading is one a padding probe that failed made (read before its
        reports had settled): no new report replaced it yet (a paused video's heartbeat
        reports slowly), and RED for it would cost the picture the probe did not (a 300
        kbit/s classroom's 180p, with RED's 25k on the audio, no longer fitted)."""
        failed_at, loss_at = self.probe.failed_at, link.loss_at
        return (
            loss_at is not None
            and failed_at - PROBE_SPAN_S <= loss_at < failed_at + LOSS_SETTLE_S
        )

    def _paced(
        self, rate: float | None, link: LinkEstimate, streams: list[OutboundStream], now: float
    ) -> float | None:
        """The pacing rate to set: `rate` after a failed probe's cap, and not None while the
        pacer still holds video (`pace_with_backlog`)."""
        backlog = max((s.backlog() for s in streams if s.backlog is not None), default=0.0)
        return pace_with_backlog(self._after_failed_probe(rate, now), link.bps, backlog)

    def _after_failed_probe(self, rate: float | None, now: float) -> float | None:
        """The pacing `rate`, within what got through before a padding probe that just failed
        (for `FAILED_PROBE_PACE_S`): the estimate falls only as the reports come, and paced at
        1.35 times an estimate the probe showed too high, a 300 kbit/s classroom was sent
        800k for two seconds after a failed probe (its NACKs' retransmissions on top), the
        RTT rose to 370 ms and the video paused for 10 s. Not below what the allocation
        spends, though: the last report may predate a step up (a 1 Mbit/s classroom just on
        360p was paced at the 337k of its 180p, the pacer's queue grew to a second, its late
        packets were dropped, and the receiver's reports of them paused the video)."""
        cap = self._failed_probe_pace
        if cap is None or now >= cap[1]:
            return rate
        return cap[0] if rate is None else min(rate, cap[0])

    def _resume_probe_max(self, now: float) -> float:
        """What a rung probe bringing a paused video back may reach (`allocate`): below what a
        padding probe failed to carry lately; nothing for `RESUME_AFTER_FAILURE_S` after such
        a rung probe failed, unless a padding probe passes first (the padding tests the link
        without a picture to break)."""
        failed = self._resume_failed_at
        if failed is not None and now - failed < RESUME_AFTER_FAILURE_S:
            return 0.0
        return failed_lately(self.probe, now)

    def _note_spent(self, allocation: Allocation) -> None:
        self._spent_lately = (*self._spent_lately[1 - SPENT_TICKS :], allocation.spent_bps)

    def _probe_step(
        self, link: LinkEstimate, incoming: list[IncomingTrack], now: float
    ) -> ProbeStep:
        """Start, go on with or judge a padding probe (`media.adapt.bandwidth_probe`), from the
        estimate and the previous allocation, and tell the estimator."""
        previous = self.allocation
        if previous is None:
            return ProbeStep(self.probe, ProbeVerdict.IDLE)
        # no padding probe under a data budget (`media.adapt.data_saver`: data spent on nothing),
        # nor from the starting guess (no report yet: a probe at twice a guess is no test)
        saving = self.data_saver is not None and self.data_saver.active
        if link.bound is EstimateBound.INITIAL and not self.probe.running:
            return ProbeStep(self.probe, ProbeVerdict.IDLE)
        climbing = self._climbing()
        can_pad = (bool(paused_tracks(previous)) or climbing) and not saving
        if not can_pad and not self.probe.running:
            # nothing to carry padding, nothing to judge: `probe_step` would stay idle (the
            # usual tick, on a link that carries every video)
            return ProbeStep(self.probe, ProbeVerdict.IDLE)
        # a top layer held by the ceiling the relay set it could take more: CAPPED_CLIMB times
        # that ceiling (which a passed probe lifts at once, its encoder a second or two later)
        capped = {
            f"{s.track.participant_id}:{s.track.source}": s.source.ceiling_bps or 0.0
            for s in self._streams()
            if s.track is not None and s.source is not None and s.kind == "video"
            and capped_top_layer(s)
        }  # fmt: skip
        wanted = aim_max = 0.0
        for track in incoming:
            if track.is_audio:
                extra = self._policy.red_extra if previous.red else 0.0
                wanted += track.audio_bps * (1.0 + extra)
                aim_max += track.audio_bps * (1.0 + extra)
            elif track.costs is not None:
                full = track.costs.full_bps
                ceiling = capped.get(track.track_id)
                wanted += full if ceiling is None else max(full, ceiling) * CAPPED_CLIMB
                # the budget that would lift its ceiling to the page's own, and no further
                aim_max += full if ceiling is None else TOP_LAYER_MAX_BPS / TOP_STAY_SHARE
        remb = self.estimator.remb_sample()
        inputs = ProbeInputs(
            estimate_bps=link.bps,
            loss=link.loss,
            loss_at=link.loss_at,
            rtt_sample_s=self.estimator.rtt_sample_peak(self.probe.started_at),
            rtt_floor_s=self.estimator.rtt_floor(),
            rtt_settled=link.rtt_settled,
            carried_bps=link.carried_bps,
            sent_bps=link.sent_bps,
            delivered_bps=link.delivered_bps,
            # what goes out besides a probe: the allocation's costs, or more while a layer
            # ramps up to a ceiling just raised (its measured cost lags); padded above the
            # costs alone, a probe beside it overshot its target
            spent_bps=(
                previous.spent_bps if self.probe.running
                else max(previous.spent_bps, link.sent_bps)
            ),
            wanted_bps=wanted,
            aim_max_bps=aim_max if capped else math.inf,
            can_pad=can_pad,
            busy=previous.rung_probe_running or previous.resuming,
            climbing=climbing and not paused_tracks(previous),
            remb_bps=remb[0] if remb is not None else None,
            remb_at=remb[1] if remb is not None else None,
            loss_floor=self.estimator.loss_floor(),
        )
        before = self.probe.estimate_before
        step = probe_step(self.probe, inputs, now)
        self.probe = step.state
        if step.verdict is ProbeVerdict.STARTED:
            self.estimator.restart_loss_window(now)
        elif step.verdict is ProbeVerdict.FAILED:  # the next reports still describe it
            self.estimator.restart_loss_window(now + LOSS_SETTLE_S)
            # a failure that bounds the next probes (`ProbeState.failed_bps`) bounds the
            # estimate's rise too, when the link visibly overflowed: held at 90% of a target
            # that failed on a loss reading alone, the probes' bisection (never less than
            # `min_gain` above the estimate) stopped, and a 2 Mbit/s classroom whose 648k
            # probe read 3.1% on its 1% link sat on 180p for 30 s
            remembered = self.probe.failed_at == now
            bounds = remembered and step.overflowed
            self.estimator.probe_failed(before, now, self.probe.failed_bps if bounds else None)
            if remembered and link.delivered_bps > 0:  # the link's verdict
                # never below what the picture it carried before needs: the last report's
                # delivered rate may date from a smaller layer
                cap = failed_probe_pace_cap(
                    link.delivered_bps, previous.spent_bps, self._media_sent.bps(now)
                )
                self._failed_probe_pace = (cap, now + FAILED_PROBE_PACE_S)
        elif step.verdict is ProbeVerdict.PASSED:
            self.estimator.probe_passed(step.carried_bps, now)
            self._padding_passed_at = now
            self._resume_failed_at = None
            # the failed steps up that each track remembers were on a link that is gone, and
            # the probe was the proof a step up holds out for
            # (for a track whose failed step the probe carried: its room, what the probe
            # carried less what the others spend, covers that step)
            costs = {t.track_id: t.costs for t in incoming}
            tracks = []
            for t in previous.tracks:
                if t.decision is not None:
                    room = step.carried_bps - (previous.spent_bps - t.cost_bps)
                    decision = padding_probe_passed(
                        t.decision, now, self._policy.rung, room, costs.get(t.track_id)
                    )
                    t = replace(t, decision=decision)
                tracks.append(t)
            self.allocation = replace(previous, tracks=tuple(tracks))
        if step.verdict in (ProbeVerdict.STARTED, ProbeVerdict.PASSED, ProbeVerdict.FAILED):
            logger.debug(
                "padding probe %s%s participant=%s target=%.0fk carried=%.0fk loss=%.1f%%"
                " remb=%s",
                step.verdict, f" ({step.why})" if step.why else "", self.participant_id,
                step.state.target_bps / 1000, step.carried_bps / 1000, link.loss * 100,
                f"{remb[0] / 1000:.0f}k" if remb is not None else "-",
            )  # fmt: skip
        return step

    def _heartbeat(
        self, allocation: Allocation, by_id: dict[str, OutboundStream], pad_bps: float = 0.0
    ) -> bool:
        """Padding on each video stream the allocation pauses: its reports and the REMB keep
        coming while the video is off (`OutboundStream.send_padding`); on the first of them,
        a padding probe's `pad_bps` as well, or, with none paused, on the RTX stream beside a
        simulcast layer below its top (`OutboundStream.send_rtx_padding`). Whether the probe's
        padding was sent."""
        stamp = abs_send_time(time.time())
        for item in allocation.tracks:
            if item.decision is not None and item.decision.video_paused:
                stream = by_id[item.track_id]
                stream.send_padding(HEARTBEAT_PACKETS, HEARTBEAT_BYTES, stamp)
                if pad_bps > 0:
                    count = math.ceil(pad_bps * self._interval_s / 8 / PROBE_PACKET_COST)
                    stream.send_padding(count, PROBE_PADDING_BYTES, stamp)
                    pad_bps = 0.0
        if pad_bps > 0:  # no paused stream: beside a simulcast layer below its top (RTX)
            count = math.ceil(pad_bps * self._interval_s / 8 / PROBE_PACKET_COST)
            for stream in by_id.values():
                climbs = below_top_layer(stream) or capped_top_layer(stream)
                if climbs and stream.send_rtx_padding(
                    count, PROBE_PADDING_BYTES, stamp
                ):
                    pad_bps = 0.0
                    break
        return pad_bps == 0.0

    def _padding_climbs(self, now: float) -> frozenset[str]:
        """`padding_climbs` of this subscriber's streams now."""
        saving = self.data_saver is not None and self.data_saver.active
        return padding_climbs(self._streams(), saving, now - self._padding_passed_at)

    def _climbing(self) -> bool:
        """Some video stream could carry a padding probe beside its video: a simulcast layer
        below its top (`spatial.below_top_layer`), or the top one held by the ceiling the
        relay set it (`spatial.capped_top_layer`)."""
        return any(
            below_top_layer(s) or capped_top_layer(s) for s in self._streams() if s.kind == "video"
        )

    def start(self) -> None:
        """Tick every `interval_s` until `stop` (idempotent)."""
        self.ticker.start()

    async def stop(self) -> None:
        await self.ticker.stop()
