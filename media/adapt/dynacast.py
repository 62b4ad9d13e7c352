"""Dynacast: ask a simulcast publisher to stop sending the layers nobody watches.

A teacher's browser encodes and sends 180p, 360p and 720p; when every classroom is on a weak
link and takes 180p, the 720p layer is 1.7 Mbit/s of the teacher's own (often rural) uplink
and CPU spent on nothing. Like LiveKit's dynacast, the relay works out per simulcast track
which layers are wanted and tells the publisher (a `layers` event, the page sets
`RTCRtpEncodingParameters.active`):

- `wanted_layers` (pure): the union of the layers the track's subscribers are on or switching
  to (a paused subscriber counts for none), plus the lowest layer always (a subscriber steps
  down to it at once, a new one starts on it), plus every layer something taps (the recording
  records the top layer), plus every layer another node's subscribers watch (`media.trunk`);
- `next_active` (pure): hysteresis. A wanted layer resumes at once; an unwanted one pauses
  only once it has been unwanted for `PAUSE_AFTER_S`, so a subscriber flapping between two
  layers does not make the publisher's encoder start and stop;
- `Dynacast`: one publisher's controller, ticked with its uplink; it emits an event when a
  track's active set changes, and keeps each paused layer's last measured rates
  (`InboundTrack.held_rates`) so the subscribers' ladders (`media.adapt.spatial`) still offer
  it: a subscriber whose rung wants a paused layer switches to it (`switch_source`, pending
  until that layer's keyframe), which makes it wanted, which resumes it; the switch completes
  at the first keyframe the resumed encoder sends.

It also sets the bitrate ceiling of the highest layer sending (`top_ceiling`, pure;
`max_kbps` in the same event). A browser gives a lower layer only its resolution's target
(180p: 150k, 360p: 500k) and the highest active one everything up to its ceiling; fixed
ceilings leave a hole either way: with the top at what a direct call gives (1.7 Mbit/s), a
1 Mbit/s classroom cannot take it and gets 180p; with the top near the middle layer, a
2 Mbit/s classroom gets a third of a direct call. So the highest active layer costs what the
weakest of its subscribers that can take it at all can take: a share of that subscriber's
budget for the track (`OutboundStream.share_bps`, set by its adaptation), at least the layer
below's rate doubled, never above the page's own ceiling. A class whose classrooms can all
watch 360p all do, at the rate the weakest of them carries (no one gets less than the fixed
ceilings gave); one classroom alone gets most of its link. A watcher on that layer keeps it
within its budget (`TOP_STAY_SHARE`); one below brings it into reach (`TOP_CLIMB_SHARE`, the
rung's up margin), and its padding probes then aim at that cost, not beyond the link
(`media.adapt.spatial.capped_top_layer`). The paused layer above it
is held at what it would cost by the same rule (`_cap_held`), so a ladder can climb to it.
The lowest layer is everyone's last step before audio only, so when it is the highest
sending (every classroom watches 180p) its ceiling follows the weakest subscriber instead
(`lowest_ceiling`, paused ones included): from 150k (what it has below another layer) up to
the page's 300k (30 fps, where 150k drops to 21-25 fps on a noisy camera) when
all can take it. Below another layer it gets the same ceiling: a browser gives the lower layers
what the top one, held at its ceiling, leaves (a 180p measured 212k under a capped 360p), and
each classroom's ladder counts 180p at no more than the ceiling its own budget would set
(`spatial.ladder_rates`): a classroom whose budget falls under what 180p took keeps 180p while
its ceiling comes down, where it was paused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from media.adapt.spatial import (
    LOWEST_FLOOR_BPS,
    TOP_LAYER_MAX_BPS,
    Rates,
    held_or_last,
    top_floor,
    within,
)
from media.adapt.ticker import Ticker
from media.forward.forwarder import InboundTrack

logger = logging.getLogger(__name__)

PAUSE_AFTER_S = 5.0
"""A layer is paused once it has been unwanted this long (resumed at once when wanted)."""
RESUME_GRACE_S = 4.0
"""After a resume, a layer that still does not flow is no longer offered by its held rates
(the publisher's own estimator keeps it off)."""
RAMPED_SHARE = 0.8
"""A resumed layer sending this share of its held rate has ramped (`ramped`)."""
RESUME_RAMP_S = 3.0
"""... and one that flows this long after its resume has too, whatever it sends."""
RESEND_S = 10.0
"""While a layer is paused, the `layers` event is repeated this often: a frame lost to a
WebSocket reconnect must not leave the page sending what the relay thinks it paused (or,
worse, paused what the relay asked back)."""
TICK_S = 0.5
"""How often a publisher's layers are decided (as often as the subscribers' rungs)."""

TOP_STAY_SHARE = 0.92
"""The top layer may cost this share of the budget of a subscriber on it: a rung is kept
while the budget covers its cost less `RungPolicy.shortfall_tolerance`, and a layer's
measured rate runs above the encoder's target (RTP headers, keyframes: 5-7%). At 0.85 the
page's own 1.7 Mbit/s took a 2.0 Mbit/s budget, more than a 2 Mbit/s classroom's link: the
probes that would have lifted it there overflowed the link, and the classroom played
1.3-1.5 Mbit/s where a direct call sends 1.7..."""
TOP_CLIMB_SHARE = 0.72
"""... and this share of the budget of a subscriber below it: a rung comes into reach at its
cost times 1 + `RungPolicy.up_margin` (1.25), with a little to spare."""
LOWEST_SHARE = 0.85
"""The lowest layer's ceiling is this share of the weakest budget, as the top layer's: at
60% a 500 kbit/s classroom got 150k of 180p at 20-22 fps (30 fps in a direct call at 320k).
(85% once looked too much for a 300 kbit/s classroom, 3 fps: that was the keyframes every
PLI to a paused layer cost, `InboundTrack.set_publisher_paused`.)"""
CEILING_STEP = 0.12
"""A new ceiling is sent when it differs from the last one sent by this share..."""
CEILING_EVERY_S = 0.5
"""... at most this often (every tick: a ceiling a passed probe lifts is wanted at once)."""
RAMP_S = 2.5
"""A layer whose ceiling was raised this long ago or less is still held by it
(`InboundTrack.ceiling_rising`), whatever it sends: the publisher's encoder takes a second or
two to reach a new ceiling, and a subscriber that waited for it before its next padding probe
took 4 s a round to climb a 2 Mbit/s link (`media.adapt.spatial.capped_top_layer`)."""

Event = dict[str, Any]


def wanted_layers(
    subscribed: Iterable[int], layer_count: int, tapped: Iterable[int] = ()
) -> frozenset[int]:
    """The layers (indices, lowest first) a simulcast track must send: those subscribers are
    on or switching to, those tapped (recording), and the lowest one always. Indices out of
    range are ignored."""
    if layer_count <= 0:
        return frozenset()
    wanted = {0}
    wanted.update(i for i in subscribed if 0 <= i < layer_count)
    wanted.update(i for i in tapped if 0 <= i < layer_count)
    return frozenset(wanted)


@dataclass(frozen=True)
class LayerState:
    """Which layers of one track the publisher is asked to send, and since when each unwanted
    one is unwanted."""

    active: frozenset[int]
    unwanted_since: dict[int, float] = field(default_factory=dict)


def initial_state(layer_count: int) -> LayerState:
    """Every layer active (what the publisher sends before the relay said anything)."""
    return LayerState(frozenset(range(layer_count)))


def next_active(
    state: LayerState,
    wanted: frozenset[int],
    now: float,
    pause_after_s: float = PAUSE_AFTER_S,
    pausable: frozenset[int] | None = None,
) -> LayerState:
    """The next state: wanted layers active at once; an active layer unwanted for
    `pause_after_s` paused, if it is `pausable` (None: any). Only a layer whose rate was
    measured is: a layer the publisher has not started yet (its encoder ramps up 720p last)
    is on no subscriber's ladder, and paused it could never be asked for again; its time
    unwanted counts from when it flows, so subscribers have time to take it."""
    since: dict[int, float] = {}
    active = set(state.active | wanted)
    for layer in state.active - wanted:
        started = state.unwanted_since.get(layer, now)
        if pausable is not None and layer not in pausable:
            since[layer] = now  # its time counts from when it flows (subscribers take it)
        elif now - started >= pause_after_s:
            active.discard(layer)
        else:
            since[layer] = started
    return LayerState(frozenset(active), since)


def layer_index(track: InboundTrack, layer: InboundTrack | None) -> int | None:
    """Where `layer` is among `track`'s simulcast layers (None: not one of them)."""
    if layer is None:
        return None
    for i, candidate in enumerate(track.spatial_layers):
        if candidate is layer:
            return i
    return None


def subscribed_layers(track: InboundTrack) -> list[int]:
    """The layers `track`'s subscribers are on or switching to (paused streams: none)."""
    found: list[int] = []
    for stream in list(track.subscribers):
        if stream.paused:
            continue
        for layer in (stream.source, stream.pending):
            index = layer_index(track, layer)
            if index is not None:
                found.append(index)
    return found


def top_ceiling(watchers: Iterable[tuple[bool, float]], below_bps: float) -> float | None:
    """The bitrate ceiling of the highest layer sending, above the lowest, from its
    subscribers' budgets: `watchers` holds, for each subscriber that receives the track,
    whether it is on that layer and its budget for the track (bits per second); `below_bps` is
    the measured rate of the layer under it. What the weakest subscriber that can take the
    layer at its floor can take (the floor if none can); None: no budget known (the page's
    own ceiling)."""
    reach = [
        share * (TOP_STAY_SHARE if on_top else TOP_CLIMB_SHARE)
        for on_top, share in watchers
        if share > 0.0
    ]
    if not reach:
        return None
    floor = top_floor(below_bps)
    capable = [bps for bps in reach if bps >= floor]
    return min(min(capable, default=floor), TOP_LAYER_MAX_BPS)


def lowest_ceiling(shares: Iterable[float]) -> float | None:
    """The lowest layer's ceiling while it is the highest sending: `LOWEST_SHARE` of the
    weakest subscriber's budget (`shares`: each one's budget for the track, paused ones too),
    at least `LOWEST_FLOOR_BPS`. None: no budget known."""
    known = [share for share in shares if share > 0.0]
    if not known:
        return None
    return min(max(LOWEST_FLOOR_BPS, min(known) * LOWEST_SHARE), TOP_LAYER_MAX_BPS)


def ceiling_due(
    sent: float | None, ceiling: float | None, sent_at: float | None, now: float
) -> bool:
    """Whether to tell the publisher `ceiling` when it was last told `sent` at `sent_at`: a
    ceiling set or lifted at once, a change of `CEILING_STEP` or more, or one that reaches the
    page's own (`TOP_LAYER_MAX_BPS`), at most every `CEILING_EVERY_S`. (The step alone left a
    2 Mbit/s classroom's 360p held at 1545k for good: 1700k is 10% above it.)"""
    if (sent is None) != (ceiling is None):
        return True
    if sent is None or ceiling is None or sent_at is None:
        return False
    changed = abs(ceiling - sent) >= CEILING_STEP * sent or ceiling >= TOP_LAYER_MAX_BPS > sent
    return changed and now - sent_at >= CEILING_EVERY_S


def layers_event(
    source: str,
    rids: Sequence[str],
    active: frozenset[int],
    ceilings: dict[int, float] | None = None,
) -> Event:
    """The media event signaling turns into a `layers` frame to the publisher: the active
    RIDs and, per RID, a bitrate ceiling in kbit/s (`max_kbps`; a RID not named keeps the
    page's own)."""
    return {
        "type": "layers",
        "source": source,
        "active": [rid for i, rid in enumerate(rids) if i in active],
        "max_kbps": {
            rids[i]: round(bps / 1000.0)
            for i, bps in sorted((ceilings or {}).items())
            if 0 <= i < len(rids)
        },
    }


def layer_watchers(track: InboundTrack, layer: InboundTrack) -> list[tuple[bool, float]]:
    """For `top_ceiling`: each subscriber stream of `track` that receives video and has a
    budget, whether it is on (or switching to) `layer`, and that budget."""
    found: list[tuple[bool, float]] = []
    for stream in list(track.subscribers):
        if stream.paused or stream.share_bps is None:
            continue
        found.append((layer in (stream.source, stream.pending), stream.share_bps))
    return found


def subscriber_shares(track: InboundTrack) -> list[float]:
    """For `lowest_ceiling`: the budget of each subscriber stream of `track`, paused or not."""
    return [s.share_bps for s in list(track.subscribers) if s.share_bps is not None]


class Dynacast:
    """One publisher's dynacast: every `TICK_S`, for each simulcast track, the layers wanted,
    with hysteresis, and a `layers` event to the publisher when they change."""

    def __init__(
        self,
        tracks: Callable[[], list[InboundTrack]],
        emit: Callable[[Event], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        pause_after_s: float = PAUSE_AFTER_S,
    ) -> None:
        self._tracks = tracks
        self._emit = emit
        self._clock = clock
        self._pause_after_s = pause_after_s
        self._states: dict[InboundTrack, LayerState] = {}
        """Each simulcast track's state (tracks that went away are forgotten at the next tick)."""
        self._resumed_at: dict[tuple[InboundTrack, int], float] = {}
        self._sent_at: dict[InboundTrack, float] = {}
        self._raised_at: dict[tuple[InboundTrack, int], float] = {}
        """When each layer's ceiling was last raised (`RAMP_S`)."""
        self._ceilings: dict[
            InboundTrack, tuple[int, dict[int, tuple[float | None, float]]]
        ] = {}
        """Each simulcast track's ceilings last sent: the highest layer sending then, and per
        layer (that one, and the lowest under it) the ceiling (None: the page's own) and when."""
        self.ticker = Ticker(self.tick, TICK_S, "dynacast tick")

    def active(self, track: InboundTrack) -> frozenset[int] | None:
        """The layers of `track` the publisher is asked to send (None: not decided yet)."""
        state = self._states.get(track)
        return state.active if state is not None else None

    def tick(self) -> None:
        now = self._clock()
        live = [t for t in self._tracks() if t.spatial_layers and not t.closed]
        states: dict[InboundTrack, LayerState] = {}
        for track in live:
            layers = track.spatial_layers
            previous = self._states.get(track) or initial_state(len(layers))
            tapped = [
                i for i, layer in enumerate(layers) if layer.taps or layer.watched_remotely
            ]
            wanted = wanted_layers(subscribed_layers(track), len(layers), tapped)
            measured = frozenset(
                i for i, layer in enumerate(layers)
                if sum(layer.last_rates) > 0.0 or layer.held_rates is not None
            )
            state = next_active(previous, wanted, now, self._pause_after_s, measured)
            states[track] = state
            self._hold(track, previous.active, state.active, now)
            rids = [layer.rid or "" for layer in layers]
            top = max(state.active, default=0)
            wanted_ceilings = {top: self._ceiling(track, top, tapped)}
            if top > 0:  # the lowest under it: its weakest subscriber's too (`lowest_ceiling`)
                wanted_ceilings[0] = self._ceiling(track, 0, tapped)
            sent_top, sent = self._ceilings.get(track, (top, {}))
            new_ceiling = sent_top != top
            sent = {} if new_ceiling else dict(sent)
            for i, ceiling in wanted_ceilings.items():
                was, at = sent.get(i, (None, None))
                if ceiling_due(was, ceiling, at, now):
                    sent[i] = (ceiling, now)
                    new_ceiling = True
                    if was is not None and (ceiling is None or ceiling > was):
                        self._raised_at[(track, i)] = now
                    logger.info(
                        "dynacast participant=%s source=%s layer=%s ceiling=%s",
                        track.participant_id, track.source, rids[i],
                        "page" if ceiling is None else f"{ceiling / 1000:.0f}k",
                    )  # fmt: skip
            self._ceilings[track] = (top, sent)
            told = {i: ceiling for i, (ceiling, _) in sent.items() if ceiling is not None}
            for i, layer in enumerate(layers):
                layer.ceiling_bps = told.get(i)
                raised = self._raised_at.get((track, i))
                layer.ceiling_rising = (
                    i in told and raised is not None and now - raised < RAMP_S
                )
                layer.set_publisher_paused(i not in state.active)
            if top + 1 < len(layers):  # what the paused layer above would cost, resumed
                above = self._ceiling(track, top + 1, tapped)
                if above is not None:
                    _cap_held(layers[top + 1], above)
            if state.active != previous.active:
                logger.info(
                    "dynacast participant=%s source=%s active=%s",
                    track.participant_id, track.source,
                    ",".join(r for i, r in enumerate(rids) if i in state.active),
                )  # fmt: skip
            elif not new_ceiling and (
                len(state.active) == len(layers) or now - self._sent_at.get(track, now) < RESEND_S
            ):
                continue
            self._sent_at[track] = now
            self._emit(layers_event(track.source, rids, state.active, told or None))
        self._states = states
        self._sent_at = {t: at for t, at in self._sent_at.items() if t in states}
        self._ceilings = {t: c for t, c in self._ceilings.items() if t in states}
        self._resumed_at = {k: at for k, at in self._resumed_at.items() if k[0] in states}
        self._raised_at = {k: at for k, at in self._raised_at.items() if k[0] in states}

    @staticmethod
    def _ceiling(track: InboundTrack, index: int, tapped: Sequence[int]) -> float | None:
        """Layer `index`'s ceiling were it the highest sending (None: the page's own, also
        while the recording or another node takes it: their budgets are not known here)."""
        layers = track.spatial_layers
        if index in tapped or not 0 <= index < len(layers):
            return None
        if index == 0:
            return lowest_ceiling(subscriber_shares(track))
        below = held_or_last(layers[index - 1])
        if index == 1:  # the lowest below it costs its target there, not what it took alone
            below = min(below, LOWEST_FLOOR_BPS)
        return top_ceiling(layer_watchers(track, layers[index]), below)

    def _hold(
        self, track: InboundTrack, before: frozenset[int], after: frozenset[int], now: float
    ) -> None:
        """Keep a paused layer's rates for the ladders while it is paused (and a moment after
        it is resumed, until it flows again)."""
        for i, layer in enumerate(track.spatial_layers):
            key = (track, i)
            if i in before and i not in after:
                rates = layer.last_rates
                if sum(rates) > 0.0:
                    layer.held_rates = rates
                self._resumed_at.pop(key, None)
            elif i in after and i not in before:
                self._resumed_at[key] = now
            elif i in after and layer.held_rates is not None:
                resumed = self._resumed_at.get(key)
                if resumed is None or ramped(layer.last_rates, layer.held_rates, now - resumed):
                    layer.held_rates = None
                    self._resumed_at.pop(key, None)

    def start(self) -> None:
        self.ticker.start()

    async def stop(self) -> None:
        await self.ticker.stop()


def ramped(rates: Rates, held: Rates, since_resume_s: float) -> bool:
    """Whether a resumed layer's measured `rates` replace its `held` ones on the ladders: once
    it sends `RAMPED_SHARE` of them, or `RESUME_RAMP_S` after its resume if it flows at all,
    or `RESUME_GRACE_S` after it if it still does not. Its encoder restarts from nothing, and
    its rate, measured over a window, takes a second or two to climb: read at once, a 500
    kbit/s classroom's 360p layer cost 62k half a second after its resume, the pacer let its
    keyframe and NACKs go unpaced ("room for everything"), and 71% of them were lost."""
    total = sum(rates)
    if total <= 0.0:
        return since_resume_s >= RESUME_GRACE_S
    return total >= RAMPED_SHARE * sum(held) or since_resume_s >= RESUME_RAMP_S


def _cap_held(layer: InboundTrack, ceiling: float) -> None:
    """A paused top layer's held rates scaled down to its new ceiling: the ladders must see
    what it will cost when resumed, not what it cost before (`media.adapt.spatial`)."""
    if layer.held_rates is not None:
        layer.held_rates = within(layer.held_rates, ceiling)
