"""A subscriber's stream switched between simulcast layers: up only at a keyframe of the
target layer (asked for at once), down at once to the lower layer's next keyframe (asked for
at once, the current layer going on until then), with sequence numbers, timestamps and VP8
picture ids / TL0PICIDX continuous across the switches."""

from __future__ import annotations

from itertools import pairwise

from media.forward.forwarder import InboundTrack
from media.rtp import vp8
from tests.media.forward.test_forwarder import (
    VP8,
    Capture,
    received_frames,
    source_packet,
    subscriber_stream,
)


def layer_payload(frame: int, pid_base: int, keyframe: bool) -> bytes:
    """One-packet L1T3 VP8 frame of a layer whose picture ids start at `pid_base`."""
    tid = (0, 2, 1, 2)[frame % 4]
    pid = (pid_base + frame) & 0x7FFF
    tl0 = (frame // 4 + pid_base) & 0xFF
    descriptor = bytes([0x90, 0xE0, 0x80 | (pid >> 8), pid & 0xFF, tl0, tid << 6])
    return descriptor + (b"\x00\x9d\x01\x2a" if keyframe else b"\x01") + b"L" * 30


class Layer:
    """One simulcast layer's packets: its own SSRC, sequence, timestamps and picture ids."""

    def __init__(self, track: InboundTrack, ssrc: int, seq0: int, ts0: int, pid0: int) -> None:
        self.track, self.ssrc, self.seq0, self.ts0, self.pid0 = track, ssrc, seq0, ts0, pid0

    def frame(self, n: int, keyframe: bool = False) -> None:
        payload = layer_payload(n, self.pid0, keyframe or n == 0)
        self.track.on_packet(source_packet(
            (self.seq0 + n) & 0xFFFF, (self.ts0 + 3000 * n) & 0xFFFFFFFF, payload, marker=1,
            ssrc=self.ssrc,
        ))


async def test_layer_switches_wait_for_the_target_layers_keyframe_and_stay_continuous() -> None:
    plis: list[int] = []
    now = [0.0]
    low_track = InboundTrack("teacher", "camera", [VP8], send_pli=plis.append,
                             clock=lambda: now[0])
    top_track = InboundTrack("teacher", "camera", [VP8], send_pli=plis.append,
                             clock=lambda: now[0])
    top_track.spatial_layers = (low_track, top_track)
    low = Layer(low_track, ssrc=10, seq0=65530, ts0=4_000_000_000, pid0=32760)
    top = Layer(top_track, ssrc=30, seq0=100, ts0=7, pid0=5000)
    capture = Capture()
    stream = subscriber_stream(capture)
    stream.attach(top_track)
    frame = 0

    def both(count: int, *, low_key: int | None = None, top_key: int | None = None) -> None:
        nonlocal frame
        for _ in range(count):
            now[0] += 1 / 30
            low.frame(frame, keyframe=frame == low_key)
            top.frame(frame, keyframe=frame == top_key)
            frame += 1

    both(6)
    assert [p.ssrc for p in capture.packets()] == [1111] * 6
    sent_top = len(capture.sent)

    # down: asked for the low layer's keyframe at once; the top goes on until it comes
    stream.switch_source(low_track)
    assert plis[-1] == 10
    both(3)
    assert len(capture.sent) == sent_top + 3, "the top layer went on while waiting"
    assert stream.source is top_track
    both(1, low_key=frame)
    assert stream.source is low_track
    both(4)
    from_low = len(capture.sent)

    # up: the top layer's delta frames are not forwarded; its keyframe is asked for
    stream.switch_source(top_track)
    assert plis[-1] == 30
    both(2)
    assert stream.source is low_track and len(capture.sent) == from_low + 2
    both(1, top_key=frame)
    assert stream.source is top_track
    both(3)

    frames = received_frames(capture)  # sequence, picture ids and TL0PICIDX run on
    # (in the step with the top's keyframe, the low layer's frame went first)
    assert len(frames) == len(capture.sent) == 6 + 3 + 1 + 4 + 2 + (1 + 1) + 3
    stamps = [f[0] for f in frames]
    assert all(0 < (b - a) & 0xFFFFFFFF < 90000 for a, b in pairwise(stamps)), (
        "timestamps go forward across the switches, never back or far ahead")
    keyframes = [
        i for i, p in enumerate(capture.packets())
        if vp8.is_keyframe_start(p.payload)
    ]
    assert keyframes == [0, 9, 17], "each layer starts at its keyframe"


async def test_rtx_copies_after_a_switch_are_neither_counted_nor_forwarded_nor_shift_ids() -> None:
    """Chromium probes its uplink with RTX copies of packets already sent (mostly on the
    lowest layer): after a switch to that layer they were forwarded again and, on the
    renumbering path, read as new frames, shifting every picture id after them (the capped
    classroom's 180p picture froze a second or two after the switch)."""
    low_track = InboundTrack("teacher", "camera", [VP8], send_pli=lambda ssrc: None)
    top_track = InboundTrack("teacher", "camera", [VP8], send_pli=lambda ssrc: None)
    top_track.spatial_layers = (low_track, top_track)
    low = Layer(low_track, ssrc=10, seq0=65530, ts0=4_000_000_000, pid0=32760)
    top = Layer(top_track, ssrc=30, seq0=100, ts0=7, pid0=5000)
    capture = Capture()
    stream = subscriber_stream(capture)
    stream.attach(top_track)
    for n in range(4):
        top.frame(n)
        low.frame(n)
    stream.switch_source(low_track)
    top.frame(4)
    low.frame(4, keyframe=True)
    octets = list(low_track.layer_octets)
    for n in range(5, 12):
        top.frame(n)
        low.frame(n)
        low.frame(n - 2)  # an RTX probe: a copy of a packet already forwarded
        low.frame(n - 1)
    assert low_track.duplicates == 14
    copies = sum(len(payload) + 60 for payload in
                 (layer_payload(n, 32760, False) for n in range(5, 12)))
    assert sum(low_track.layer_octets) - sum(octets) == copies, "copies are no rate"
    frames = received_frames(capture)  # sequence numbers and picture ids without a gap
    assert len(frames) == 4 + 1 + 1 + 7  # top 0-4 (4 while waiting), low 4-11


def test_a_late_packet_of_an_earlier_frame_keeps_its_ids_and_moves_nothing() -> None:
    from media.forward.layers import LayerDropper

    dropper = LayerDropper()
    dropper.set_layers(1)
    placed = [dropper.place((tid, False, 200 + n, 15, n // 4), keyframe=n == 0)
              for n, tid in enumerate((0, 2, 1, 2, 0, 2))]
    assert placed == [(200, 0), None, None, None, (201, 1), None]
    # repairs of frames 4 (sent) and 3 (left out) arrive late
    assert dropper.place((0, False, 204, 15, 1), keyframe=False) == (201, 1)
    assert dropper.place((2, False, 203, 15, 0), keyframe=False) is None
    # the next frame follows on as if nothing happened
    assert dropper.place((1, True, 206, 15, 1), keyframe=False) is None
    assert dropper.place((2, True, 207, 15, 1), keyframe=False) is None
    assert dropper.place((0, False, 208, 15, 2), keyframe=False) == (202, 2)
