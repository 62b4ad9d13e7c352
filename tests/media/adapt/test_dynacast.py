"""Dynacast: the simulcast layers nobody watches are paused at the publisher, with hysteresis,
and a subscriber whose rung wants a paused layer gets it resumed, then switched to at its
keyframe."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from media.adapt.dynacast import (
    LOWEST_FLOOR_BPS,
    PAUSE_AFTER_S,
    RAMP_S,
    RESUME_GRACE_S,
    RESUME_RAMP_S,
    Dynacast,
    LayerState,
    ceiling_due,
    initial_state,
    layers_event,
    lowest_ceiling,
    next_active,
    ramped,
    subscribed_layers,
    top_ceiling,
    wanted_layers,
)
from media.adapt.rung import Rung, RungChoice, RungDecision, RungReason
from media.adapt.spatial import (
    TOP_FLOOR_MIN_BPS,
    TOP_LAYER_MAX_BPS,
    apply_layer,
    ladder_rates,
    simulcast_costs,
)
from media.forward.forwarder import InboundTrack, OutboundStream
from media.forward.keyframe_requests import DEFAULT_MIN_INTERVAL
from signaling import messages as m
from signaling.ws_media import media_event_frame
from tests.media.forward.test_forwarder import KEY, Capture, source_packet, subscriber_stream

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)


@pytest.mark.parametrize(
    ("subscribed", "count", "tapped", "wanted"),
    [
        ((), 3, (), {0}),  # nobody: the lowest only (a new subscriber starts on it)
        ((0, 0), 3, (), {0}),  # every classroom capped: 180p
        ((2,), 3, (), {0, 2}),  # one on 720p: 180p kept for a step down at once
        ((1, 2), 3, (), {0, 1, 2}),
        ((1,), 2, (), {0, 1}),
        ((), 3, (2,), {0, 2}),  # the recording taps the top layer
        ((5, -1), 3, (), {0}),  # out of range: ignored
        ((), 0, (), set()),
    ],
)
def test_wanted_layers(
    subscribed: tuple[int, ...], count: int, tapped: tuple[int, ...], wanted: set[int]
) -> None:
    assert wanted_layers(subscribed, count, tapped) == frozenset(wanted)


ALL = frozenset({0, 1, 2})


@pytest.mark.parametrize(
    ("state", "wanted", "now", "active", "since"),
    [
        # unwanted: paused only after PAUSE_AFTER_S
        (LayerState(ALL), {0}, 10.0, ALL, {1: 10.0, 2: 10.0}),
        (LayerState(ALL, {1: 10.0, 2: 10.0}), {0}, 14.9, ALL, {1: 10.0, 2: 10.0}),
        (LayerState(ALL, {1: 10.0, 2: 10.0}), {0}, 15.0, {0}, {}),
        # wanted again before that: the timer is forgotten
        (LayerState(ALL, {1: 10.0, 2: 12.0}), {0, 1}, 14.0, ALL, {2: 12.0}),
        (LayerState(ALL, {2: 12.0}), {0, 1, 2}, 20.0, ALL, {}),
        # a paused layer resumes at once
        (LayerState(frozenset({0})), {0, 2}, 30.0, {0, 2}, {}),
        # the timers of each layer are their own
        (LayerState(ALL, {1: 10.0}), {0}, 15.0, {0, 2}, {2: 15.0}),
    ],
)
def test_next_active_pauses_late_and_resumes_at_once(
    state: LayerState, wanted: set[int], now: float, active: set[int], since: dict[int, float]
) -> None:
    after = next_active(state, frozenset(wanted), now, pause_after_s=5.0)
    assert after.active == frozenset(active)
    assert after.unwanted_since == since


def test_a_layer_never_measured_is_not_paused() -> None:
    """720p not flowing yet (the publisher's encoder ramps up): on nobody's ladder, so
    nobody could ask for it back; it stays active, and its time unwanted counts from when
    it flows (subscribers' rungs take it a tick or two later)."""
    state = LayerState(ALL, {1: 0.0, 2: 0.0})
    after = next_active(state, frozenset({0}), 10.0, 5.0, pausable=frozenset({0, 1}))
    assert after.active == frozenset({0, 2}) and after.unwanted_since == {2: 10.0}
    after = next_active(after, frozenset({0}), 14.5, 5.0, pausable=frozenset({0, 2}))
    assert after.active == frozenset({0, 2})
    after = next_active(after, frozenset({0}), 15.0, 5.0, pausable=frozenset({0, 2}))
    assert after.active == frozenset({0})


async def test_the_controller_leaves_a_layer_that_does_not_flow_yet_alone() -> None:
    track = simulcast_track()
    measured(track, Q, H, OFF)
    publisher = Publisher(track)
    stream = subscriber(track)
    apply_layer(stream, track, decision(Rung.LOW))
    track.spatial_layers[0].on_packet(source_packet(1, 0, KEY, marker=1, ssrc=10))
    publisher.run(PAUSE_AFTER_S + 1.0)
    assert publisher.events == [{"type": "layers", "source": "camera", "active": ["q", "f"],
                                 "max_kbps": {}}]


def test_layers_event_names_the_active_rids_lowest_first() -> None:
    assert layers_event("camera", ["q", "h", "f"], frozenset({2, 0})) == {
        "type": "layers", "source": "camera", "active": ["q", "f"], "max_kbps": {},
    }
    assert layers_event("camera", ["q", "h"], frozenset({0, 1}), {1: 812_400.0, 5: 1.0}) == {
        "type": "layers", "source": "camera", "active": ["q", "h"], "max_kbps": {"h": 812},
    }
    assert initial_state(3).active == ALL


@pytest.mark.parametrize(
    ("event", "frame"),
    [
        ({"type": "layers", "source": "camera", "active": ["q", "h"]},
         m.Layers(source="camera", active=["q", "h"])),
        ({"type": "layers", "source": "camera", "active": ["q", 3, None]},
         m.Layers(source="camera", active=["q"])),
        ({"type": "layers", "source": "camera", "active": ["q", "h"], "max_kbps": {"h": 812}},
         m.Layers(source="camera", active=["q", "h"], max_kbps={"h": 812.0})),
        # ceilings that are not positive finite numbers for a RID are left out
        ({"type": "layers", "source": "camera", "active": ["q"],
          "max_kbps": {"q": -5, "h": "x", "f": float("nan"), "g": True, "x": 1e400}},
         m.Layers(source="camera", active=["q"])),
        ({"type": "layers", "source": "camera", "active": ["q"], "max_kbps": [1, 2]},
         m.Layers(source="camera", active=["q"])),
        ({"type": "layers", "source": "mic", "active": ["q"]}, None),
        ({"type": "layers", "source": "camera", "active": "q"}, None),
        ({"type": "layers"}, None),
    ],
)
def test_the_layers_event_becomes_a_frame_only_when_well_formed(
    event: dict[str, Any], frame: m.Layers | None
) -> None:
    assert media_event_frame(event) == frame


# -- the controller, with layer tracks and subscribers' streams ---------------------------------

Q = (60_000.0, 30_000.0, 30_000.0, 0.0)
H = (200_000.0, 100_000.0, 100_000.0, 0.0)
F = (700_000.0, 350_000.0, 350_000.0, 0.0)
OFF = (0.0, 0.0, 0.0, 0.0)


def simulcast_track(plis: list[int] | None = None) -> InboundTrack:
    layers = []
    for rid in ("q", "h", "f"):
        send_pli = plis.append if plis is not None else lambda ssrc: None
        layer = InboundTrack("teacher", "camera", [VP8], send_pli=send_pli)
        layer.rid = rid
        layer.ssrc = {"q": 10, "h": 20, "f": 30}[rid]
        layers.append(layer)
    layers[-1].spatial_layers = tuple(layers)
    return layers[-1]


def measured(track: InboundTrack, *rates: tuple[float, float, float, float]) -> None:
    for layer, layer_rates in zip(track.spatial_layers, rates, strict=True):
        layer._rates = layer_rates


def subscriber(track: InboundTrack) -> OutboundStream:
    """A classroom's stream of `track`, playing its top layer (a keyframe forwarded)."""
    stream = subscriber_stream(Capture())
    stream.attach(track)
    track.on_packet(source_packet(1, 0, KEY, marker=1, ssrc=30))
    assert not stream.waiting
    return stream


def decision(rung: Rung, layers: int = 3) -> RungDecision:
    choice = RungChoice(rung, layers)
    return RungDecision(choice, RungReason.SHORTFALL, True, 0.0, 0.0, 0.0, 0.0, 0.0)


class Publisher:
    def __init__(self, track: InboundTrack) -> None:
        self.now = 0.0
        self.events: list[dict[str, Any]] = []
        self.dynacast = Dynacast(lambda: [track], self.events.append, clock=lambda: self.now)

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            self.dynacast.tick()
            self.now += 0.5


def actives(publisher: Publisher) -> list[list[str]]:
    """The successive `active` lists sent (repeats left out)."""
    out: list[list[str]] = []
    for event in publisher.events:
        if not out or out[-1] != event["active"]:
            out.append(event["active"])
    return out


async def test_a_capped_classroom_alone_pauses_the_upper_layers_after_a_few_seconds() -> None:
    track = simulcast_track()
    measured(track, Q, H, F)
    publisher = Publisher(track)
    stream = subscriber(track)  # on the top layer (attach)
    assert subscribed_layers(track) == [2]
    publisher.run(PAUSE_AFTER_S + 1.0)
    # 360p: nobody on it
    assert publisher.events == [{"type": "layers", "source": "camera", "active": ["q", "f"],
                                 "max_kbps": {}}]
    # the classroom's rung goes to low: it switches to q (pending until q's keyframe)
    apply_layer(stream, track, decision(Rung.LOW))
    assert stream.pending is track.spatial_layers[0]
    publisher.run(PAUSE_AFTER_S - 1.0)
    assert actives(publisher) == [["q", "f"]], "f still on screen until q's keyframe"
    track.spatial_layers[0].on_packet(source_packet(1, 0, KEY, marker=1, ssrc=10))  # q's key
    assert stream.source is track.spatial_layers[0]
    publisher.run(PAUSE_AFTER_S - 1.0)
    assert actives(publisher) == [["q", "f"]], "not before PAUSE_AFTER_S"
    publisher.run(2.0)
    assert actives(publisher) == [["q", "f"], ["q"]]
    assert publisher.dynacast.active(track) == frozenset({0})
    # the paused layers keep their rates for the ladder while they do not flow
    measured(track, Q, OFF, OFF)
    assert ladder_rates(track.spatial_layers[2], 100.0) == F
    costs = simulcast_costs([ladder_rates(layer, 100.0) for layer in track.spatial_layers])
    assert costs.low_bps == sum(Q) and len(costs.layer_bps) == 2, "720p still on the ladder"


async def test_while_a_layer_is_paused_the_event_is_repeated() -> None:
    """A frame lost to a WebSocket reconnect must not leave the page out of step for good."""
    from media.adapt.dynacast import RESEND_S

    track = simulcast_track()
    measured(track, Q, H, F)
    publisher = Publisher(track)
    subscriber(track)
    publisher.run(PAUSE_AFTER_S + 1.0)
    assert len(publisher.events) == 1
    publisher.run(RESEND_S)
    assert publisher.events == [publisher.events[0]] * 2


async def test_a_rung_that_wants_a_paused_layer_resumes_it_then_switches_at_its_keyframe() -> None:
    plis: list[int] = []
    track = simulcast_track(plis)
    q, _, f = track.spatial_layers
    measured(track, Q, H, F)
    publisher = Publisher(track)
    stream = subscriber(track)
    apply_layer(stream, track, decision(Rung.LOW))
    q.on_packet(source_packet(1, 0, KEY, marker=1, ssrc=10))  # q's keyframe: switched
    assert stream.source is q and not stream.waiting
    publisher.run(PAUSE_AFTER_S + 1.0)
    assert publisher.dynacast.active(track) == frozenset({0})
    assert f.publisher_paused and not q.publisher_paused
    measured(track, Q, OFF, OFF)  # the publisher stopped them
    publisher.events.clear()
    plis.clear()
    # the link recovered: the rung goes back to full, the top layer (held) is its layer
    apply_layer(stream, track, decision(Rung.FULL))
    assert stream.pending is f and stream.source is q, "q goes on until f's keyframe"
    assert plis == [], "no PLI to a paused layer (Chromium would send keyframes of q instead)"
    publisher.run(0.5)
    assert publisher.events == [{"type": "layers", "source": "camera", "active": ["q", "f"],
                                 "max_kbps": {}}]
    await asyncio.sleep(DEFAULT_MIN_INTERVAL)  # the tracks' own clock: the last PLI's interval
    assert plis == [30], "resumed: the keyframe the switch waits for is asked of f"
    # the resumed encoder starts with a keyframe: the switch completes there
    f.on_packet(source_packet(2, 9000, KEY, marker=1, ssrc=30))
    assert stream.source is f and stream.pending is None
    # f flows again: its measured rates replace the held ones
    measured(track, Q, OFF, F)
    publisher.run(1.0)
    assert f.held_rates is None


def top_layer_wanted_again() -> tuple[InboundTrack, Publisher]:
    """A classroom on q long enough for the publisher to stop h and f (held), then its rung
    back to full: f is wanted again."""
    track = simulcast_track()
    measured(track, Q, H, F)
    publisher = Publisher(track)
    stream = subscriber(track)
    apply_layer(stream, track, decision(Rung.LOW))
    track.spatial_layers[0].on_packet(source_packet(1, 0, KEY, marker=1, ssrc=10))  # q's key
    assert stream.source is track.spatial_layers[0]
    publisher.run(PAUSE_AFTER_S + 1.0)
    measured(track, Q, OFF, OFF)
    apply_layer(stream, track, decision(Rung.FULL))
    return track, publisher


async def test_a_resumed_layer_costs_its_held_rates_until_its_encoder_has_ramped() -> None:
    """Read at once, a resumed layer's rate (measured over a window, its encoder restarting)
    made 360p cost 54k on a 500 kbit/s classroom's ladder: its keyframe went unpaced."""
    track, publisher = top_layer_wanted_again()
    f = track.spatial_layers[2]
    publisher.run(0.5)
    held = f.held_rates
    assert held is not None
    measured(track, Q, OFF, (70_000.0, 0.0, 0.0, 0.0))  # the first half second of f again
    publisher.run(1.0)
    assert f.held_rates == held
    assert sum(ladder_rates(f, publisher.now)) == pytest.approx(sum(held))
    measured(track, Q, OFF, F)  # ramped
    publisher.run(0.5)
    assert f.held_rates is None
    assert ladder_rates(f, publisher.now) == F


@pytest.mark.parametrize(
    ("rates", "since", "done"),
    [
        (OFF, 1.0, False),  # not flowing yet: held
        (OFF, RESUME_GRACE_S, True),  # never flowed: off the ladder (its held rates go)
        ((70_000.0, 0.0, 0.0, 0.0), 1.0, False),  # ramping
        ((70_000.0, 0.0, 0.0, 0.0), RESUME_RAMP_S, True),  # flowing long enough: its own
        ((600_000.0, 300_000.0, 300_000.0, 0.0), 0.5, True),  # 86% of what it sent: ramped
    ],
)
def test_a_resumed_layer_has_ramped_once_it_sends_most_of_its_held_rate_or_after_a_while(
    rates: tuple[float, float, float, float], since: float, done: bool
) -> None:
    assert ramped(rates, F, since) is done


async def test_a_resumed_layer_that_never_flows_leaves_the_ladder() -> None:
    track, publisher = top_layer_wanted_again()
    f = track.spatial_layers[2]
    publisher.run(10.0)  # the publisher's own estimator keeps f off
    assert f.held_rates is None
    assert ladder_rates(f, 100.0) == OFF


async def test_a_paused_subscriber_wants_nothing_and_the_recording_keeps_the_top_layer() -> None:
    track = simulcast_track()
    measured(track, Q, H, F)
    publisher = Publisher(track)
    stream = subscriber(track)
    stream.pause()
    assert subscribed_layers(track) == []
    track.add_tap(lambda packet: None)  # the recorder taps the published (top) track
    publisher.run(PAUSE_AFTER_S + 1.0)
    assert publisher.events == [{"type": "layers", "source": "camera", "active": ["q", "f"],
                                 "max_kbps": {}}]


async def test_a_layer_another_node_watches_stays_on_and_a_trunk_alone_keeps_none() -> None:
    track = simulcast_track()
    measured(track, Q, H, F)
    publisher = Publisher(track)
    for layer in track.spatial_layers:  # every layer crosses the trunk (media.trunk) ...
        layer.trunk = lambda packet: None
    track.spatial_layers[1].watched_remotely = True  # ... and an edge's subscriber is on h
    publisher.run(PAUSE_AFTER_S + 1.0)
    assert publisher.events == [{"type": "layers", "source": "camera", "active": ["q", "h"],
                                 "max_kbps": {}}]
    track.spatial_layers[1].watched_remotely = False
    publisher.run(PAUSE_AFTER_S + 1.0)
    assert actives(publisher) == [["q", "h"], ["q"]]


def test_a_ceiling_the_ladder_lost_does_not_break_the_decision() -> None:
    """The 360p layer a failed step up left as the ceiling stopped (paused, or the browser
    dropped it): the ladder no longer has that rung, and the next decision must still be
    made (it raised ValueError in every tick of the teacher's adaptation)."""
    from dataclasses import replace

    from media.adapt.rung import LOW, RungCosts, decide

    two_layers = RungCosts((400_000.0,), 120_000.0)
    start = decide(200_000.0, 0.0, 0.02, two_layers, None, 0.0)
    assert start.choice == LOW
    lost = replace(start, ceiling=RungChoice(Rung.REDUCED_FPS, 2))
    after = decide(10_000_000.0, 0.0, 0.02, two_layers, lost, 1.0)
    assert after.choice == LOW  # held until the surplus lasted
    later = decide(10_000_000.0, 0.0, 0.02, two_layers, after, 10.0)
    assert later.choice.rung is Rung.FULL


# -- through the relay: a real aiortc publisher, its camera made a simulcast track -------------


async def test_the_relay_tells_the_publisher_which_layers_to_send() -> None:
    """An aiortc publisher cannot send simulcast: its camera track gets two layer tracks
    beside it (measured, as the uplink tap would feed them). The classroom watches the top
    one; the middle one, watched by nobody, is paused after `PAUSE_AFTER_S`: a `layers`
    event to the teacher, through the relay's event path."""
    from client.peer import FrameLog
    from tests.media.relay_harness import clip_tracks, running_relay, wait_until

    async with running_relay(0) as (service, relay):
        await service.open_room("class-1", "class")
        teacher = await relay.join("class-1", "t", "teacher")
        room1 = await relay.join("class-1", "a", "assistant")
        await teacher.publish(clip_tracks(FrameLog()))
        await wait_until(lambda: room1.track("t", "camera").frames >= 10,
                         what="the teacher's camera at the classroom")
        room = service._local.rooms["class-1"]  # type: ignore[union-attr]
        uplink = room._participants["t"].uplink
        assert uplink is not None and uplink.dynacast.ticker.running
        camera = next(t for t in uplink.tracks.values() if t.source == "camera")
        layers = []
        small = {"q": (10_000.0, 0.0, 0.0, 0.0), "h": (20_000.0, 0.0, 0.0, 0.0)}
        for rid, rates in small.items():
            layer = InboundTrack("t", "camera", [camera.codec], send_pli=lambda ssrc: None)
            layer.rid, layer._rates = rid, rates
            layer.layer_rates = lambda now, rates=rates: rates  # type: ignore[method-assign]
            layers.append(layer)
        camera.rid = "f"
        camera.spatial_layers = (*layers, camera)
        uplink.dynacast.ticker.interval_s = 0.1

        def layer_events() -> list[dict[str, Any]]:
            return [e for r, p, e in relay.events if p == "t" and e.get("type") == "layers"]

        def pausing() -> list[dict[str, Any]]:
            return [e for e in layer_events() if e["active"] != ["q", "h", "f"]]

        await wait_until(lambda: pausing(), what="a layers event pausing h to the teacher",
                         timeout=PAUSE_AFTER_S + 20)
        paused = pausing()[0]
        assert paused["active"] == ["q", "f"]
        # the classroom on f has a budget: f's ceiling follows it, within the page's own,
        # and so does q's under it (the page caps it at its own 300k)
        ceiling = paused["max_kbps"]["f"]
        assert set(paused["max_kbps"]) == {"q", "f"} and ceiling >= TOP_FLOOR_MIN_BPS / 1000
        assert paused["max_kbps"]["q"] >= LOWEST_FLOOR_BPS / 1000
        assert media_event_frame(paused) == m.Layers(
            source="camera", active=["q", "f"],
            max_kbps={"q": float(paused["max_kbps"]["q"]), "f": float(ceiling)},
        )
        assert layers[1].held_rates is not None and sum(layers[1].held_rates) <= sum(small["h"])
        camera.spatial_layers = ()  # the fake layers are not the uplink's to close


# -- the ceiling of the highest layer sending ---------------------------------------------------


@pytest.mark.parametrize(
    ("watchers", "below_bps", "ceiling"),
    [
        # no subscriber budget known yet: the page's own ceiling
        ([], 500_000.0, None),
        ([(True, 0.0)], 500_000.0, None),
        # a 2 Mbit/s classroom on the top layer keeps it at 92% of its budget
        ([(True, 1_800_000.0)], 500_000.0, 1_656_000.0),
        ([(True, 1_900_000.0)], 500_000.0, 1_700_000.0),
        # one below it brings it into reach (cost x 1.25 within its budget, and a little more)
        ([(False, 1_900_000.0)], 500_000.0, 1_368_000.0),
        # those that cannot take it at its floor (twice the layer below) stay below
        ([(False, 700_000.0), (True, 1_500_000.0), (False, 200_000.0)], 500_000.0, 1_380_000.0),
        # of those that can, the weakest decides: two classrooms that can both watch 360p do
        ([(True, 1_900_000.0), (False, 900_000.0)], 250_000.0, 648_000.0),
        ([(True, 1_900_000.0), (True, 900_000.0)], 250_000.0, 828_000.0),
        # none can: the floor (none of them takes it)
        ([(False, 500_000.0)], 500_000.0, 1_000_000.0),
        # never below twice the layer under it (nor 300k), never above the page's 1.7 Mbit/s
        ([(True, 800_000.0)], 500_000.0, 1_000_000.0),
        ([(True, 200_000.0)], 100_000.0, TOP_FLOOR_MIN_BPS),
        ([(True, 10_000_000.0)], 500_000.0, 1_700_000.0),
    ],
)
def test_the_top_layer_costs_what_its_weakest_capable_subscriber_can_take(
    watchers: list[tuple[bool, float]], below_bps: float, ceiling: float | None
) -> None:
    got = top_ceiling(watchers, below_bps)
    assert got == (pytest.approx(ceiling) if ceiling is not None else None)


@pytest.mark.parametrize(
    ("shares", "ceiling"),
    [
        ([], None),
        # 85% of the weakest budget (the page caps it at 300k)
        ([400_000.0, 2_000_000.0], 340_000.0),
        ([600_000.0, 2_000_000.0], 510_000.0),
        # the weakest decides: a data budget or a 200 kbit/s link keeps it at 150k
        ([190_000.0, 2_000_000.0], 161_500.0),
        ([170_000.0, 2_000_000.0], LOWEST_FLOOR_BPS),
        ([60_000.0, 2_000_000.0], LOWEST_FLOOR_BPS),
    ],
)
def test_the_lowest_layer_alone_costs_what_its_weakest_subscriber_can_take(
    shares: list[float], ceiling: float | None
) -> None:
    got = lowest_ceiling(shares)
    assert got == (pytest.approx(ceiling) if ceiling is not None else None)


@pytest.mark.parametrize(
    ("sent", "ceiling", "sent_at", "now", "due"),
    [
        (None, 1_000_000.0, None, 0.0, True),  # the first ceiling at once
        (1_000_000.0, None, 0.0, 0.1, True),  # lifted at once
        (None, None, None, 0.0, False),
        (1_000_000.0, 1_100_000.0, 0.0, 5.0, False),  # 10%: not worth it
        (1_000_000.0, 1_200_000.0, 0.0, 0.3, False),  # too soon
        (1_000_000.0, 1_200_000.0, 0.0, 0.5, True),
        (1_000_000.0, 800_000.0, 0.0, 0.5, True),
        (1_545_000.0, TOP_LAYER_MAX_BPS, 0.0, 0.5, True),  # 10%, but the page's own: reached
        (1_545_000.0, TOP_LAYER_MAX_BPS, 0.0, 0.3, False),
        (TOP_LAYER_MAX_BPS, 1_600_000.0, 0.0, 5.0, False),  # down from it: the step again
    ],
)
def test_a_new_ceiling_is_sent_when_it_changed_enough(
    sent: float | None, ceiling: float | None, sent_at: float | None, now: float, due: bool
) -> None:
    assert ceiling_due(sent, ceiling, sent_at, now) is due


async def test_the_top_layer_follows_its_classroom_and_the_layer_above_is_held_in_reach() -> None:
    track = simulcast_track()
    measured(track, Q, H, F)
    publisher = Publisher(track)
    stream = subscriber(track)  # on f
    publisher.run(0.5)
    assert publisher.events == []  # no budget known yet
    stream.share_bps = 1_700_000.0
    publisher.run(0.5)
    assert publisher.events[-1]["max_kbps"] == {"q": 1445, "f": 1564}  # f 92%, q 85% (page: 300k)
    stream.share_bps = 1_620_000.0  # 5% less: not worth telling
    publisher.run(2.0)
    assert len(publisher.events) == 1
    # the classroom's link shrinks: it steps down to h, f is paused, h is the top now
    stream.share_bps = 900_000.0
    apply_layer(stream, track, decision(Rung.REDUCED_FPS, 1))
    track.spatial_layers[1].on_packet(source_packet(1, 0, KEY, marker=1, ssrc=20))
    publisher.run(PAUSE_AFTER_S + 1.0)
    last = publisher.events[-1]
    assert last["active"] == ["q", "h"]
    assert last["max_kbps"] == {"q": 765, "h": 828}  # h 92%, q 85% of 900k, above 2 x q
    # f, paused, is held at what it would cost resumed: in reach of a 900k budget? no (2 x h)
    held = track.spatial_layers[2].held_rates
    assert held is not None and sum(held) == pytest.approx(2 * sum(H))


async def test_a_raised_ceiling_holds_its_layer_for_a_moment_and_a_lowered_one_does_not() -> None:
    track = simulcast_track()
    measured(track, Q, H, F)
    publisher = Publisher(track)
    stream = subscriber(track)  # on f
    top = track.spatial_layers[2]
    stream.share_bps = 1_000_000.0
    publisher.run(0.5)
    assert top.ceiling_bps == pytest.approx(920_000.0) and not top.ceiling_rising  # the first
    stream.share_bps = 1_500_000.0
    publisher.run(0.5)
    assert top.ceiling_bps == pytest.approx(1_380_000.0) and top.ceiling_rising
    publisher.run(RAMP_S)
    assert not top.ceiling_rising  # the encoder had its time
    stream.share_bps = 1_000_000.0
    publisher.run(0.5)
    assert top.ceiling_bps == pytest.approx(920_000.0) and not top.ceiling_rising


async def test_the_lowest_layer_alone_follows_the_weakest_classroom() -> None:
    track = simulcast_track()
    measured(track, Q, H, F)
    publisher = Publisher(track)
    strong = subscriber(track)
    weak = subscriber_stream(Capture())
    weak.attach(track)
    track.on_packet(source_packet(2, 3000, KEY, marker=1, ssrc=30))
    for stream in (strong, weak):
        apply_layer(stream, track, decision(Rung.LOW))
    track.spatial_layers[0].on_packet(source_packet(1, 0, KEY, marker=1, ssrc=10))
    assert subscribed_layers(track) == [0, 0]
    strong.share_bps, weak.share_bps = 2_000_000.0, 350_000.0
    publisher.run(PAUSE_AFTER_S + 1.0)
    last = publisher.events[-1]
    assert last["active"] == ["q"]
    assert last["max_kbps"] == {"q": 298}
    weak.pause()  # gone to audio only: still counted, it must be able to come back
    publisher.run(2.0)
    assert publisher.events[-1]["max_kbps"] == {"q": 298}
