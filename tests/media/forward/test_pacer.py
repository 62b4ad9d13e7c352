"""The `Pacer` of one downlink: unpaced it adds nothing; paced, video leaves at the rate from a
FIFO, audio never waits (and delays video), the queue is bounded, and a packet that waited
leaves with a fresh abs-send-time.

A fake clock and a fake event loop (its timers fire when the test advances the clock) keep
every test deterministic; one test runs the real event loop, with no timing asserted.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

import media.forward.pacer
from media.forward.pacer import WIRE_OVERHEAD, Pacer
from media.rtp.header import FIXED_HEADER, URI_ABS_SEND_TIME
from media.rtp.timing import abs_send_time

ABS_ID = 3
STAMP = 0x000001
"""The abs-send-time the forwarder wrote into every test packet."""
WALL_TIME = 1_800_000_000.5
"""What `time.time()` says in the pacer while a test runs (late packets are stamped with it)."""
RATE = 524_288.0
"""64 KiB a second: a 1024-byte datagram every 1/64 s (binary fractions: exact clock sums)."""
PACKET = 1024 - WIRE_OVERHEAD
"""Bytes of a test packet: 1024 on the wire."""
INTERVAL = 1024 * 8 / RATE


class FakeTimer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """`call_later` on the fake clock; `advance` moves the clock, firing what falls due."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[FakeTimer] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.now + delay, callback)
        self.timers.append(timer)
        return timer

    @property
    def pending(self) -> list[FakeTimer]:
        return [t for t in self.timers if not t.cancelled]

    def advance(self, seconds: float) -> None:
        until = self.now + seconds
        for _ in range(10_000):
            due = [t for t in self.pending if t.when <= until]
            if not due:
                break
            timer = min(due, key=lambda t: t.when)
            self.timers.remove(timer)
            self.now = max(self.now, timer.when)
            timer.callback()
        self.now = until

    def run_out(self, limit_s: float = 60.0) -> None:
        """Advance until no timer is pending (bounded)."""
        while self.pending and limit_s > 0:
            step = max(min(t.when for t in self.pending) - self.now, 0.0)
            self.advance(step)
            limit_s -= step


