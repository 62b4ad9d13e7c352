"""Transport-cc feedback to one publisher: what arrived on its uplink transport, and when.

aiortc does not implement transport-wide congestion control, so a Chromium publishing to the
relay would have only loss-based control, which ramps ~8 %/s from 300 kbit/s and cannot
probe (its simulcast top layer starves for the first ~20 s of a class). When the publisher's
offer has the transport-wide sequence number extension, the uplink answers it
(`media.peers.uplink`) and feeds every packet's number here (`record`, from the uplink's RTP
tap: one list append per packet). `FeedbackWindow.collect` turns what arrived since the last
collect into feedback packets (`media.rtp.twcc`): from the first packet not yet reported (or
a late one, reordered behind an earlier feedback: the range is then reported again from it,
as libwebrtc's receiver does) to the highest received, gaps reported as not received.
`TwccFeedback` collects every `INTERVAL_S` on a `loop.call_later` timer and hands the packets
to `send` (the uplink's RTCP path). Arrival times come from the clock passed in: the uplink
passes the kernel's receive time of the datagram being handled
(`aiortc_bends.KernelArrivalClock`), so a busy event loop does not read as a congested link.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from media.rtp.twcc import NOT_RECEIVED, TransportFeedback, feedback_from_arrivals

logger = logging.getLogger(__name__)

TRACE_EVERY = 20
"""Collects between two DEBUG lines (one a second)."""
INTERVAL_S = 0.05
"""Feedback period: libwebrtc's receiver sends every 50-250 ms by bitrate; 50 ms keeps the
publisher's estimator fed during the ramp at a few hundred bytes per feedback."""
HISTORY = 2000
"""Received packets remembered behind the highest: a late one older than this is ignored."""
MAX_SPAN = 0x4000
"""At most this many sequence numbers per collect: after a longer gap (a publisher's
restarted sequence) reporting starts again near the highest received."""

Clock = Callable[[], int]
"""Nanoseconds, the arrival time of the packet being recorded (`record` calls it per packet:
keep it a builtin or one attribute read)."""


@dataclass(slots=True)
class WindowStats:
    """Counters of what a window's feedback said (re-reported packets count again)."""

    packets: int = 0
    received: int = 0
    lost: int = 0
    late: int = 0
    """Collects that reported again from a packet behind an earlier feedback."""
    max_gap_ns: int = 0
    """The longest time between two packets recorded one after the other."""


