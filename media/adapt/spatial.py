"""Simulcast layers on the rung ladder: which spatial layer a subscriber's rung stands for.

A simulcast publisher (`InboundTrack.spatial_layers`, lowest resolution first) sends e.g.
180p, 360p and 720p. Its rungs map onto the layers that flow (measured rate above zero), at
no server CPU and with no transcoder:

| rung | layer |
| --- | --- |
| `full` | the highest layer that flows |
| `reduced_fps` (n) | layer n, all its frames (360p rather than 720p at 7.5 fps) |
| `low` | the lowest layer (the 180p one instead of the transcoded rendition) |
| `low` (n > 0) | the lowest layer without its top temporal layer (15 fps of an L1T3 180p) |
| `audio_only` | none (paused) |

so `rung.decide` keeps its hysteresis (down fast, up slow, probes, ceilings) unchanged, on
costs measured per layer (`simulcast_costs`): `full` costs the top layer, each `reduced_fps`
step a lower one, `low` the lowest. While a single layer flows, its own temporal layers make
the ladder, as for a single-layer publisher (but without a low rung). The switch itself is
the stream's: `OutboundStream.switch_source` to the layer's track, up or down, taking over at
that layer's next keyframe (requested at once); the current layer goes on until then.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence

from media.adapt.rung import Rung, RungCosts, RungDecision, half_low
from media.forward.forwarder import InboundTrack, OutboundStream

MIN_STEP_BPS = 1.0
"""A higher layer never counts as cheaper than the one below it (rates measured a window
apart can cross)."""

Rates = tuple[float, float, float, float]


def flowing(totals: Sequence[float]) -> tuple[int, ...]:
    """The indices of the layers whose measured rate is above zero, lowest first."""
    return tuple(i for i, bps in enumerate(totals) if bps > 0.0)


def simulcast_costs(
    layer_rates: Sequence[Rates],
    low_floor_bps: float | None = None,
    capped: Collection[int] = (),
) -> RungCosts:
    """The rung costs of a simulcast track from each layer's temporal-layer rates (lowest layer
    first): with two layers or more flowing, `layer_bps` holds the second lowest layer's rate
    then each higher layer's extra cost, and `low_bps` the lowest layer's (`low_floor_bps`:
    the least it can be brought to, when its ceiling follows the subscribers; the highest
    layer flowing can be brought to its `top_floor` when it is among the layers whose
    ceiling the relay sets, `capped`); with one flowing, its temporal layers; with none,
    nothing measured yet."""
    totals = [sum(rates) for rates in layer_rates]
    ids = flowing(totals)
    if len(ids) == 1:
        return temporal_costs(layer_rates[ids[0]])
    if not ids:
        return RungCosts.single_layer(0.0)
    steps = [totals[ids[1]]]
    for below, above in itertools.pairwise(ids[1:]):
        steps.append(max(totals[above] - totals[below], MIN_STEP_BPS))
    floor = low_floor_bps if ids[0] == 0 else None
    top = top_floor(totals[ids[-2]]) if ids[-1] in capped else None
    return RungCosts(
        tuple(steps), totals[ids[0]], low_forwarded=True, low_floor_bps=floor,
        top_floor_bps=top, low_layer_bps=temporal_costs(layer_rates[ids[0]]).layer_bps,
    )  # fmt: skip


def temporal_costs(rates: Rates) -> RungCosts:
    """One layer's costs per temporal layer (TID 0, 1, 2; packets without layer information
    count with the base), as `adaptation.rung_costs` without a low rung."""
    layered = rates[:3]
    count = max((i + 1 for i, bps in enumerate(layered) if bps > 0), default=0)
    if count == 0:
        return RungCosts.single_layer(rates[3])
    return RungCosts((layered[0] + rates[3], *layered[1:count]))


def start_layer(track: InboundTrack) -> InboundTrack | None:
    """The layer a new subscriber's stream of a simulcast `track` starts on, before its first
    decision (None: not simulcast, the track itself): the lowest, as `layer_for` decides
    before the costs are measured. Started on the track itself (the top), a stream forwarded
    89 packets of 1.3 Mbit/s 360p before the first decision moved it, and a 500 kbit/s
    classroom lost 72% of its first half second."""
    return track.spatial_layers[0] if track.spatial_layers else None


def below_top_layer(stream: OutboundStream) -> bool:
    """Whether `stream` forwards (or is switching to) a layer of a simulcast track below the
    highest one on its ladder (flowing, or paused at the publisher with its held rates), with
    RTX to carry a padding probe beside it: a subscriber that started on the lowest layer (or
    stepped down) climbs by probing, since what it is sent keeps its receiver's REMB and the
    loss bound within twice the small layer's rate, far below the next layer's cost."""
    track = stream.track
    if track is None or not track.spatial_layers or stream.paused or stream.rtx_pt is None:
        return False
    ids = flowing(layer_totals(track))
    current = stream.pending if stream.pending is not None else stream.source
    for index, layer in enumerate(track.spatial_layers):
        if layer is current:
            return bool(ids) and index < ids[-1]
    return False


CAPPED_AT = 0.8
"""A layer sending at least this share of the ceiling the relay set it is held by it..."""
TOP_LAYER_MAX_BPS = 1_700_000.0
"""The page's own ceiling of its top camera layer (web/js/codecs.js `TOP_LAYER_MAX_BPS`,
what a direct call gives a camera on a good link): no relay ceiling goes above it..."""
LOWEST_FLOOR_BPS = 150_000.0
"""The lowest layer's ceiling is never below this (what a browser gives 180p below another
layer: no worse for anyone than before its ceiling followed them; `media.adapt.dynacast`)."""
CLIMB_BELOW = 0.85
"""... and a subscriber climbs (`capped_top_layer`) only while the ceiling is below this share
of it: above, the estimate's own rise lifts the rest, where a probe at twice a 1.8 Mbit/s
estimate lost half of its half second and took a 2 Mbit/s classroom from 360p to 180p."""
HOLDER_SHARE = 0.75
"""A stream whose budget times this is above its layer's ceiling is not the one holding it
(dynacast keeps the top at 92% of the weakest capable budget): another, weaker classroom
does, and climbing would not lift it."""

TOP_FLOOR_OVER_BELOW = 2.0
"""The top layer's ceiling is never below the layer under it times this (a layer barely
better than the one below is not worth its encoder)..."""
TOP_FLOOR_MIN_BPS = 450_000.0
"""... nor below this (360p of a noisy camera at 300k drops to 10-15 fps: a 500 kbit/s
classroom offered it there played 9.5 fps, where 180p plays 30)."""


def top_floor(below_bps: float) -> float:
    """The least the highest layer sending is ever capped at (`TOP_FLOOR_OVER_BELOW`,
    `TOP_FLOOR_MIN_BPS`), given the measured rate of the layer under it."""
    return max(TOP_FLOOR_MIN_BPS, below_bps * TOP_FLOOR_OVER_BELOW)


def capped_top_layer(stream: OutboundStream) -> bool:
    """Whether `stream` plays the highest layer a simulcast publisher sends while that layer
    runs at the ceiling the relay set it from its subscribers' budgets (`InboundTrack.
    ceiling_bps`, `media.adapt.dynacast`), with RTX to carry a padding probe beside it: the
    ceiling follows the subscriber's budget, and its budget what it is sent (a receiver's
    REMB stays within 1.5 times that), so without a probe a 2 Mbit/s classroom climbed 5%
    a second (600k of 360p over a 20 s window, against 1.6 Mbit/s in a direct call). A
    ceiling raised a moment ago holds the layer whatever it sends yet (`InboundTrack.
    ceiling_rising`): the next probe need not wait for the encoder to get there."""
    track = stream.track
    if track is None or not track.spatial_layers or stream.paused or stream.rtx_pt is None:
        return False
    current = stream.pending if stream.pending is not None else stream.source
    ceiling = current.ceiling_bps if current is not None else None
    if current is None or ceiling is None or ceiling >= TOP_LAYER_MAX_BPS * CLIMB_BELOW:
        return False
    if current is track.spatial_layers[0]:
        # the lowest layer's ceiling stops at the page's 300k: its way up is the next layer
        # (`below_top_layer`), and a climb aimed past the 1.7M top took a 300 kbit/s
        # classroom's probe to 786k (65% lost, paused)
        return False
    if stream.share_bps is not None and stream.share_bps * HOLDER_SHARE > ceiling:
        return False
    return current.ceiling_rising or sum(current.last_rates) >= ceiling * CAPPED_AT


def layer_for(decision: RungDecision, totals: Sequence[float]) -> int:
    """The layer (index, lowest first) a decision stands for, given each layer's measured
    rate: see the module's table. With one layer flowing, that one; with none measured yet
    (a subscriber's first decision, before a second of the layers has been seen), the lowest:
    the top may cost anything (a teacher whose browser has transport-cc sends 1.3 Mbit/s of
    360p from its first second, and a 500 kbit/s classroom started on it lost 80% of that
    second and went to audio only), the lowest is the one layer every link is meant to carry,
    and the ladder climbs from there once the costs are known."""
    ids = flowing(totals)
    if len(ids) <= 1:
        return ids[0] if ids else 0
    if decision.rung is Rung.LOW:
        return ids[0]
    if decision.rung is Rung.REDUCED_FPS:
        return ids[min(max(decision.temporal_layers, 1), len(ids) - 1)]
    return ids[-1]


def temporal_layers_for(decision: RungDecision, totals: Sequence[float]) -> int:
    """Temporal layers to send of the chosen layer: all of them while the ladder is made of
    spatial layers, the decision's own while it is one layer's temporal ladder."""
    if half_low(decision.choice):
        return decision.temporal_layers  # the lowest layer at half its frames
    if len(flowing(totals)) >= 2 or decision.rung is Rung.FULL:
        return 3
    return max(1, decision.temporal_layers)


def ladder_rates(layer: InboundTrack, now: float, reach_bps: float | None = None) -> Rates:
    """A layer's measured rates (`InboundTrack.layer_rates`), or, while the relay has it
    paused at the publisher (`media.adapt.dynacast`) and it does not flow, the rates it had:
    a paused layer stays on the ladder, and a subscriber's rung that wants it resumes it
    (resumed, at least those rates until its encoder has ramped, `dynacast.ramped`).
    Within the ceiling the relay set the highest layer sending (`InboundTrack.ceiling_bps`),
    and within `reach_bps` for a layer whose ceiling follows this subscriber down (the lowest:
    the ceiling its budget alone would set it, `dynacast.lowest_ceiling`)."""
    rates = layer.layer_rates(now)
    held = layer.held_rates
    if held is not None:
        if sum(rates) <= 0.0:
            return held
        # resumed, ramping: what it sent before until it sends most of that again
        # (`dynacast.ramped`); the ceiling below bounds it as it bounds the encoder
        rates = at_least(rates, held)
    ceiling = layer.ceiling_bps
    if ceiling is not None:
        # the relay just lowered its ceiling (`media.adapt.dynacast`): the publisher's encoder
        # follows within a second or two, and the subscriber whose budget lowered it must not
        # step down meanwhile (its shortfall steps down after one). The lowest layer costs
        # what this subscriber's budget would set it to: a classroom whose budget fell under
        # what 180p took at a higher ceiling (a probe that failed, 212k against 207k) was
        # paused for 7 s where 180p at 176k fitted
        return within(rates, ceiling if reach_bps is None else min(ceiling, reach_bps))
    return rates


def within(rates: Rates, ceiling_bps: float) -> Rates:
    """`rates` scaled down so that they add up to at most `ceiling_bps`."""
    total = sum(rates)
    if total <= ceiling_bps:
        return rates
    scale = ceiling_bps / total
    return (rates[0] * scale, rates[1] * scale, rates[2] * scale, rates[3] * scale)


def at_least(rates: Rates, floor: Rates) -> Rates:
    """Each temporal layer's rate, at least `floor`'s."""
    return (
        max(rates[0], floor[0]), max(rates[1], floor[1]),
        max(rates[2], floor[2]), max(rates[3], floor[3]),
    )  # fmt: skip


def held_or_last(layer: InboundTrack) -> float:
    """A layer's last measured rate, or its held rate while paused or ramping after a resume
    (`ladder_rates`)."""
    total = sum(layer.last_rates)
    held = layer.held_rates
    if held is not None:
        return max(total, sum(held))
    return total


def layer_totals(track: InboundTrack) -> list[float]:
    """Each layer's last measured rate (`InboundTrack.last_rates`, or the held rate of a
    layer paused at the publisher), lowest first."""
    return [held_or_last(layer) for layer in track.spatial_layers]


def apply_layer(stream: OutboundStream, track: InboundTrack, decision: RungDecision) -> None:
    """Make a subscriber's stream of a simulcast `track` send what the rung says: switch to the
    rung's layer (at that layer's next keyframe, requested now), with all its frames or the
    decision's, or pause it."""
    totals = layer_totals(track)
    layer = track.spatial_layers[layer_for(decision, totals)]
    if decision.video_paused:
        stream.pause()
        if stream.source is not layer:
            stream.switch_source(layer)  # paused: switches at once, resumes at its keyframe
        return
    stream.switch_source(layer)
    stream.set_temporal_layers(temporal_layers_for(decision, totals))
    stream.resume()
