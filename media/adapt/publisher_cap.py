"""REMB towards a publisher, capping its send rate only when every subscriber of it is weak.

Sending more than any subscriber can take wastes the publisher's uplink (often a village
link too). Per published video track, `track_cap` looks at each subscriber's rung and share of
its budget: if one of them takes the full stream with room to grow, the track is not capped;
otherwise the cap is what the best of them can take (its share, scaled so the capped stream
then fits it on `full`), never below what the low rung's transcoder needs as input.
`publisher_cap` adds the publisher's tracks up: one uncapped track (or none with subscribers)
means no cap at all, since a browser applies REMB to its whole send rate. A simulcast camera
is never capped: its weak subscribers take a lower layer (`media.adapt.spatial`), and capping
the publisher would take the top layer from its strong ones. Nor is a track that crosses the
trunk to other nodes (`media.trunk`): their subscribers are not seen here.

`PublisherRemb` ticks once a second per uplink and sends the cap as REMB over the uplink's
RTCP; after a cap it keeps sending a high value for a few seconds, because a browser keeps
the last REMB it got.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from aiortc import RTCPeerConnection

from media.adapt.budget import Allocation
from media.adapt.rung import Rung
from media.adapt.ticker import Ticker
from media.forward.forwarder import InboundTrack
from media.peers.aiortc_bends import send_remb

logger = logging.getLogger(__name__)

TICK_S = 1.0


@dataclass(frozen=True, slots=True)
class SubscriberView:
    """What one subscriber takes of one published video track."""

    rung: Rung | None
    """Its rung (None: not decided yet, counts as strong)."""
    share_bps: float
    """The budget its adaptation offered this track."""


@dataclass(frozen=True, slots=True)
class CapPolicy:
    """Constants of the cap; the defaults are what the relay uses."""

    fit: float = 0.8
    """The cap is the best subscriber's share times this (1 / (1 + the rung's up margin)), so
    the capped stream fits it on `full`."""
    strong_margin: float = 0.5
    """A subscriber on `full` whose share exceeds the stream's bitrate by this share is strong:
    it could take more, so the track is not capped."""
    low_input_bps: float = 300_000.0
    """Never cap a track below this: the low rung's transcoder needs a decent picture."""
    uncapped_bps: float = 20_000_000.0
    """What is sent to lift a cap (a browser keeps the last REMB)."""
    lift_ticks: int = 5
    """Ticks the lifting value is sent after the last cap."""


def track_cap(
    subscribers: Sequence[SubscriberView], full_bps: float, policy: CapPolicy = CapPolicy()
) -> float | None:
    """The cap for one video track now sending `full_bps`, or None for no cap (no
    subscribers, or one that is strong)."""
    if not subscribers:
        return None
    for view in subscribers:
        if view.rung is None:
            return None
        if view.rung is Rung.FULL and view.share_bps >= full_bps * (1.0 + policy.strong_margin):
            return None
    best = max(view.share_bps for view in subscribers)
    return max(best * policy.fit, policy.low_input_bps)


def publisher_cap(caps: Sequence[float | None], audio_bps: float) -> float | None:
    """The REMB value for the whole publisher: its video tracks' caps plus its audio, or None
    when one video track is uncapped or it has none."""
    if not caps or any(cap is None for cap in caps):
        return None
    return sum(cap for cap in caps if cap is not None) + audio_bps


@runtime_checkable
class AllocatingLink(Protocol):
    """A subscriber's link feedback that also allocates its budget (`DownlinkAdaptation`)."""

    allocation: Allocation | None


def subscriber_views(track: InboundTrack) -> list[SubscriberView]:
    """The rung and share of every subscriber of `track` that adapts (from its allocation)."""
    track_id = f"{track.participant_id}:{track.source}"
    views: list[SubscriberView] = []
    for stream in list(track.subscribers):
        link = stream.link
        allocation = link.allocation if isinstance(link, AllocatingLink) else None
        if allocation is None:
            views.append(SubscriberView(None, 0.0))
            continue
        item = allocation.of(track_id)
        views.append(
            SubscriberView(item.rung if item is not None else None,
                           item.share_bps if item is not None else 0.0)
        )
    return views


RembSender = Callable[[int, list[int]], None]
"""(bitrate, media SSRCs) -> sends one REMB to the publisher."""


def remb_sender(pc: Callable[[], RTCPeerConnection | None]) -> RembSender:
    """Sends REMB over the RTCP of the peer connection `pc()` returns (through one of its
    receivers, as aiortc's own receiver sends it)."""

    def send(bitrate: int, ssrcs: list[int]) -> None:
        connection = pc()
        if connection is None:
            return
        for transceiver in connection.getTransceivers():
            if send_remb(transceiver.receiver, bitrate, ssrcs):
                return

    return send


class PublisherRemb:
    """Sends one publisher the REMB cap its subscribers call for, once a second."""

    def __init__(
        self,
        tracks: Callable[[], list[InboundTrack]],
        send: RembSender,
        *,
        policy: CapPolicy = CapPolicy(),
        clock: Callable[[], float] = time.monotonic,
        interval_s: float = TICK_S,
    ) -> None:
        self._tracks = tracks
        self._send = send
        self._policy = policy
        self._clock = clock
        self._lift_left = 0
        self.ticker = Ticker(self.tick, interval_s, "publisher REMB tick")
        self.cap_bps: float | None = None
        """The cap sent last (None: not capped)."""
        self.sent = 0

    def tick(self) -> float | None:
        """Decide and send once; returns the cap (None: none)."""
        tracks = [t for t in self._tracks() if not t.closed]
        video = [t for t in tracks if t.kind == "video"]
        now = self._clock()
        caps = [
            None if t.spatial_layers  # simulcast: a weak subscriber takes a lower layer instead
            or t.trunk is not None  # crosses to other nodes: their subscribers are unseen here
            else track_cap(subscriber_views(t), sum(t.layer_rates(now)), self._policy)
            for t in video
        ]
        audio = sum(sum(t.layer_rates(now)) for t in tracks if t.kind == "audio")
        cap = publisher_cap(caps, audio)
        ssrcs = [t.ssrc for t in tracks if t.ssrc is not None]
        if cap is not None:
            self._lift_left = self._policy.lift_ticks
            if ssrcs:
                self._send(int(cap), ssrcs)
                self.sent += 1
        elif self._lift_left > 0:
            self._lift_left -= 1
            if ssrcs:
                self._send(int(self._policy.uncapped_bps), ssrcs)
                self.sent += 1
        publisher = tracks[0].participant_id if tracks else "-"
        if cap != self.cap_bps and (cap is None) != (self.cap_bps is None):
            logger.info("publisher REMB cap %s participant=%s",
                        "off" if cap is None else f"{cap / 1000:.0f}k", publisher)  # fmt: skip
        elif cap is not None:  # each value while capped, in a traced run
            logger.debug("publisher REMB cap %.0fk participant=%s", cap / 1000, publisher)
        self.cap_bps = cap
        return cap

    def start(self) -> None:
        """Tick every `interval_s` until `stop` (idempotent)."""
        self.ticker.start()

    async def stop(self) -> None:
        await self.ticker.stop()