class Link:
    """A pacer on the fake loop, sending into a list of (clock time, datagram)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, **pacer_args: float) -> None:
        self.loop = FakeLoop()
        monkeypatch.setattr(
            media.forward.pacer, "asyncio", SimpleNamespace(get_running_loop=lambda: self.loop)
        )
        monkeypatch.setattr(media.forward.pacer, "time", SimpleNamespace(time=lambda: WALL_TIME))
        self.sent: list[tuple[float, bytes]] = []
        self.pacer = Pacer(clock=lambda: self.loop.now, **pacer_args)  # type: ignore[arg-type]
        self.pacer.abs_send_time_id = ABS_ID
        self.pacer.connect(lambda data: self.sent.append((self.loop.now, data)))

    @property
    def datagrams(self) -> list[bytes]:
        return [data for _, data in self.sent]


_seq = itertools.count(1)


def packet(size: int = PACKET, *, pt: int = 96) -> bytes:
    """An RTP packet with an abs-send-time element (id `ABS_ID`) of `STAMP`, `size` bytes."""
    header = FIXED_HEADER.pack(0x90, pt, next(_seq) & 0xFFFF, 0, 1234)
    extension = b"\xbe\xde\x00\x01" + bytes([(ABS_ID << 4) | 2]) + STAMP.to_bytes(3, "big")
    body = size - len(header) - len(extension)
    return header + extension + b"v" * body


def stamp_of(data: bytes) -> int | None:
    ext_map = HeaderExtensionsMap()
    ext_map.configure(
        RTCRtpParameters(
            headerExtensions=[RTCRtpHeaderExtensionParameters(id=ABS_ID, uri=URI_ABS_SEND_TIME)]
        )
    )
    return RtpPacket.parse(data, ext_map).extensions.abs_send_time


def test_unpaced_both_sinks_send_straight_to_the_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    link = Link(monkeypatch)
    assert link.pacer.rate_bps is None and link.pacer.connected
    packets = [packet() for _ in range(50)]
    for data in packets:
        link.pacer.video.send(data)
    link.pacer.audio.send(audio := packet(120, pt=111))
    assert link.datagrams == [*packets, audio]
    assert link.pacer.queued_bytes == 0 and link.pacer.sent_late == 0
    assert link.loop.timers == []


def test_before_connect_and_after_disconnect_nothing_is_sent() -> None:
    sent: list[bytes] = []
    pacer = Pacer()
    pacer.video.send(packet())
    pacer.audio.send(packet())
    assert not pacer.connected and not pacer.video.connected
    pacer.connect(sent.append)
    pacer.disconnect()
    pacer.video.send(packet())
    pacer.audio.send(packet())
    assert sent == [] and not pacer.connected


def test_paced_video_waits_for_the_bucket_and_leaves_at_the_rate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    link = Link(monkeypatch)
    link.pacer.set_rate(RATE)
    start = link.loop.now
    packets = [packet() for _ in range(10)]
    for data in packets:
        link.pacer.video.send(data)
    # the bucket starts with its burst (2400 bytes, min_burst_bytes, more than 20 ms of the
    # rate): the first packets leave at once, until it is in debt
    assert [at for at, _ in link.sent] == [start] * 3
    assert link.pacer.queued_bytes == 7 * PACKET
    assert link.pacer.backlog_s == pytest.approx(7 * PACKET * 8 / RATE)  # what waits, in time
    link.loop.run_out()
    assert link.pacer.backlog_s == 0.0
    assert link.datagrams[:3] == packets[:3]
    assert [data[:12] for data in link.datagrams] == [data[:12] for data in packets], "FIFO"
    times = [at for at, _ in link.sent]
    gaps = [b - a for a, b in itertools.pairwise(times[3:])]
    assert gaps == pytest.approx([INTERVAL] * 6)
    # the last one leaves once the rate has paid for the 9 before it beyond the 2400-byte burst
    assert times[-1] - start == pytest.approx((9 * 1024 - 2400) * 8 / RATE)
    assert link.pacer.sent_late == 7 and link.pacer.queued_bytes == 0
    assert link.loop.pending == []


def test_video_sent_while_nothing_waits_and_the_bucket_has_tokens_goes_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    link = Link(monkeypatch)
    link.pacer.set_rate(RATE)
    for _ in range(20):  # one packet per interval: never more than the rate
        link.pacer.video.send(packet())
        link.loop.advance(INTERVAL)
    assert link.pacer.sent_late == 0 and len(link.sent) == 20
    assert link.loop.timers == []


def test_audio_never_waits_and_the_video_behind_it_does(monkeypatch: pytest.MonkeyPatch) -> None:
    def video_times(with_audio: bool) -> tuple[list[float], Link]:
        link = Link(monkeypatch)
        link.pacer.set_rate(RATE)
        for _ in range(5):
            link.pacer.video.send(packet())
        if with_audio:
            audio = packet(PACKET, pt=111)
            link.pacer.audio.send(audio)
            assert link.sent[-1] == (link.loop.now, audio), "audio left at once"
            assert link.pacer.queued_bytes == 2 * PACKET, "past the queued video"
        link.loop.run_out()
        return [at for at, data in link.sent if data[1] & 0x7F == 96], link

    plain, _ = video_times(False)
    delayed, link = video_times(True)
    assert delayed[:3] == plain[:3]
    # the audio's bytes came out of the bucket: each waiting video packet leaves one
    # datagram's time later
    assert [b - a for a, b in zip(plain[3:], delayed[3:], strict=True)] == pytest.approx(
        [INTERVAL] * 2
    )
    assert stamp_of(link.sent[3][1]) == STAMP, "audio is not restamped"


def test_setting_no_rate_flushes_what_waits_and_stops_pacing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    link = Link(monkeypatch)
    link.pacer.abs_send_time_id = 0  # flushed packets keep their bytes (no stamp to renew)
    link.pacer.set_rate(RATE)
    packets = [packet() for _ in range(8)]
    for data in packets:
        link.pacer.video.send(data)
    assert len(link.sent) == 3 and link.loop.pending
    link.pacer.set_rate(None)
    assert link.datagrams == packets and link.pacer.queued_bytes == 0
    assert link.loop.pending == [], "the drain timer is cancelled"
    after = [packet() for _ in range(30)]
    for data in after:
        link.pacer.video.send(data)
    assert link.datagrams == packets + after, "unpaced again"
    assert len({at for at, _ in link.sent}) == 1


def test_a_new_rate_applies_to_what_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    link = Link(monkeypatch)
    link.pacer.set_rate(RATE)
    for _ in range(10):
        link.pacer.video.send(packet())
    link.pacer.set_rate(RATE * 4)
    link.loop.run_out()
    times = [at for at, _ in link.sent]
    assert [b - a for a, b in itertools.pairwise(times[3:])] == pytest.approx([INTERVAL / 4] * 6)


def paced_with_waiting(monkeypatch: pytest.MonkeyPatch, packets: int = 8) -> Link:
    """A paced link sent `packets` video packets at once: most of them wait."""
    link = Link(monkeypatch)
    link.pacer.set_rate(RATE)
    for _ in range(packets):
        link.pacer.video.send(packet())
    return link


def test_disconnect_drops_what_waits_and_sends_nothing_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    link = paced_with_waiting(monkeypatch)
    link.pacer.disconnect()
    assert link.pacer.queued_bytes == 0 and link.loop.pending == []
    link.pacer.video.send(packet())
    link.pacer.audio.send(packet())
    link.loop.run_out()
    assert len(link.sent) == 3
    assert not link.pacer.connected and not link.pacer.video.connected


def test_dropping_what_waits_sends_none_of_it_and_later_video_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The last video stream paused: the video waiting is no one's any more."""
    link = paced_with_waiting(monkeypatch)
    sent = len(link.sent)
    assert link.pacer.drop_queued() == 8 - sent
    assert link.pacer.queued_bytes == 0 and link.pacer.dropped == 8 - sent
    # counted per SSRC: the receiver will report them lost, which the link did not lose
    assert link.pacer.dropped_of(1234) == 8 - sent and link.pacer.dropped_of(99) == 0
    link.loop.run_out()
    assert len(link.sent) == sent
    link.pacer.video.send(packet())  # a resumed stream's keyframe, later
    link.loop.run_out()
    assert len(link.sent) == sent + 1


