"""Data saver on one subscriber's downlink: the meter, the cap on the estimate, the `data` event.

A `DataSaver` belongs to one `Downlink` and lives as long as the participant is in the room
(its peer connections may be rebuilt meanwhile). Every adaptation tick
(`DownlinkAdaptation.tick`) hands it the link estimate and the subscriber's streams: it counts
what the streams sent since the last tick (media, retransmissions, padding, each packet's
headers: what the participant's data plan pays for, RTCP and ICE aside), and while a budget
is set returns the estimate capped at `data_budget.downlink_ceiling` (`ceiling_bps`, and the
bound `EstimateBound.DATA_SAVER` when the ceiling is the tighter limit). The allocation treats
the ceiling as a policy limit (no rung probe or proven hold above it, even while the link's
own estimate is lower), and the rung decision picks the cheaper rung, fewer frames or audio
only by itself. While a budget is set no padding probe starts: padding is data spent on
nothing the participant sees (on loopback, probes cycling under a 40 MB/h budget doubled
what it received), so a link that comes back after a dip is found by rung probes, sending
video, instead.

Every `EVENT_EVERY_S`, and at once when the budget changes, a `data` event tells the
participant what was used and what the budget allows (signaling turns it into a `data`
frame; the page shows "MB used / budget" and "limited by your data budget").
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from media.adapt.budget import Allocation, BudgetPolicy, IncomingTrack
from media.adapt.data_budget import (
    AUDIO_ONLY_BPS,
    HEARTBEAT_BPS,
    MB,
    BudgetVerdict,
    Ceiling,
    DataPolicy,
    downlink_ceiling,
    valid_budget,
    verdict,
)
from media.adapt.estimator import EstimateBound, LinkEstimate
from media.adapt.rung import RungReason
from media.forward.forwarder import PACKET_OVERHEAD, OutboundStream

EVENT_EVERY_S = 5.0
"""A `data` event this often (the cadence of the adaptation's `link_stats`)."""
DATA_SAVER_REASON = "data_saver"
"""The `reason` of a `link` event whose step down the data budget, not the link, caused."""

Event = dict[str, Any]


def audio_floor(
    incoming: Sequence[IncomingTrack], red: bool, policy: BudgetPolicy = BudgetPolicy()
) -> float:
    """What audio costs this subscriber (RED included while on) plus the heartbeat of each of
    its video streams were they all paused: what the budget can never cut. Before any track
    is measured, a teacher's audio and paused camera (`AUDIO_ONLY_BPS`)."""
    audio = sum(t.audio_bps for t in incoming if t.is_audio)
    if audio <= 0:
        return AUDIO_ONLY_BPS
    videos = sum(1 for t in incoming if not t.is_audio)
    return audio * (1.0 + policy.red_extra if red else 1.0) + videos * HEARTBEAT_BPS


def wanted_bps(incoming: Sequence[IncomingTrack]) -> float:
    """What every track costs at its best rung (audio without RED)."""
    return sum(
        t.audio_bps if t.is_audio else t.costs.full_bps if t.costs is not None else 0.0
        for t in incoming
    )


def data_event(
    participant_id: str,
    used_bytes: int,
    elapsed_s: float,
    budget_mb_h: float | None,
    ceiling: Ceiling | None,
    state: BudgetVerdict | None,
) -> Event:
    """The media event signaling turns into the participant's `data` frame."""
    return {
        "type": "data",
        "participant": participant_id,
        "used_mb": round(used_bytes / MB, 2),
        "elapsed_s": round(elapsed_s, 1),
        "budget_mb_h": budget_mb_h,
        "allowed_mb": round(ceiling.allowed_bytes / MB, 2) if ceiling is not None else None,
        "ceiling_kbps": round(ceiling.bps / 1000, 1) if ceiling is not None else None,
        "verdict": str(state) if state is not None else None,
    }


class DataSaver:
    """The data meter and budget of one subscriber; see the module docstring."""

    def __init__(
        self,
        participant_id: str,
        emit: Callable[[Event], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        policy: DataPolicy = DataPolicy(),
    ) -> None:
        self.participant_id = participant_id
        self._emit = emit
        self._clock = clock
        self._policy = policy
        self.started_at = clock()
        """When the participant joined the room: the budget counts from here."""
        self.budget_mb_h: float | None = None
        """The budget in MB per hour, or None (the meter still counts)."""
        self.sent_bytes = 0
        """What the relay sent this subscriber since it joined (wire bytes, estimated)."""
        self.ceiling: Ceiling | None = None
        """The last ceiling computed (None without a budget)."""
        self.verdict: BudgetVerdict | None = None
        """Whether the budget holds the picture down (None without a budget)."""
        self.binding = False
        """The ceiling was below the link's own estimate at the last tick (the cap applied)."""
        self._counted: weakref.WeakKeyDictionary[OutboundStream, int] = (
            weakref.WeakKeyDictionary()
        )
        self._event_at: float | None = None

    @property
    def active(self) -> bool:
        """A budget is set (no padding probes then)."""
        return self.budget_mb_h is not None

    @property
    def limiting(self) -> bool:
        """The budget, not the link, decides what the subscriber receives now."""
        return self.verdict in (BudgetVerdict.LIMITING, BudgetVerdict.BELOW_AUDIO)

    def set_budget(self, budget_mb_h: float | None) -> None:
        """Set (or clear, with None) the budget; ValueError when out of range. The meter keeps
        counting from the join: a budget set late still covers the whole session."""
        self.budget_mb_h = valid_budget(budget_mb_h)
        if self.budget_mb_h is None:
            self.ceiling = self.verdict = None
            self.binding = False
        self._send_event(self._clock())

    def count(self, streams: Iterable[OutboundStream]) -> None:
        """Add what `streams` sent since the last count (a new stream from its first byte)."""
        for stream in streams:
            total = (
                stream.octets
                + stream.retransmitted_octets
                + (stream.packets + stream.retransmitted) * PACKET_OVERHEAD
            )
            before = self._counted.get(stream, 0)
            self.sent_bytes += max(total - before, 0)
            self._counted[stream] = total

    def limit(
        self,
        link: LinkEstimate,
        streams: Iterable[OutboundStream],
        incoming: Sequence[IncomingTrack],
        previous: Allocation | None,
        now: float,
    ) -> LinkEstimate:
        """Count, then `link` capped at what the budget allows now (unchanged without one,
        or when the link is the tighter limit); sends the periodic `data` event. `incoming`:
        the subscriber's tracks with their costs; `previous`: the last allocation (RED)."""
        self.count(streams)
        capped = link
        if self.budget_mb_h is not None:
            red = previous is not None and previous.red
            ceiling = downlink_ceiling(
                self.budget_mb_h, self.sent_bytes, now - self.started_at,
                audio_floor(incoming, red), self._policy,
            )  # fmt: skip
            self.ceiling = ceiling
            self.verdict = verdict(ceiling, wanted_bps(incoming))
            capped = replace(link, ceiling_bps=ceiling.bps)
            self.binding = ceiling.bps < link.bps
            if self.binding:
                capped = replace(
                    capped,
                    bps=ceiling.bps,
                    bound=EstimateBound.DATA_SAVER,
                    carried_bps=min(link.carried_bps, ceiling.bps),
                )
        if self._event_at is None or now - self._event_at >= EVENT_EVERY_S:
            self._send_event(now)
        return capped

    def reason(self, reason: str) -> str:
        """The `link` event's reason: `data_saver` for a step the budget caused: a shortfall
        (or a start) under a budget that holds the picture down, or loss while the cap was
        below the link's own estimate (the pacer, at the cap, queued and dropped what the
        link would have carried)."""
        down = reason in (RungReason.SHORTFALL, RungReason.START, RungReason.UNAVAILABLE)
        paced = reason == RungReason.LOSS and self.binding
        return DATA_SAVER_REASON if (down and self.limiting) or paced else reason

    def _send_event(self, now: float) -> None:
        self._event_at = now
        elapsed = now - self.started_at
        self._emit(data_event(self.participant_id, self.sent_bytes, elapsed, self.budget_mb_h,
                              self.ceiling, self.verdict))  # fmt: skip
