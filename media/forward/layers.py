"""Temporal-layer dropping for one outbound stream of a VP8 L1T3 track.

Frames of temporal layers above `max_tid` are left out; the picture ids and TL0PICIDX of the
frames sent are renumbered so the subscriber sees no gap (`LayerDropper.place`). The layer
switch itself is a pure decision (`next_max_tid`): down at any frame, up only at a keyframe or
at a layer-sync frame of the layer just above. The renumbering is remembered per frame for a
while, so a retransmission carries the ids its original carried (`LayerDropper.resent_payload`).
"""

from __future__ import annotations

from media.rtp import vp8

SENT_PICTURES_KEPT = 64
"""Frames whose outbound picture id is remembered for retransmissions."""


def next_max_tid(max_tid: int, target: int, tid: int, sync: bool, keyframe: bool) -> int:
    """The highest layer sent from the frame starting now (layer `tid`, layer sync `sync`),
    given the layer sent so far and the `target` asked for."""
    if keyframe or target < max_tid:
        return target
    if sync and tid == max_tid + 1 and tid <= target:
        return tid
    return max_tid


class LayerDropper:
    """Which frames of a layered VP8 source an outbound stream sends, and their ids."""

    __slots__ = (
        "_dropping", "_last_out_pid", "_last_out_tl0", "_picture", "_sent_pictures",
        "frames_dropped", "max_tid", "pid_delta", "target_tid", "tl0_delta",
    )

    def __init__(self) -> None:
        self.target_tid = 2
        """The highest layer wanted (`set_layers`)."""
        self.max_tid = 2
        """The highest layer sent now."""
        self.pid_delta = 0
        """Subtracted from a source picture id to give ours (the frames left out so far)."""
        self.tl0_delta = 0
        """Subtracted from a source TL0PICIDX to give ours."""
        self.frames_dropped = 0
        self._picture: int | None = None
        self._dropping = False
        self._last_out_pid: int | None = None
        self._last_out_tl0: int | None = None
        self._sent_pictures: dict[int, int] = {}  # source picture id -> ours (recent frames)

    def set_layers(self, layers: int) -> None:
        """Send this many temporal layers (1: 7.5 fps, 2: 15 fps, 3: all of an L1T3 source)."""
        self.target_tid = max(0, min(2, layers - 1))

    def continue_from(self, last: vp8.TemporalLayer) -> None:
        """The stream forwarded every packet of its source unchanged up to one with `last`'s
        fields: our ids so far were the source's."""
        self._last_out_pid, self._last_out_tl0 = last[2], last[4]

    def restart(self, pid: int, tl0: int) -> None:
        """A (new) source starts at a keyframe with these ids: ours follow the last sent."""
        self._picture = None
        if self._last_out_pid is not None and self._last_out_tl0 is not None:
            self.pid_delta = pid - self._last_out_pid - 1
            self.tl0_delta = tl0 - self._last_out_tl0 - 1
        else:
            self.pid_delta = self.tl0_delta = 0

    def place(self, layer: vp8.TemporalLayer, keyframe: bool) -> tuple[int, int] | None:
        """Our (picture id, TL0PICIDX) for a packet with these layer fields, or None when its
        frame is left out. The first packet of a frame decides for the whole frame."""
        tid, sync, pid, bits, tl0 = layer
        mask = 0x7FFF if bits == 15 else 0x7F
        current = self._picture
        if current is not None and 0 < (current - pid) & mask <= mask // 2:
            # a packet of an earlier frame, late (a repair): the ids its frame was sent
            # with, without moving the renumbering (read as a new frame, it shifted every id
            # after it and the subscriber's decoder stalled)
            sent_pid = self._sent_pictures.get(pid)
            return None if sent_pid is None else (sent_pid, (tl0 - self.tl0_delta) & 0xFF)
        if pid != current:  # the first packet of a new frame: change layers here
            self._picture = pid
            self.max_tid = next_max_tid(self.max_tid, self.target_tid, tid, sync, keyframe)
            self._dropping = tid > self.max_tid
            if self._dropping:
                self.pid_delta += 1
                self.frames_dropped += 1
            else:
                sent = self._sent_pictures
                sent[pid] = (pid - self.pid_delta) & mask
                if len(sent) > SENT_PICTURES_KEPT:
                    del sent[next(iter(sent))]
        if self._dropping:
            return None
        out_pid = (pid - self.pid_delta) & mask
        out_tl0 = (tl0 - self.tl0_delta) & 0xFF
        self._last_out_pid = out_pid
        self._last_out_tl0 = out_tl0
        return out_pid, out_tl0

    def resent_payload(self, payload: bytes) -> bytes | None:
        """`payload` (from the source's history) with the ids it was sent with; None if its
        frame was left out or is too old to place; unchanged without layer fields."""
        layer = vp8.temporal_layer(payload)
        if layer is None:
            return payload
        out_pid = self._sent_pictures.get(layer[2])
        if out_pid is None:
            return None
        return vp8.rewrite_ids(payload, out_pid, layer[4] - self.tl0_delta)
