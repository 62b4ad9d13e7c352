"""Pacing of one subscriber's downlink: video leaves at a rate, audio never waits.

A relay forwards each frame as it arrives; a keyframe is tens of packets at once. On a
300-500 kbit/s village link whose bottleneck queue holds ~100 ms, such a burst overflows the
queue: most of the keyframe is lost, the subscriber NACKs it, the retransmissions overflow it
again, and the audio caught in the same queue is lost with it. The `Pacer` moves that queue
into the relay, where it can be ordered: while the link is constrained, video and
retransmissions wait in a FIFO and leave at `rate_bps` (a token bucket with a small burst),
while audio goes out at once and only borrows from the same bucket, so it delays video rather
than the other way round. A packet that waited leaves with a fresh abs-send-time, so the
subscriber's delay-based estimate (its REMB) does not read the relay's queue as the network's.

Padding beside the video (a probe's RTX padding, `padding`) has a lane of its own: it leaves
only when no video waits, and what is left of it when the adaptation's next tick comes is
dropped (`drop_padding`): a probe's half second of padding must not outlast it. Before, a
probe's padding still queued when the rate fell back after it drained at that rate for a
second more, and a 300 kbit/s classroom lost 89% of that second and went to audio only.

`rate_bps` None means unpaced: both sinks then send straight to the socket, the cost of a
good link is nothing. The adaptation tick sets the rate from the estimate each time it
decides. A queue that still grows past `max_queue_s` of the rate (the link collapsed faster
than the allocation followed) drops its oldest packets; the subscriber NACKs what it misses
and asks for a keyframe if the history cannot repair it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from media.forward.emit import DatagramSink
from media.rtp.header import with_abs_send_time
from media.rtp.timing import abs_send_time

WIRE_OVERHEAD = 28
"""IPv4 and UDP header bytes of every datagram (SRTP's tag is inside the rate's slack)."""


class Pacer:
    """Feeds two sinks of one downlink, `video` (paced) and `audio` (never queued)."""

    def __init__(
        self,
        *,
        burst_s: float = 0.02,
        min_burst_bytes: int = 2_400,
        max_queue_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.video = DatagramSink()
        """Video and retransmissions: paced while `rate_bps` is set."""
        self.audio = DatagramSink()
        """Audio: sent at once, counted against the video's budget."""
        self.padding = DatagramSink()
        """Padding beside the video (RTX): paced after the video, dropped when stale."""
        self._padding: deque[bytes] = deque()
        self.padding_dropped = 0
        """Padding packets dropped unsent (`drop_padding`)."""
        self.burst_s = burst_s
        self.min_burst_bytes = min_burst_bytes
        self.max_queue_s = max_queue_s
        self._clock = clock
        self._raw: Callable[[bytes], None] | None = None
        self._rate_bps: float | None = None
        self._tokens = 0.0
        self._filled_at = 0.0
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self.abs_send_time_id = 0
        """The subscriber's id for abs-send-time (0: not negotiated): packets that waited are
        stamped again when they leave."""
        self.sent_late = 0
        """Packets that waited in the queue."""
        self.dropped = 0
        """Packets dropped because the queue outgrew `max_queue_s`, or dropped with it."""
        self._dropped_of: dict[int, int] = {}  # ssrc -> packets dropped unsent

    @property
    def rate_bps(self) -> float | None:
        """The pacing rate, or None when unpaced."""
        return self._rate_bps

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    @property
    def backlog_s(self) -> float:
        """How long the video waiting in the queue takes to leave at the pacing rate (0 when
        unpaced)."""
        rate = self._rate_bps
        return self._queued_bytes * 8 / rate if rate else 0.0

    @property
    def connected(self) -> bool:
        return self._raw is not None

    def connect(self, send: Callable[[bytes], None]) -> None:
        """Start sending through `send` (SRTP + UDP)."""
        self._raw = send
        self._route()

    def disconnect(self) -> None:
        """Send nothing any more; what waits is dropped."""
        self._raw = None
        self._cancel_timer()
        self._queue.clear()
        self._padding.clear()
        self._queued_bytes = 0
        self.video.disconnect()
        self.audio.disconnect()
        self.padding.disconnect()

    def set_rate(self, bps: float | None) -> None:
        """Pace video at `bps` from now on (None: stop pacing and flush what waits)."""
        if bps is not None and bps <= 0:
            raise ValueError("a pacing rate must be positive")
        was = self._rate_bps
        self._rate_bps = bps
        if bps is None:
            self._flush()
        elif was is None:
            self._tokens = self._burst_bytes()
            self._filled_at = self._clock()
        self._route()
        if bps is not None and (self._queue or self._padding):
            self._cancel_timer()
            self._drain()

    # -- the two send paths ---------------------------------------------------------------------

    def dropped_of(self, ssrc: int) -> int:
        """How many packets of `ssrc` were dropped unsent so far: a receiver counts them as
        lost, which the link did not (`DownlinkEstimator.on_receiver_report`'s `unsent`)."""
        return self._dropped_of.get(ssrc, 0)

    def _count_dropped(self, data: bytes) -> None:
        if len(data) >= 12:
            ssrc = int.from_bytes(data[8:12], "big")
            self._dropped_of[ssrc] = self._dropped_of.get(ssrc, 0) + 1

    def drop_queued(self) -> int:
        """Drop every packet waiting (the video they carry was paused: sent late, they would
        only delay the audio on a link that just overflowed); returns how many."""
        dropped = len(self._queue)
        for data in self._queue:
            self._count_dropped(data)
        self._queue.clear()
        self._queued_bytes = 0
        self.dropped += dropped
        self._cancel_timer()
        return dropped

    def drop_padding(self) -> int:
        """Drop the padding still waiting (the probe it belonged to is over); how many."""
        dropped = len(self._padding)
        self._padding.clear()
        self.padding_dropped += dropped
        return dropped

    def send_padding(self, data: bytes) -> None:
        """Padding: after the video, while the bucket allows."""
        self._padding.append(data)
        if self._timer is None:
            self._drain()

    def send_video(self, data: bytes) -> None:
        """Send now if the bucket allows and nothing waits, else queue."""
        if not self._queue:
            self._refill()
            if self._tokens >= 0:
                self._emit(data)
                return
        self._queue.append(data)
        self._queued_bytes += len(data)
        self._trim()
        if self._timer is None:
            self._schedule()

    def send_audio(self, data: bytes) -> None:
        """Send now; the bytes still count, so video waits for them."""
        self._refill()
        self._emit(data)

    # -- internals -----------------------------------------------------------------------------

    def _route(self) -> None:
        raw = self._raw
        if raw is None:
            return
        if self._rate_bps is None:
            self.video.connect(raw)
            self.audio.connect(raw)
            self.padding.connect(raw)
        else:
            self.video.connect(self.send_video)
            self.audio.connect(self.send_audio)
            self.padding.connect(self.send_padding)

    def _burst_bytes(self) -> float:
        assert self._rate_bps is not None
        return max(self._rate_bps / 8 * self.burst_s, float(self.min_burst_bytes))

    def _refill(self) -> None:
        rate = self._rate_bps
        if rate is None:
            return
        now = self._clock()
        self._tokens = min(
            self._tokens + (now - self._filled_at) * rate / 8, self._burst_bytes()
        )
        self._filled_at = now

    def _emit(self, data: bytes) -> None:
        raw = self._raw
        if raw is None:
            return
        self._tokens -= len(data) + WIRE_OVERHEAD
        raw(data)

    def _trim(self) -> None:
        """Drop the oldest packets while the queue holds more than `max_queue_s` of the rate."""
        assert self._rate_bps is not None
        limit = self._rate_bps / 8 * self.max_queue_s
        while self._queued_bytes > limit and len(self._queue) > 1:
            data = self._queue.popleft()
            self._queued_bytes -= len(data)
            self.dropped += 1
            self._count_dropped(data)

    def _drain(self) -> None:
        self._timer = None
        if self._raw is None or self._rate_bps is None:
            return
        self._refill()
        queue = self._queue
        stamp = abs_send_time(time.time())
        ext_id = self.abs_send_time_id
        while queue and self._tokens >= 0:
            data = queue.popleft()
            self._queued_bytes -= len(data)
            self.sent_late += 1
            self._emit(with_abs_send_time(data, ext_id, stamp))
        padding = self._padding
        while padding and not queue and self._tokens >= 0:
            self._emit(with_abs_send_time(padding.popleft(), ext_id, stamp))
        if queue or padding:
            self._schedule()

    def _schedule(self) -> None:
        rate = self._rate_bps
        assert rate is not None
        wait = max(-self._tokens, 0.0) * 8 / rate
        self._timer = asyncio.get_running_loop().call_later(max(wait, 0.001), self._drain)

    def _flush(self) -> None:
        self._cancel_timer()
        raw = self._raw
        queue, self._queue = self._queue, deque()
        self._queued_bytes = 0
        self.drop_padding()  # a probe's padding at once is the burst pacing it was for
        if raw is not None:
            stamp = abs_send_time(time.time())
            for data in queue:
                raw(with_abs_send_time(data, self.abs_send_time_id, stamp))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