def test_a_queue_longer_than_max_queue_s_loses_its_oldest_packets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    link = Link(monkeypatch, max_queue_s=0.1)
    link.pacer.set_rate(RATE)
    packets = [packet() for _ in range(30)]
    for data in packets:
        link.pacer.video.send(data)
        assert link.pacer.queued_bytes <= RATE / 8 * 0.1
    # 0.1 s of the rate is 6553 bytes: 6 packets of 996 wait, the 21 before them are dropped
    assert link.pacer.dropped == 21 and link.pacer.dropped_of(1234) == 21
    link.loop.run_out()
    assert [d[:12] for d in link.datagrams] == [d[:12] for d in packets[:3] + packets[-6:]]


def test_a_packet_that_waited_leaves_with_a_fresh_abs_send_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    link = Link(monkeypatch)
    link.pacer.set_rate(RATE)
    packets = [packet() for _ in range(6)]
    for data in packets:
        link.pacer.video.send(data)
    link.loop.run_out()
    stamps = [stamp_of(data) for data in link.datagrams]
    assert stamps == [STAMP] * 3 + [abs_send_time(WALL_TIME)] * 3
    for sent, original in zip(link.datagrams, packets, strict=True):
        assert len(sent) == len(original)
        assert sent[:17] == original[:17] and sent[20:] == original[20:], "only the 3 bytes"


def test_without_abs_send_time_a_late_packet_leaves_as_it_came(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    link = Link(monkeypatch)
    link.pacer.abs_send_time_id = 0
    link.pacer.set_rate(RATE)
    packets = [packet() for _ in range(6)]
    for data in packets:
        link.pacer.video.send(data)
    link.loop.run_out()
    assert link.datagrams == packets


def test_a_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Pacer().set_rate(0.0)


@pytest.mark.timeout(30)
async def test_on_the_real_event_loop_the_queue_drains_by_itself() -> None:
    sent: list[bytes] = []
    pacer = Pacer()
    pacer.connect(sent.append)
    pacer.set_rate(2_000_000.0)
    try:
        for _ in range(40):
            pacer.video.send(packet())
        assert len(sent) < 40 and pacer.queued_bytes > 0
        for _ in range(2_000):  # bounded: 40 kB at 250 kB/s takes about 0.2 s
            if len(sent) == 40:
                break
            await asyncio.sleep(0.01)
        assert len(sent) == 40 and pacer.queued_bytes == 0
    finally:
        pacer.disconnect()


# -- the padding lane: a probe's padding beside the video ----------------------------------------


def test_padding_leaves_after_the_video_that_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    link = Link(monkeypatch)
    link.pacer.set_rate(RATE)
    video = [packet() for _ in range(5)]
    padding = [packet(300, pt=97) for _ in range(4)]
    for data in video:  # three leave at once (the burst), two wait
        link.pacer.video.send(data)
    for data in padding:
        link.pacer.padding.send(data)
    assert len(link.sent) == 3
    link.loop.run_out()
    sent = [data[:12] for data in link.datagrams]
    assert sent[:5] == [data[:12] for data in video]  # padding never goes before video
    assert sent[5:] == [data[:12] for data in padding]


def test_padding_the_next_tick_finds_unsent_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe's padding still waiting when its tick is over must not outlast it (drained at
    the lower rate after the probe, it overflowed a 300 kbit/s link for a second more)."""
    link = Link(monkeypatch)
    link.pacer.set_rate(RATE)
    for _ in range(20):
        link.pacer.padding.send(packet(300, pt=97))
    sent = len(link.sent)
    assert 0 < sent < 20
    assert link.pacer.drop_padding() == 20 - sent
    assert link.pacer.padding_dropped == 20 - sent
    link.loop.run_out()
    assert len(link.sent) == sent
    link.pacer.video.send(packet())
    link.loop.run_out()
    assert len(link.sent) == sent + 1


def test_unpaced_padding_goes_straight_and_waiting_padding_is_not_flushed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    link = Link(monkeypatch)
    link.pacer.padding.send(first := packet(300, pt=97))
    assert link.datagrams == [first]
    link.pacer.set_rate(RATE)
    for _ in range(20):
        link.pacer.padding.send(packet(300, pt=97))
    sent = len(link.sent)
    link.pacer.set_rate(None)  # video waiting would be flushed; padding is dropped
    assert len(link.sent) == sent and link.pacer.padding_dropped == 21 - sent