class FeedbackWindow:
    """Arrivals (transport-wide sequence number, ns) -> the next feedback packets."""

    def __init__(self, clock: Clock = time.monotonic_ns, *, max_span: int = MAX_SPAN) -> None:
        self._clock = clock
        self._epoch = clock()
        """Arrival times count from here, so the 24-bit reference time starts near 0."""
        self._max_span = max_span
        self._arrivals: list[tuple[int, int]] = []
        self._received: dict[int, int] = {}
        """Unwrapped sequence number -> arrival (µs since `_epoch`), the last `HISTORY`."""
        self._last_unwrapped: int | None = None
        self._highest = -1
        self._next: int | None = None
        """The first sequence number the next feedback reports (None: nothing sent yet)."""
        self._feedback_count = 0
        self.media_ssrc = 0
        """The SSRC the feedback names (the last packet's; receivers ignore it)."""
        self.sent = 0
        """Feedback packets collected so far."""
        self.stats = WindowStats()
        """What the feedback said, since the last `take_stats` (for the DEBUG trace)."""

    def record(self, seq: int, ssrc: int) -> None:
        """One packet arrived now (called per packet: keep it an append)."""
        self._arrivals.append((seq, self._clock()))
        self.media_ssrc = ssrc

    def record_at(self, seq: int, arrival_ns: int) -> None:
        """One packet arrived at `arrival_ns` (the clock's time base, not before the window
        was made)."""
        self._arrivals.append((seq, arrival_ns))

    def discard(self) -> None:
        """Forget what arrived since the last collect (no RTCP path to report it on yet)."""
        self._arrivals = []

    def _unwrap(self, seq: int) -> int:
        last = self._last_unwrapped
        if last is None:
            unwrapped = seq
        else:
            diff = (seq - last) & 0xFFFF
            unwrapped = last + (diff - 0x10000 if diff >= 0x8000 else diff)
        if last is None or unwrapped > last:
            self._last_unwrapped = unwrapped
        return unwrapped

    def collect(self, sender_ssrc: int) -> list[TransportFeedback]:
        """Feedback for what arrived since the last collect (empty when nothing did)."""
        arrivals, self._arrivals = self._arrivals, []
        received = self._received
        earliest: int | None = None
        stats = self.stats
        previous = arrivals[0][1] if arrivals else 0
        for seq, arrival in arrivals:
            if arrival - previous > stats.max_gap_ns:
                stats.max_gap_ns = arrival - previous
            previous = arrival
            unwrapped = self._unwrap(seq)
            if unwrapped < self._highest - HISTORY or unwrapped in received:
                continue  # too late to report, or a duplicate
            received[unwrapped] = (arrival - self._epoch) // 1000
            if unwrapped > self._highest:
                self._highest = unwrapped
            if earliest is None or unwrapped < earliest:
                earliest = unwrapped
        if earliest is None:
            return []
        if self._next is not None and earliest < self._next:
            stats.late += 1
        start = earliest if self._next is None else min(self._next, earliest)
        end = self._highest
        if end - start >= self._max_span:
            start = min(s for s in received if s > end - self._max_span)
        feedback = feedback_from_arrivals(
            start, [received.get(s) for s in range(start, end + 1)], self._feedback_count,
            sender_ssrc, self.media_ssrc,
        )
        self._feedback_count = (self._feedback_count + len(feedback)) & 0xFF
        self.sent += len(feedback)
        stats.packets += len(feedback)
        for item in feedback:
            stats.received += len(item.deltas)
            stats.lost += item.statuses.count(NOT_RECEIVED)
        self._next = end + 1
        if len(received) > 2 * HISTORY:
            cutoff = end - HISTORY
            self._received = {s: t for s, t in received.items() if s >= cutoff}
        return feedback


class TwccFeedback:
    """A `FeedbackWindow` collected every `interval_s` while started.

    `send(collect)` calls `collect(rtcp_sender_ssrc)` and sends what it returns, or returns
    False when there is no RTCP path yet (what arrived is then dropped).
    """

    def __init__(
        self,
        send: Callable[[Callable[[int], list[TransportFeedback]]], bool],
        *,
        interval_s: float = INTERVAL_S,
        clock: Clock = time.monotonic_ns,
        label: str = "",
    ) -> None:
        self.window = FeedbackWindow(clock)
        self._label = label
        """Who the feedback goes to, in the two INFO lines (first packet, count at stop)."""
        self.record = self.window.record
        """What the uplink's RTP tap calls per packet: `record(seq, ssrc)`."""
        self._send = send
        self._interval_s = interval_s
        self._timer: asyncio.TimerHandle | None = None
        self._ticks = 0

    @property
    def sent(self) -> int:
        """Feedback packets sent so far."""
        return self.window.sent

    def start(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval_s, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            logger.info("transport-cc feedback to %s: %d packets sent", self._label, self.sent)

    def _tick(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._interval_s, self._tick)
        before = self.window.sent
        try:
            if not self._send(self.window.collect):
                self.window.discard()
            elif before == 0 and self.window.sent:
                logger.info("transport-cc feedback to %s: flowing", self._label)
        except Exception:  # a bad packet must never stop the feedback
            logger.exception("transport-cc feedback failed")
        self._ticks += 1
        if self._ticks % TRACE_EVERY == 0 and logger.isEnabledFor(logging.DEBUG):
            stats, self.window.stats = self.window.stats, WindowStats()
            logger.debug(
                "transport-cc %s: %d feedback, %d received, %d lost, %d late, max gap %.1f ms",
                self._label, stats.packets, stats.received, stats.lost, stats.late,
                stats.max_gap_ns / 1e6,
            )
