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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from media.adapt.ticker import Ticker
from media.forward.forwarder import InboundTrack

logger = logging.getLogger(__name__)

PAUSE_AFTER_S = 5.0
"""A layer is paused once it has been unwanted this long (resumed at once when wanted)."""
RESUME_GRACE_S = 4.0
"""After a resume, a layer that still does not flow is no longer offered by its held rates
(the publisher's own estimator keeps it off)."""
RESEND_S = 10.0
"""While a layer is paused, the `layers` event is repeated this often: a frame lost to a
WebSocket reconnect must not leave the page sending what the relay thinks it paused (or,
worse, paused what the relay asked back)."""
TICK_S = 0.5
"""How often a publisher's layers are decided (as often as the subscribers' rungs)."""

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


def layers_event(source: str, rids: Sequence[str], active: frozenset[int]) -> Event:
    """The media event signaling turns into a `layers` frame to the publisher."""
    return {
        "type": "layers",
        "source": source,
        "active": [rid for i, rid in enumerate(rids) if i in active],
    }


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
            if state.active != previous.active:
                logger.info(
                    "dynacast participant=%s source=%s active=%s",
                    track.participant_id, track.source,
                    ",".join(r for i, r in enumerate(rids) if i in state.active),
                )  # fmt: skip
            elif len(state.active) == len(layers) or (
                now - self._sent_at.get(track, now) < RESEND_S
            ):
                continue
            self._sent_at[track] = now
            self._emit(layers_event(track.source, rids, state.active))
        self._states = states
        self._sent_at = {t: at for t, at in self._sent_at.items() if t in states}
        self._resumed_at = {k: at for k, at in self._resumed_at.items() if k[0] in states}

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
                flows = sum(layer.last_rates) > 0.0
                if flows or resumed is None or now - resumed >= RESUME_GRACE_S:
                    layer.held_rates = None
                    self._resumed_at.pop(key, None)

    def start(self) -> None:
        self.ticker.start()

    async def stop(self) -> None:
        await self.ticker.stop()
