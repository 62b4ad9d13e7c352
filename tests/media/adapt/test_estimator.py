"""DownlinkEstimator turns REMB, receiver reports and sent bytes into one link estimate: tables
for each input, and sequences over time for overflow, recovery and outages."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from aiortc.rtp import pack_remb_fci

from media.adapt.estimator import (
    DownlinkEstimator,
    EstimateBound,
    EstimatorPolicy,
    LinkEstimate,
    RecentValues,
    SentRate,
)

POLICY = EstimatorPolicy(initial_bps=1_000_000)
"""The tables and sequences below start from a round 1 Mbit/s guess, not the relay's default
(which is what a weak village link carries)."""


def lost(fraction: float) -> int:
    """RTCP's 8-bit fraction lost."""
    return round(fraction * 256)


def send(est: DownlinkEstimator, bps: float, start: float, end: float, pps: int = 100) -> None:
    """Feed `on_sent` with packets at `bps` from `start` to `end`."""
    size = round(bps / 8 / pps)
    count = round((end - start) * pps)
    for i in range(count):
        est.on_sent(size, start + i / pps)


def step(est: DownlinkEstimator, bps: float, start: float, end: float, loss: float) -> None:
    """Send at `bps` from `start` to `end`, then receive a report with `loss` at `end`."""
    send(est, bps, start, end)
    est.on_receiver_report(lost(loss), 0, 0, 0, end)


@pytest.mark.parametrize(
    ("sends", "now", "expected_bps"),
    [
        ([], 1.0, 0.0),
        ([(1250, t / 100) for t in range(100)], 0.99, 1_000_000),  # 1250 B x 100/s
        ([(1250, t / 100) for t in range(300)], 2.99, 1_000_000),
        ([(1250, t / 100) for t in range(100)], 5.0, 0.0),  # nothing in the last window
        ([(2500, t / 100) for t in range(200, 300)], 2.99, 2_000_000),
        # batches counted at ticks (every 0.5 s) and at a report in between (0.3 s after one):
        # each is what was sent since the one before, so 1M throughout, whenever read
        ([(62_500, t / 2) for t in range(1, 21)], 10.0, 1_000_000),
        ([(62_500, t / 2) for t in range(1, 21)] + [(37_500, 10.3)], 10.3, 1_000_000),
        ([(62_500, t / 2) for t in range(1, 21)] + [(37_500, 10.3)], 10.45, 1_000_000),
        ([(62_500, t / 2) for t in range(1, 21)] + [(0, 10.5)], 10.5, 500_000),  # quiet since
    ],
)
def test_sent_rate_is_bytes_over_the_last_window(
    sends: list[tuple[int, float]], now: float, expected_bps: float
) -> None:
    meter = SentRate(1.0)
    for nbytes, at in sends:
        meter.add(nbytes, at)
    assert meter.bps(now) == pytest.approx(expected_bps, rel=0.05, abs=1.0)


def test_before_any_feedback_the_estimate_is_the_initial_guess() -> None:
    est = DownlinkEstimator(EstimatorPolicy(initial_bps=700_000))
    e = est.estimate(0.0)
    assert (e.bps, e.bound, e.loss, e.rtt_s, e.jitter_s) == (
        700_000,
        EstimateBound.INITIAL,
        0.0,
        0.0,
        0.0,
    )


@pytest.mark.parametrize(
    ("remb_bps", "remb_at", "now", "expected_bps", "bound"),
    [
        (400_000, 0.0, 1.0, 400_000, EstimateBound.REMB),
        (3_000_000, 0.0, 1.0, 3_000_000, EstimateBound.REMB),  # no report yet: REMB alone
        (400_000, 0.0, 5.0, 400_000, EstimateBound.REMB),
        (400_000, 0.0, 5.1, 1_000_000, EstimateBound.INITIAL),  # stale after remb_timeout_s
        (10_000, 0.0, 1.0, 30_000, EstimateBound.REMB),  # clamped to min_bps
    ],
)
def test_remb_bounds_the_estimate_while_fresh(
    remb_bps: float, remb_at: float, now: float, expected_bps: float, bound: EstimateBound
) -> None:
    est = DownlinkEstimator(POLICY)
    est.on_remb(remb_bps, remb_at)
    e = est.estimate(now)
    assert (e.bps, e.bound) == (expected_bps, bound)


@pytest.mark.parametrize(
    ("video_bps", "audio_bps", "headers_bps", "expected_bps"),
    [
        (60_000, 0, 0, 48_000),  # nothing unseen: the REMB as it is
        # very-weak: 48k REMB of the low rung's payload while audio with RED went besides
        (60_000, 73_000, 0, 121_000),
        (60_000, 73_000, 8_000, 129_000),  # and the video packets' headers
        (0, 73_000, 0, 121_000),  # audio only: the REMB still bounds only what it measures
    ],
)
def test_the_remb_bounds_the_link_with_what_it_does_not_measure_added(
    video_bps: float, audio_bps: float, headers_bps: float, expected_bps: float
) -> None:
    est = DownlinkEstimator(POLICY)
    for i in range(1, 21):  # 2 s of counts every 0.1 s, as the relay's ticks and reports
        t = i / 10
        video, audio, headers = (int(b / 8 / 10) for b in (video_bps, audio_bps, headers_bps))
        est.on_sent(video + audio + headers, t, remb_unseen=audio + headers)
    est.on_remb(48_000, 2.0)
    e = est.estimate(2.0)
    assert e.bound is EstimateBound.REMB
    assert e.bps == pytest.approx(expected_bps, rel=0.01)
    assert est.remb_link_bps(2.0) == pytest.approx(expected_bps, rel=0.01)


@pytest.mark.parametrize(
    ("fci", "accepted", "bps"),
    [
        (pack_remb_fci(750_000, [1234]), True, 750_000),
        (pack_remb_fci(12_000_000, [1, 2]), True, pytest.approx(12_000_000, rel=1e-4)),
        (b"REMX\x01\x00\x00\x00", False, 1_000_000),
        (b"REMB", False, 1_000_000),
    ],
)
def test_remb_fci_is_parsed_with_aiortc_and_malformed_ones_ignored(
    fci: bytes, accepted: bool, bps: object
) -> None:
    est = DownlinkEstimator(POLICY)
    assert est.on_remb_fci(fci, 0.0) is accepted
    assert est.estimate(0.5).bps == bps


@pytest.mark.parametrize(
    ("sr_ntp", "sr_at", "lsr", "dlsr", "rr_at", "rtt_s"),
    [
        # Middle 32 bits of the NTP time 0x0001_0002_0003_0004 are 0x0002_0003.
        (0x0001_0002_0003_0004, 10.0, 0x0002_0003, 6554, 10.25, 0.15),
        (0x0001_0002_0003_0004, 10.0, 0x0002_0003, 0, 10.04, 0.04),
        (0x0001_0002_0003_0004, 10.0, 0x0009_0009, 0, 10.04, 0.0),  # unknown SR: no RTT
        (0x0001_0002_0003_0004, 10.0, 0, 0, 10.04, 0.0),  # no SR received yet: LSR = 0
        (0x0001_0002_0003_0004, 10.0, 0x0002_0003, 65536, 10.5, 0.0),  # negative: dropped
    ],
)
def test_rtt_comes_from_lsr_and_dlsr_against_our_sender_report_times(
    sr_ntp: int, sr_at: float, lsr: int, dlsr: int, rr_at: float, rtt_s: float
) -> None:
    est = DownlinkEstimator(POLICY)
    est.on_sender_report(sr_ntp, sr_at)
    est.on_receiver_report(0, 0, lsr, dlsr, rr_at)
    assert est.estimate(rr_at).rtt_s == pytest.approx(rtt_s, abs=1e-4)


def test_rtt_is_smoothed_and_only_recent_sender_reports_are_kept() -> None:
    est = DownlinkEstimator(POLICY)
    for i in range(40):
        est.on_sender_report(i << 16, float(i))
    est.on_receiver_report(0, 0, 0, 0, 40.0)
    est.on_receiver_report(0, 0, 2, 0, 40.1)  # forgotten: only the last 32 are kept
    assert est.estimate(40.1).rtt_s == 0.0
    est.on_receiver_report(0, 0, 39, 0, 39.1)
    est.on_receiver_report(0, 0, 39, 0, 39.5)
    assert est.estimate(40.0).rtt_s == pytest.approx(0.15 * 0.5 + 0.85 * 0.1)


@pytest.mark.parametrize(
    ("jitter", "clock_rate", "jitter_s"),
    [(900, 90_000, 0.01), (480, 48_000, 0.01), (0, 90_000, 0.0)],
)
def test_jitter_is_converted_from_the_stream_clock(
    jitter: int, clock_rate: int, jitter_s: float
) -> None:
    est = DownlinkEstimator(POLICY)
    est.on_receiver_report(0, jitter, 0, 0, 1.0, clock_rate=clock_rate)
    assert est.estimate(1.0).jitter_s == pytest.approx(jitter_s)


def test_loss_is_an_average_weighted_to_the_newest_report() -> None:
    est = DownlinkEstimator(POLICY)
    losses = []
    for i, fraction in enumerate([0.0, 0.2, 0.2, 0.0, 0.0]):
        est.on_receiver_report(lost(fraction), 0, 0, 0, float(i))
        losses.append(est.estimate(float(i)).loss)
    assert losses == pytest.approx([0.0, 0.1, 0.15, 0.075, 0.0375], abs=0.002)


@pytest.mark.parametrize(
    ("bound_bps", "sent_bps", "loss", "expected_bps"),
    [
        (250_000, 1_000_000, 0.85, 150_000),  # overflow: down to what got through
        (1_000_000, 1_000_000, 0.85, 150_000),  # sending at the bound: at once
        (1_000_000, 500_000, 0.85, 500_000),  # app-limited: one decrease keeps half the bound
        (1_000_000, 1_000_000, 0.30, 700_000),
        (1_000_000, 1_000_000, 0.12, 940_000),  # GCC: sent x (1 - loss / 2)
        (1_000_000, 1_000_000, 0.05, 1_000_000),  # 2..10%: hold
        (300_000, 200_000, 0.12, 188_000),
        (1_000_000, 200_000, 0.12, 500_000),  # sent far below the bound: half the bound
    ],
)
def test_one_lossy_report_lowers_the_bound_as_gcc_does_by_at_most_half(
    bound_bps: float, sent_bps: float, loss: float, expected_bps: float
) -> None:
    est = DownlinkEstimator(EstimatorPolicy(initial_bps=bound_bps))
    send(est, sent_bps, 0.0, 2.0)
    est.on_receiver_report(lost(loss), 0, 0, 0, 2.0)
    e = est.estimate(2.0)
    assert e.bps == pytest.approx(expected_bps, rel=0.03)
    assert e.bound is EstimateBound.LOSS


def test_decreases_are_spaced_by_the_interval_plus_rtt() -> None:
    est = DownlinkEstimator(POLICY)
    step(est, 1_000_000, 0.0, 2.0, 0.12)  # 940k
    step(est, 1_000_000, 2.0, 2.1, 0.12)  # too soon (the audio block of the same report)
    assert est.estimate(2.1).bps == pytest.approx(940_000, rel=0.03)
    step(est, 1_000_000, 2.1, 2.4, 0.12)
    assert est.estimate(2.4).bps == pytest.approx(940_000 * 0.94, rel=0.03)


def test_low_loss_raises_the_bound_only_while_we_send_near_it() -> None:
    est = DownlinkEstimator(EstimatorPolicy(initial_bps=500_000))
    # App-limited: 200k sent under a 500k bound, no loss: no rise.
    for t in range(1, 6):
        step(est, 200_000, t - 1, t, 0.0)
    assert est.estimate(5.0).bps == pytest.approx(500_000)
    # Sending at the bound: +8% a second; once the bound is beyond 8/7 of what we send, it
    # goes on rising only up to twice what we send.
    bounds = []
    for t in range(6, 11):
        step(est, 500_000, t - 1, t, 0.0)
        bounds.append(est.estimate(float(t)).bps)
    assert bounds == pytest.approx([540_000, 583_200, 629_856, 680_244, 734_664], rel=0.01)
    for t in range(11, 21):
        step(est, 500_000, t - 1, t, 0.0)
    assert est.estimate(20.0).bps == pytest.approx(1_000_000, rel=0.01)


@pytest.mark.parametrize(
    ("sent_bps", "expected"),
    [
        # sending at the bound: an overflow goes to what got through at once
        (1_000_000, [150_000, 150_000, 150_000, 150_000]),
        # app-limited (a burst lost after a quiet second): half the bound per decrease, so one
        # bad report cannot throw the bound to the audio rate; a real overflow gets there anyway
        (300_000, [500_000, 250_000, 45_000, 45_000]),
    ],
)
def test_overflow_goes_to_what_got_through_but_an_app_limited_one_halves_per_decrease(
    sent_bps: float, expected: list[float]
) -> None:
    est = DownlinkEstimator(POLICY)
    bounds = []
    for end in (2.0, 2.5, 3.0, 3.5):
        step(est, sent_bps, end - 0.5 if end > 2.0 else 0.0, end, 0.85)
        bounds.append(est.estimate(end).bps)
    assert bounds == pytest.approx(expected, rel=0.03)


def test_what_got_through_without_loss_lifts_the_bound_at_once() -> None:
    est = DownlinkEstimator(POLICY)
    for end in (2.0, 2.5, 3.0):
        step(est, 1_000_000, end - 0.5 if end > 2.0 else 0.0, end, 0.85)
    assert est.estimate(3.0).bps == pytest.approx(150_000, rel=0.03)
    # A probe: 450k sent for a second and all of it arrived.
    send(est, 450_000, 3.0, 4.0)
    est.on_receiver_report(0, 0, 0, 0, 4.0)
    assert est.estimate(4.0).bps >= 440_000


def test_remb_below_the_loss_bound_wins_and_loss_cuts_below_a_lagging_remb() -> None:
    est = DownlinkEstimator(POLICY)
    send(est, 1_000_000, 0.0, 2.0)
    est.on_remb(600_000, 1.5)
    est.on_receiver_report(0, 0, 0, 0, 1.5)
    assert (est.estimate(1.5).bps, est.estimate(1.5).bound) == (600_000, EstimateBound.REMB)
    est.on_remb(2_000_000, 1.9)
    est.on_receiver_report(lost(0.8), 0, 0, 0, 2.0)
    e = est.estimate(2.0)
    # sending at the 1M bound, 80% lost: down to what got through (200k), far below the REMB
    assert e.bound is EstimateBound.LOSS and e.bps == pytest.approx(200_000, rel=0.05)
    step(est, 1_000_000, 2.0, 2.5, 0.8)
    assert est.estimate(2.5).bps == pytest.approx(200_000, rel=0.05)


def test_report_after_an_outage_does_not_count_as_congestion() -> None:
    est = DownlinkEstimator(POLICY)
    send(est, 1_000_000, 0.0, 2.0)
    est.on_receiver_report(0, 0, 0, 0, 1.0)
    est.on_receiver_report(0, 0, 0, 0, 2.0)
    before = est.estimate(2.0)
    # The link is cut for 5 s; the first report after it says 95% of that time was lost.
    send(est, 1_000_000, 2.0, 7.5)
    est.on_receiver_report(lost(0.95), 0, 0, 0, 7.5)
    after = est.estimate(7.5)
    assert est.outages == 1
    assert (after.bps, after.loss) == (before.bps, before.loss)
    # Reports in the next outage_settle_s may still describe the cut...
    step(est, 1_000_000, 7.5, 8.5, 0.95)
    assert est.outages == 2 and est.estimate(8.5).bps == before.bps
    # ...and after it they count again: sending at the bound, down to what got through.
    step(est, 1_000_000, 8.5, 9.5, 0.95)
    assert est.estimate(9.5).bps == pytest.approx(1_000_000 * (1 - 243 / 256), rel=0.02)


@pytest.mark.parametrize(
    ("silence_s", "loss", "outage"),
    [
        (5.0, 0.95, True),
        (5.0, 0.50, True),
        (5.0, 0.45, False),  # a slow reporter (audio alone: one report in 5 s) on a lossy link
        (5.0, 0.0, False),
        (2.5, 0.95, False),  # reports a second apart would not be this late: congestion
    ],
)
def test_an_outage_is_a_late_report_that_lost_most_of_its_interval(
    silence_s: float, loss: float, outage: bool
) -> None:
    est = DownlinkEstimator(POLICY)
    send(est, 1_000_000, 0.0, 1.0)
    est.on_receiver_report(0, 0, 0, 0, 1.0)
    before = est.estimate(1.0)
    send(est, 1_000_000, 1.0, 1.0 + silence_s)
    est.on_receiver_report(lost(loss), 0, 0, 0, 1.0 + silence_s)
    after = est.estimate(1.0 + silence_s)
    assert est.outages == (1 if outage else 0)
    if outage or loss <= POLICY.decrease_above:
        assert after.bps >= before.bps
    else:
        assert after.bps < before.bps
    # not an outage: the report is averaged into the loss like any other
    counted = lost(loss) / 256 * POLICY.loss_weight
    assert after.loss == (before.loss if outage else pytest.approx(counted))


def test_estimate_follows_a_flap_down_at_once_and_back_up_through_probes() -> None:
    """1 Mbit/s offered; the link falls to 150k for 20 s, then returns. The relay offers what
    the estimate allows, plus a probe a rung up after the link returns."""
    est = DownlinkEstimator(POLICY)
    capacity = {t: 150_000.0 if 10 <= t < 30 else 10_000_000.0 for t in range(0, 60)}
    offered = 1_000_000.0
    estimates: dict[int, float] = {}
    for t in range(1, 60):
        if t == 32:
            offered = 450_000.0  # probe: the next rung up
        elif t == 35:
            offered = 1_050_000.0  # and the one after
        send(est, offered, t - 1, t)
        loss = max(0.0, 1 - capacity[t - 1] / offered)
        est.on_receiver_report(lost(loss), 0, 0, 0, float(t))
        estimates[t] = est.estimate(float(t)).bps
        if t < 32:
            offered = min(1_000_000.0, estimates[t] * 0.9)
    # the clean link let the bound grow to twice what was offered (2M); the first report
    # after the drop halves it (the relay sent well below it), the next one, sent near the
    # bound, goes to what gets through
    assert estimates[10] == pytest.approx(2 * 1_000_000, rel=0.01)
    assert estimates[11] == pytest.approx(estimates[10] * POLICY.max_decrease)
    assert estimates[12] <= 200_000, "down to the link within two reports"
    assert all(e <= 200_000 for t, e in estimates.items() if 12 <= t < 30)
    assert all(e >= 100_000 for t, e in estimates.items() if 11 <= t < 30)
    assert estimates[33] >= 440_000 and estimates[36] >= 1_000_000


@dataclass
class Receiver:
    """What a receiver reports about one stream it gets: `pps` packets a second, and in each
    report block its extended highest sequence number and cumulative packets lost."""

    ssrc: int
    pps: int
    highest: int = 1000
    lost: int = 0

    def report(self, est: DownlinkEstimator, now: float, seconds: float, lost_packets: int) -> None:
        expected = round(self.pps * seconds)
        self.highest += expected
        self.lost += lost_packets
        fraction = min(lost_packets * 256 // expected, 255) if expected else 0
        est.on_receiver_report(
            fraction, 0, 0, 0, now, counters=(self.ssrc, self.highest, self.lost)
        )


@pytest.mark.parametrize(
    ("streams", "loss"),
    [
        # a slide share sending 5 packets a second that loses one does not read as 20%
        ([(100, 0), (5, 1)], 1 / 105),
        ([(100, 5)], 0.05),
        ([(50, 10), (50, 0)], 0.10),
        ([(100, 5), (50, 10)], 30 / 300),
        # 15 packets in the window (loss_min_packets is 50): nothing to say, no loss yet
        ([(5, 1)], 0.0),
        # ... unless the loss is evident: 5 of a 10-packet-a-second stream lost each second
        # (a probe of the low rung on a link that cannot carry it) reads without waiting
        ([(10, 5)], 0.5),
        ([(10, 3)], 0.3),
        # 2 lost of 20 is not evident (a link's own random loss can do that)
        ([(10, 1)], 0.0),
    ],
)
def test_with_counters_loss_is_lost_over_expected_packets_of_every_stream(
    streams: list[tuple[int, int]], loss: float
) -> None:
    est = DownlinkEstimator(POLICY)
    receivers = [Receiver(ssrc, pps) for ssrc, (pps, _) in enumerate(streams, start=1)]
    for t in range(1, 6):
        send(est, 500_000, t - 1, t)
        for receiver, (_, lost_per_s) in zip(receivers, streams, strict=True):
            receiver.report(est, float(t), 1.0, lost_per_s if t > 1 else 0)
    assert est.estimate(5.0).loss == pytest.approx(loss)


@pytest.mark.parametrize(
    ("first_seq", "highest", "lost_packets", "bound", "loss"),
    [
        # without the first packet's number the first report only sets the baseline: the
        # estimate stays the guess (the relay's 400k stepped a 1 Mbit/s camera down on
        # loopback while aiortc's second report was late)
        (None, 30_099, 0, EstimateBound.INITIAL, 0.0),
        # with it, the first report counts from the first packet: 100 sent, none lost
        (30_000, 30_099, 0, EstimateBound.LOSS, 0.0),
        (30_000, 30_099, 20, EstimateBound.LOSS, 0.2),
        # the receiver's extended numbers start at its first packet, with no cycles: a
        # stream that starts near the top of the range wraps into the next cycle
        (65_500, 65_599, 0, EstimateBound.LOSS, 0.0),
        # numbers that cannot follow the first packet (an older stream): baseline only
        (30_000, 29_000, 0, EstimateBound.INITIAL, 0.0),
    ],
)
def test_with_the_first_packets_number_the_first_report_counts(
    first_seq: int | None, highest: int, lost_packets: int, bound: EstimateBound, loss: float
) -> None:
    est = DownlinkEstimator(EstimatorPolicy(initial_bps=400_000))
    send(est, 1_000_000, 0.0, 1.0)
    est.on_receiver_report(
        lost(loss), 0, 0, 0, 1.0, counters=(7, highest, lost_packets), first_seq=first_seq
    )
    e = est.estimate(1.0)
    assert (e.bound, e.loss) == (bound, pytest.approx(loss))
    if bound is EstimateBound.LOSS and loss == 0.0:
        # what got through lifts the guess, with `clean_reach` above it (no loss, no queue)
        reach = EstimatorPolicy().clean_reach
        assert e.bps == pytest.approx(1_000_000 * reach, rel=0.05), "what got through lifts it"


def test_with_counters_too_few_packets_in_the_window_hold_the_loss() -> None:
    est = DownlinkEstimator(POLICY)
    video, slides = Receiver(1, 100), Receiver(2, 5)
    seen: dict[int, tuple[float, float]] = {}
    for t in range(1, 11):
        send(est, 500_000, t - 1, t)
        if t <= 3:  # then the camera stops: only the slides are left
            video.report(est, float(t), 1.0, 10 if t > 1 else 0)
        slides.report(est, float(t), 1.0, 1 if t > 1 else 0)
        e = est.estimate(float(t))
        seen[t] = (e.loss, e.bps)
    assert seen[3][0] == pytest.approx(0.10, abs=0.01)
    # at 6 the window (2 s) holds the slides' 15 packets alone: the loss and the bound stay
    # where the last full window (the reports since the last decrease, at 3) left them, far
    # from the slides' own 20%
    assert seen[5][0] == pytest.approx(12 / 110)
    assert all(seen[t] == seen[5] for t in range(6, 11))


def clean_then_cut() -> tuple[DownlinkEstimator, Receiver, LinkEstimate]:
    """Two clean reports at 1 Mbit/s, then the link cut from 2 to 7.5 (sent, not reported):
    the estimator, the video receiver and the estimate before the cut."""
    est = DownlinkEstimator(POLICY)
    video = Receiver(1, 100)
    for t in (1.0, 2.0):
        send(est, 1_000_000, t - 1, t)
        video.report(est, t, 1.0, 0)
    before = est.estimate(2.0)
    send(est, 1_000_000, 2.0, 7.5)
    return est, video, before


def test_with_counters_an_outage_moves_the_counters_on_without_counting_its_loss() -> None:
    est, video, before = clean_then_cut()
    # the first report after the cut says 500 of 550 packets lost
    video.report(est, 7.5, 5.5, 500)
    after = est.estimate(7.5)
    assert est.outages == 1 and (after.bps, after.loss) == (before.bps, before.loss)
    # The next report counts what was lost since the outage's report, not during it.
    send(est, 1_000_000, 7.5, 8.5)
    video.report(est, 8.5, 1.0, 3)
    assert est.estimate(8.5).loss == pytest.approx(0.03)
    assert est.estimate(8.5).bps >= before.bps


@pytest.mark.parametrize(
    "first_seconds",
    [
        0.0,  # made during the cut: nothing received since the report at 2.0
        0.1,  # made as the link returned: 10 packets, none lost yet
    ],
)
def test_the_report_after_a_cut_that_counts_it_as_lost_is_still_the_outage(
    first_seconds: float,
) -> None:
    """Seen in the lab: a report with little news arrives as the link returns, and the next
    one, 0.1 s later, counts the whole cut as lost. That one is still the outage, not
    congestion."""
    est, video, before = clean_then_cut()
    video.report(est, 7.4, first_seconds, 0)
    video.report(est, 7.5, 5.5, 500)
    assert est.outages == 1
    after = est.estimate(7.5)
    assert (after.bps, after.loss) == (before.bps, before.loss)


def test_after_an_outage_every_stream_of_the_same_report_is_part_of_the_outage() -> None:
    est = DownlinkEstimator(POLICY)
    video, audio = Receiver(1, 100), Receiver(2, 50)
    for t in (1.0, 2.0):
        send(est, 1_000_000, t - 1, t)
        video.report(est, t, 1.0, 0)
        audio.report(est, t, 1.0, 0)
    before = est.estimate(2.0)
    send(est, 1_000_000, 2.0, 7.5)
    video.report(est, 7.5, 5.5, 500)
    audio.report(est, 7.5, 5.5, 250)  # the next block of the same compound RR
    after = est.estimate(7.5)
    assert (after.bps, after.loss) == (before.bps, before.loss)


@pytest.mark.parametrize(
    ("rtts", "trusted_until"),
    [
        ([], 4),  # no RTT measured: nothing says there is no queue, 3 s (remb_distrust_s)
        ([0.02, 0.03], 2),  # the RTT at its floor: 1 s (remb_distrust_quick_s)
        ([0.02, 0.3], 4),  # the RTT risen by 280 ms, a queue: 3 s (remb_distrust_s)
    ],
)
def test_a_remb_contradicted_by_what_gets_through_stops_bounding_the_estimate(
    rtts: list[float], trusted_until: int
) -> None:
    """After a collapse the receiver's REMB climbs back at 8% a second; a relay that sends
    300k loss-free while the REMB says 40k stops believing it, after remb_distrust_quick_s
    while the RTT shows no queue, else remb_distrust_s, and goes by what gets through."""
    est = DownlinkEstimator(POLICY)
    for i, rtt in enumerate(rtts):
        est.on_rtt(rtt, i * 0.1)
    seen = {}
    for t in range(1, 9):
        est.on_remb(40_000, float(t) - 0.5)
        step(est, 300_000, t - 1, t, 0.0)
        seen[t] = est.estimate(float(t))
    assert seen[1].bound is EstimateBound.REMB and seen[1].bps == 40_000
    assert seen[trusted_until - 1].bound is EstimateBound.REMB  # contradicted since 1
    # at most what gets through (300k) times remb_distrust_reach (and the loss bound)
    assert 300_000 < seen[trusted_until].bps <= 300_000 * POLICY.remb_distrust_reach * 1.01
    # loss comes back: the REMB bounds again
    est.on_remb(40_000, 8.5)
    step(est, 300_000, 8, 9, 0.05)
    assert est.estimate(9.0).bound is EstimateBound.REMB


def test_a_loss_bound_left_high_does_not_become_the_estimate_when_the_remb_goes_quiet() -> None:
    """The link fell to 150k: the REMB says 42k, audio alone gets through (45k). The receiver
    then sends no REMB (nothing it receives carries abs-send-time): when the REMB is stale the
    estimate is within remb_pull of it, not the 1M bound from before the fall."""
    est = DownlinkEstimator(POLICY)
    for t in (1.0, 2.0):
        step(est, 1_000_000, t - 1, t, 0.0)
    assert est.estimate(2.0).bps >= 1_000_000
    est.on_rtt(0.2, 2.0)  # a queue: the REMB is not distrusted quickly
    for t in (3.0, 4.0, 5.0):
        est.on_remb(42_000, t - 0.5)
        step(est, 45_000, t - 1, t, 0.0)
    assert est.estimate(5.0).bps == 42_000
    for t in (6.0, 7.0, 8.0, 9.0, 10.0):
        step(est, 45_000, t - 1, t, 0.0)
    stale = est.estimate(10.0)  # last REMB at 4.5: stale after 5 s
    assert stale.bound is EstimateBound.LOSS
    assert stale.bps <= 45_000 * POLICY.remb_pull * POLICY.app_limited_reach


def test_an_outage_ending_mid_report_interval_is_still_an_outage() -> None:
    """The link is cut for 5 s; the receiver's reports during the cut are lost, and its first
    report after it covers only its last second (40% lost): the counters, which span the whole
    cut since the last report we got, say it was an outage."""
    est, video, before = clean_then_cut()
    video.highest += 550
    video.lost += 460
    est.on_receiver_report(lost(0.4), 0, 0, 0, 7.5, counters=(1, video.highest, video.lost))
    assert est.outages == 1
    assert est.estimate(7.5).bps == before.bps


@pytest.mark.parametrize(
    ("over_floor", "rises"),
    [
        (0.02, True),  # 3% is the link's own loss: the bound climbs back
        (0.0, False),  # plain GCC: between 2% and 10% it holds, so one cut is for good
    ],
)
def test_on_a_link_with_its_own_random_loss_the_bound_rises_again_after_a_cut(
    over_floor: float, rises: bool
) -> None:
    est = DownlinkEstimator(replace(POLICY, increase_over_floor=over_floor))
    for t in (1.0, 2.0):
        step(est, 1_000_000, t - 1, t, 0.03)
    step(est, 1_000_000, 2.0, 3.0, 0.5)  # a burst overflowed the link: down to what got through
    cut = est.estimate(3.0).bps
    assert cut == pytest.approx(500_000, rel=0.02)
    for t in range(4, 10):
        step(est, cut, t - 1, t, 0.03)
    after = est.estimate(9.0).bps
    assert after > cut * 1.3 if rises else after == cut


def test_a_passed_padding_probe_lifts_both_bounds_until_loss_cuts_again() -> None:
    est = DownlinkEstimator(POLICY)
    heartbeat = Receiver(1, 60)
    for t in range(1, 5):  # audio only after a dip: the REMB and the bound sit low
        send(est, 80_000, t - 1, t)
        est.on_remb(40_000, float(t))
        heartbeat.report(est, float(t), 1.0, 0)
    assert est.estimate(4.0).bps == pytest.approx(40_000)
    carried = est.estimate(4.0).carried_bps
    est.probe_passed(600_000, 4.5)
    after = est.estimate(4.5)
    assert after.bps == pytest.approx(600_000), "a REMB below what the probe proved is not believed"
    assert after.carried_bps == pytest.approx(600_000) and carried < 600_000
    for t in (5, 6):  # the REMB stays low, the loss too: the estimate stays
        send(est, 500_000, t - 1, t)
        est.on_remb(60_000, float(t))
        heartbeat.report(est, float(t), 1.0, 0)
        assert est.estimate(float(t)).bps >= 600_000
    for t in (7, 8):  # congestion: the cut ends the probe's word ...
        send(est, 600_000, t - 1, t)
        est.on_remb(60_000, float(t))
        heartbeat.report(est, float(t), 1.0, 20)
    # ... though the REMB, distrusted until this loss, takes it no lower than 0.85 times what
    # got through cleanly (`congestion_backoff`, 425k): the loss bound's cuts go on
    assert 300_000 < est.estimate(8.0).bps <= 425_000
    for t in range(9, 13):  # the link collapsed: the loss bound follows what gets through
        send(est, 100_000, t - 1, t)
        est.on_remb(60_000, float(t))
        heartbeat.report(est, float(t), 1.0, 30)
    assert est.estimate(12.0).bps < 100_000


def test_a_failed_probe_takes_back_what_the_loss_bound_gained_while_it_padded() -> None:
    """The reports that let the loss bound rise under a probe's padding predate its losses."""
    est = DownlinkEstimator(POLICY)
    video = Receiver(1, 100)
    for t in range(1, 4):
        send(est, 400_000, t - 1, t)
        video.report(est, float(t), 1.0, 0)
    before = est.estimate(3.0).bps
    for t in (4, 5):  # padding at twice that, reported clean before its queue overflowed
        send(est, 800_000, t - 1, t)
        video.report(est, float(t), 1.0, 0)
    assert est.estimate(5.0).bps > before
    est.probe_failed(before, 5.0)
    assert est.estimate(5.0).bps == pytest.approx(before)
    est.probe_failed(10 * before, 5.5)  # one that started higher takes nothing back
    assert est.estimate(5.5).bps == pytest.approx(before)


@pytest.mark.parametrize(
    ("failed_bps", "passed_bps", "reach"),
    [
        # nothing failed: the bound creeps to twice what is sent
        (None, None, 600_000.0),
        # a probe failed at 400k: it creeps no further than 90% of that
        (400_000.0, None, 360_000.0),
        # ... a failed probe above twice what is sent changes nothing
        (800_000.0, None, 600_000.0),
        # ... until a probe passes at it (the link carries what failed before)
        (400_000.0, 400_000.0, 600_000.0),
    ],
)
def test_after_a_failed_probe_an_application_limited_bound_creeps_only_below_its_target(
    failed_bps: float | None, passed_bps: float | None, reach: float
) -> None:
    """A 300 kbit/s classroom sent 270k had its bound creep past a probe that failed at 392k,
    and the next probe, aimed from there, overflowed the link again."""
    est = DownlinkEstimator(EstimatorPolicy(initial_bps=300_000))
    for t in range(1, 4):
        step(est, 300_000, t - 1, t, 0.0)
    est.probe_failed(est.estimate(3.0).bps, 3.0, failed_bps)
    if passed_bps is not None:
        est.probe_passed(passed_bps, 3.5)
    for t in range(4, 30):  # clean reports while 300k is sent: application-limited
        step(est, 300_000, t - 1, t, 0.0)
    assert est.estimate(29.0).bps == pytest.approx(reach, rel=0.02)
    for t in range(30, 50):  # 30 s on, the failure no longer holds it
        step(est, 300_000, t - 1, t, 0.0)
    assert est.estimate(49.0).bps == pytest.approx(600_000.0, rel=0.02)


def test_carried_is_the_most_that_got_through_over_the_last_minute() -> None:
    est = DownlinkEstimator(POLICY)
    video = Receiver(1, 100)
    for t in range(1, 4):
        send(est, 800_000, t - 1, t)
        video.report(est, float(t), 1.0, 0)
    for t in range(4, 60):
        send(est, 100_000, t - 1, t)
        video.report(est, float(t), 1.0, 0)
    assert est.estimate(59.0).carried_bps == pytest.approx(800_000, rel=0.05)
    for t in range(60, 66):
        send(est, 100_000, t - 1, t)
        video.report(est, float(t), 1.0, 0)
    assert est.estimate(65.0).carried_bps == pytest.approx(100_000, rel=0.05)


def test_a_probe_overrides_a_low_remb_only_for_a_while() -> None:
    est = DownlinkEstimator(POLICY)
    video = Receiver(1, 100)
    for t in range(1, 4):
        send(est, 300_000, t - 1, t)
        est.on_remb(250_000, float(t))
        video.report(est, float(t), 1.0, 0)
    est.probe_passed(800_000, 3.0)
    seen = {}
    for t in range(4, 16):  # the receiver's REMB stays at 250k with no loss: a queue building
        send(est, 300_000, t - 1, t)
        est.on_remb(250_000, float(t))
        video.report(est, float(t), 1.0, 0)
        seen[t] = est.estimate(float(t)).bps
    assert seen[4] >= 800_000 and seen[12] >= 800_000
    assert seen[15] < 800_000, "after probed_trust_s the REMB bounds again"


@pytest.mark.parametrize(("since", "peak"), [(None, 0.02), (0.0, 0.08), (2.5, 0.02), (3.5, None)])
def test_the_rtt_sample_peak_since_a_moment(since: float | None, peak: float | None) -> None:
    est = DownlinkEstimator(POLICY)
    for at, rtt in ((1.0, 0.01), (2.0, 0.08), (3.0, 0.02)):
        est.on_rtt(rtt, at)
    assert est.rtt_sample_peak(since) == peak


def test_recent_values_keep_the_floor_peak_and_latest_of_their_window() -> None:
    window = RecentValues(10.0)
    assert (window.floor, window.peak, window.latest) == (None, None, None)
    seen = [(0.0, 5.0), (1.0, 3.0), (2.0, 8.0), (3.0, 4.0), (12.5, 6.0), (13.0, 2.0)]
    expected = [(5, 5), (3, 5), (3, 8), (3, 8), (4, 6), (2, 6)]  # (floor, peak) after each
    for (at, value), (floor, peak) in zip(seen, expected, strict=True):
        window.add(value, at)
        values = [v for t, v in seen if at - 10.0 <= t <= at]
        assert (window.floor, window.peak) == (min(values), max(values)) == (floor, peak)
        assert window.latest == value
    assert window.peak_since(12.8) == 2.0


@pytest.mark.parametrize(
    ("sent_bps", "loss", "bound"),
    [
        (100_000, 0.0, EstimateBound.INITIAL),  # little sent yet, nothing lost: still the guess
        (100_000, 0.05, EstimateBound.LOSS),  # the link loses: it said something
        (1_000_000, 0.0, EstimateBound.LOSS),  # what got through moved the guess up
    ],
)
def test_reports_that_neither_move_the_guess_nor_show_loss_leave_it_a_guess(
    sent_bps: float, loss: float, bound: EstimateBound
) -> None:
    """An aiortc receiver's first report can come when little was sent yet: the bound then
    still is the starting guess, and the estimate says so (the rung does not act on it)."""
    est = DownlinkEstimator(EstimatorPolicy(initial_bps=400_000))
    step(est, sent_bps, 0.0, 1.0, loss)
    e = est.estimate(1.0)
    assert e.bound is bound
    assert e.bps == pytest.approx(400_000, rel=0.05) or bound is not EstimateBound.INITIAL


def busy_loop(
    est: DownlinkEstimator, rembs: list[float], rtts: list[float], until: float
) -> dict[float, LinkEstimate]:
    """1.1 Mbit/s sent and delivered loss-free, receiver reports each second with the given
    RTT samples (cycled), REMBs every 0.1 s (cycled); the estimate at each tick (0.5 s)."""
    seen: dict[float, LinkEstimate] = {}
    t, i = 0.0, 0
    while t < until:
        est.on_remb(rembs[i % len(rembs)], t)
        if i % 10 == 9:
            send(est, 1_100_000, t - 0.9, t + 0.1)
            est.on_rtt(rtts[(i // 10) % len(rtts)], t)
            est.on_receiver_report(0, 0, 0, 0, t)
        if i % 5 == 4:
            seen[round(t, 1)] = est.estimate(t)
        t, i = round(t + 0.1, 1), i + 1
    return seen


@pytest.mark.parametrize(
    ("rembs", "rtts"),
    [
        # an aiortc receiver on a busy loop: its delay-based REMB at a third of what gets
        # through, the RTT jittering by tens of milliseconds, not a packet lost
        ([300_000, 440_000, 380_000], [0.005, 0.06, 0.02, 0.045]),
        ([600_000, 750_000], [0.001, 0.03]),
        ([250_000], [0.002, 0.09, 0.01]),
    ],
)
def test_a_busy_loop_remb_below_what_gets_through_loss_free_is_not_believed_for_long(
    rembs: list[float], rtts: list[float]
) -> None:
    """The queue such a REMB implies (seconds of it, a second after it began) is missing from
    the RTT: within two seconds the estimate covers what gets through, as the rung's
    shortfall (`down_after_s`, 1 s, from the first short tick) would otherwise step down."""
    seen = busy_loop(DownlinkEstimator(POLICY), rembs, rtts, 6.0)
    late = [e for t, e in seen.items() if t >= 2.0]
    assert late and all(e.bps >= 1_100_000 for e in late), [(t, e.bps) for t, e in seen.items()]


def test_a_remb_with_its_queue_in_the_rtt_is_believed() -> None:
    """Real congestion: 1.1 Mbit/s into a 700k link, the RTT growing with the queue (and no
    loss yet): the REMB bounds the estimate (for `remb_distrust_s`, as before)."""
    est = DownlinkEstimator(POLICY)
    est.on_rtt(0.02, -1.0)  # the floor, before the link shrank
    # 400k too much into 700k: 0.57 s more queue each second, from 0
    rtts = [0.02 + 0.57 * (k + 0.9) for k in range(10)]
    seen = busy_loop(est, [700_000], rtts, 2.6)
    assert all(e.bound is EstimateBound.REMB and e.bps < 1_000_000 for t, e in seen.items()
               if t >= 1.0)  # fmt: skip


@pytest.mark.parametrize(
    ("remb", "rtt_rise", "covers"),
    [
        # a busy loop's receiver backs off to 0.85 of what it receives: it received it all
        (950_000, 0.02, True),
        (900_000, 0.06, True),
        (850_000, 0.0, True),
        # with 150 ms more RTT, a queue: the REMB bounds
        (950_000, 0.15, False),
        # far below what gets through (a link at capacity receives only the capacity): the
        # REMB bounds until it is judged (`remb_distrust_s`, or its missing queue)
        (500_000, 0.02, False),
    ],
)
def test_a_remb_just_under_what_gets_through_loss_free_does_not_cut_below_it(
    remb: float, rtt_rise: float, covers: bool
) -> None:
    est = DownlinkEstimator(POLICY)
    est.on_rtt(0.01, 0.0)
    for t in range(1, 4):
        est.on_remb(2_000_000, t - 0.5)
        step(est, 1_100_000, t - 1, t, 0.0)
    est.on_rtt(0.01 + rtt_rise, 3.1)
    est.on_remb(remb, 3.2)
    e = est.estimate(3.3)  # a tick 0.1 s later: nothing judged yet
    assert (e.bps >= 1_100_000 * 0.99) is covers, e


@pytest.mark.parametrize(
    ("values", "held"),
    [
        ([], None),
        ([0.02], 0.02),
        ([0.02, 0.30], 0.02),  # a spike: the level held is the one before it
        ([0.30, 0.02], 0.02),  # back at the floor
        ([0.02, 0.25, 0.30], 0.25),  # two samples up: a level
    ],
)
def test_the_held_value_is_the_lesser_of_the_two_newest(
    values: list[float], held: float | None
) -> None:
    window = RecentValues(30.0)
    for i, value in enumerate(values):
        window.add(value, float(i))
    assert window.held == held


@pytest.mark.parametrize(
    ("rembs", "rtts"),
    [
        # a load generator's loop stalled: one RTT sample 200-370 ms up, the next back at the
        # floor, the REMB link at 0.6-0.8 of what gets through (measured, bench relay --remb)
        ([720_000, 680_000], [0.001, 0.018, 0.219, 0.002]),
        ([700_000], [0.001, 0.37, 0.001, 0.001]),
        ([800_000, 850_000], [0.001, 0.001, 0.25]),
    ],
)
def test_one_stalled_rtt_sample_does_not_make_a_busy_loop_remb_believed(
    rembs: list[float], rtts: list[float]
) -> None:
    """The spike is not a queue (`held_rtt_rise`): within two seconds the estimate covers what
    gets through, spike or not, as for the RTT jitter of tens of milliseconds."""
    seen = busy_loop(DownlinkEstimator(POLICY), rembs, rtts, 8.0)
    late = [e for t, e in seen.items() if t >= 2.0]
    assert late and all(e.bps >= 1_100_000 for e in late), [(t, e.bps) for t, e in seen.items()]


@pytest.mark.parametrize(
    ("remb", "rtts"),
    [
        (700_000, [0.211]),  # the RTT up 210 ms in two samples in a row: a queue
        (700_000, [0.3, 0.35]),
        (300_000, [0.001, 0.25]),  # far below what gets through: the link's, spike or not
    ],
)
def test_a_held_queue_or_a_remb_far_below_what_gets_through_is_believed(
    remb: float, rtts: list[float]
) -> None:
    """The REMB bounds (until `remb_distrust_s`) when its queue lasts, or when it says the
    link carries far less than gets through (a collapse)."""
    est = DownlinkEstimator(POLICY)
    est.on_rtt(0.001, -1.0)
    seen = busy_loop(est, [remb], rtts, 2.9)
    assert all(e.bound is EstimateBound.REMB and e.bps < 1_000_000 for t, e in seen.items()
               if 2.0 <= t < 2.9), [(t, e.bps) for t, e in seen.items()]  # fmt: skip


@pytest.mark.parametrize(
    ("lost_packets", "unsent", "loss"),
    [
        # over the window's 200 packets (two reports of 100)
        (30, 0, 0.15),  # all the link's
        (30, 30, 0.0),  # every packet counted lost was dropped by the relay's pacer
        (30, 20, 0.05),
        (10, 20, 0.0),  # more dropped than reported lost (some resent): never below nothing
    ],
)
def test_packets_the_relay_dropped_unsent_are_not_the_links_loss(
    lost_packets: int, unsent: int, loss: float
) -> None:
    est = DownlinkEstimator(POLICY)
    send(est, 500_000, 0.0, 1.0)
    est.on_receiver_report(0, 0, 0, 0, 1.0, counters=(1, 1100, 0), first_seq=1001)
    send(est, 500_000, 1.0, 2.0)
    est.on_receiver_report(
        lost(loss), 0, 0, 0, 2.0, counters=(1, 1200, lost_packets), unsent=unsent
    )
    assert est.estimate(2.0).loss == pytest.approx(loss)


def test_a_new_pacer_counting_from_nothing_is_not_a_negative_drop() -> None:
    est = DownlinkEstimator(POLICY)
    send(est, 500_000, 0.0, 1.0)
    est.on_receiver_report(0, 0, 0, 0, 1.0, counters=(1, 1100, 0), first_seq=1001, unsent=50)
    send(est, 500_000, 1.0, 2.0)
    # the connection's pacer was replaced: its count starts again at 5, all of them new
    est.on_receiver_report(0, 0, 0, 0, 2.0, counters=(1, 1200, 15), unsent=5)
    assert est.estimate(2.0).loss == pytest.approx(10 / 200)


def _queue_then_reports(rtts: list[float]) -> list[float]:
    """A loss-free link sent near its bound, one RTT sample before each report: the bound
    after each report."""
    est = DownlinkEstimator(POLICY)
    video = Receiver(1, 100)
    bounds = []
    for t, rtt in enumerate(rtts, start=1):
        send(est, 1_000_000, t - 1, t)
        est.on_rtt(rtt, float(t))
        video.report(est, float(t), 1.0, 0)
        bounds.append(est.estimate(float(t)).bps)
    return bounds


def test_a_queue_held_in_the_rtt_stops_the_loss_bound_rising() -> None:
    clear = _queue_then_reports([0.01] * 6)
    assert clear[-1] > clear[2], "no queue: the bound rises by increase_per_s"
    queued = _queue_then_reports([0.01, 0.01, 0.01, 0.09, 0.1, 0.11])
    assert queued[-1] == pytest.approx(queued[3]), "held 80-100 ms up: it holds"
    # one stalled sample (a receiver's busy loop) is not a queue
    stalled = _queue_then_reports([0.01, 0.01, 0.01, 0.3, 0.01, 0.01])
    assert stalled[-1] > stalled[3]


def test_a_queue_ends_what_a_padding_probe_proved() -> None:
    est = DownlinkEstimator(POLICY)
    video = Receiver(1, 100)
    for t in range(1, 4):
        send(est, 300_000, t - 1, t)
        est.on_remb(250_000, float(t))
        est.on_rtt(0.01, float(t))
        video.report(est, float(t), 1.0, 0)
    est.probe_passed(800_000, 3.0)
    assert est.estimate(3.0).bps >= 800_000
    for t in (4, 5):  # no loss, but the RTT held 90 ms over its floor: the link queues
        send(est, 600_000, t - 1, t)
        est.on_remb(550_000, float(t))  # and the receiver's delay-based estimate saw it
        est.on_rtt(0.1, float(t))
        video.report(est, float(t), 1.0, 0)
    assert est.estimate(5.0).bps <= 600_000, "the receiver's REMB bounds again"
    assert est.queue_building()


def clean_climb(
    est: DownlinkEstimator, video: Receiver, start: int, end: int, bps: float | None = None
) -> None:
    """Clean reports each second from `start` to `end` with the RTT at its 20 ms floor, while
    `bps` is sent, or the estimate itself (a relay whose top layer's ceiling follows it)."""
    for t in range(start, end + 1):
        send(est, bps if bps is not None else est.estimate(t - 1.0).bps, t - 1, t)
        est.on_rtt(0.02, float(t))
        video.report(est, float(t), 1.0, 0)


def congested(
    est: DownlinkEstimator, video: Receiver, t: float, bps: float, rtt: float = 0.15,
    *, lost: int = 10, probing: bool = False,
) -> None:
    """A report at `t` after a second of `bps`: `lost` of 100 packets lost, the RTT at `rtt`."""
    send(est, bps, t - 1, t)
    est.on_rtt(rtt, t)
    video.highest += 100
    video.lost += lost
    est.on_receiver_report(
        lost * 256 // 100, 0, 0, 0, t, counters=(video.ssrc, video.highest, video.lost),
        probing=probing,
    )


@pytest.mark.parametrize(
    ("rtt", "probing", "expected"),
    [
        # loss with a queue: congestion, answered as GCC's overuse, at 0.85 times the 900k
        # that got through cleanly, not at the REMB that lagged the climb
        (0.15, False, 765_000.0),
        # loss without a queue may be the link's random loss, but a REMB that was distrusted
        # and is believed again on it is answered as congestion too (a 2 Mbit/s classroom
        # with 1% loss read 2.0% once, and its REMB took the estimate from 1.9M to 652k)
        (0.02, False, 765_000.0),
        # a padding probe's congestion is the probe's (`probe_failed` answers it)
        (0.15, True, 300_000.0),
    ],
)
def test_congestion_backs_off_from_what_got_through_not_to_a_remb_that_lagged_the_climb(
    rtt: float, probing: bool, expected: float
) -> None:
    """A 1 Mbit/s classroom's REMB read 430k when its 360p first overflowed the link at 992k;
    believed, it put the video on 180p and then 15 fps for 8 s."""
    est = DownlinkEstimator(POLICY)
    video = Receiver(1, 100)
    for t in range(1, 6):
        est.on_remb(300_000, t - 0.5)  # a receiver's REMB, climbing at 8% a second from 300k
    clean_climb(est, video, 1, 5, 900_000)
    assert est.estimate(5.0).bps > 900_000  # the lagging REMB is distrusted
    est.on_remb(300_000, 5.5)
    congested(est, video, 6.0, 1_200_000, rtt, probing=probing)
    assert est.estimate(6.0).bps == pytest.approx(expected, rel=0.01)
    # RED holds 15 s on loss, 3 s on an overflow with a queue (`LinkEstimate.congested_at`):
    # loss that only ended a REMB's distrust may be the link's own
    assert (est.estimate(6.0).congested_at == 6.0) is (rtt > 0.1 and not probing)


def test_after_an_overflow_the_bound_creeps_only_to_what_the_link_carried_cleanly() -> None:
    """A bound that crept by 8% a second past the link (a top layer whose ceiling follows it)
    falls, on an overflow (12% lost, the queue held over two RTT samples), to 90% of what got
    cleanly before it, and rises no higher for `congestion_memory_s` than 90% of what the link
    carries cleanly since: a half-second probe that passed (its queue absorbed it) lifts it to
    90% of its target, not to the target."""
    est = DownlinkEstimator(EstimatorPolicy(initial_bps=400_000))
    video = Receiver(1, 100)
    clean_climb(est, video, 1, 8)
    carried = est.estimate(8.0).delivered_bps  # what got through in the last clean second
    est.on_rtt(0.15, 8.5)  # the queue holds: two samples up
    congested(est, video, 9.0, carried * 1.3, lost=35)
    reach = carried * 0.9
    assert est.estimate(9.0).bps == pytest.approx(reach, rel=0.01)
    clean_climb(est, video, 10, 20)  # sent at the estimate, clean: it stays there
    assert est.estimate(20.0).bps == pytest.approx(reach, rel=0.01)
    est.probe_passed(carried * 1.2, 20.5)
    assert est.estimate(20.5).bps == pytest.approx(carried * 1.2 * 0.9, rel=0.01)
    clean_climb(est, video, 21, 38)
    assert est.estimate(38.0).bps < carried * 1.2
    clean_climb(est, video, 39, 44)  # 30 s on, the bound tests the link again
    assert est.estimate(44.0).bps > carried * 1.3


@pytest.mark.parametrize(
    ("held", "lost"),
    [
        # one RTT sample up is a burst (or a busy receiver), not the link's limit
        (False, 35),
        # a few percent of loss with the RTT up may be the receiver's own uplink queue
        (True, 10),
    ],
)
def test_a_congestion_short_of_an_overflow_leaves_the_bound_free(held: bool, lost: int) -> None:
    """The REMB's floor only: the bound rises as before."""
    est = DownlinkEstimator(EstimatorPolicy(initial_bps=400_000))
    video = Receiver(1, 100)
    clean_climb(est, video, 1, 8)
    if held:
        est.on_rtt(0.15, 8.5)
    congested(est, video, 9.0, est.estimate(8.0).delivered_bps * 1.3, lost=lost)
    before = est.estimate(9.0).bps
    clean_climb(est, video, 10, 16)  # its loss out of the window after two reports
    assert est.estimate(16.0).bps > before * 1.3


def test_a_second_congestion_without_a_clean_report_between_backs_off_further_if_it_grew(
) -> None:
    est = DownlinkEstimator(POLICY)
    video = Receiver(1, 100)
    for t in range(1, 8):
        est.on_remb(200_000, t - 0.5)  # a REMB that lags far behind
    clean_climb(est, video, 1, 5, 1_000_000)
    congested(est, video, 6.0, 1_300_000)
    assert est.estimate(6.0).bps == pytest.approx(850_000, rel=0.01)
    congested(est, video, 7.0, 900_000, lost=8)  # the same queue, draining: the same floor
    assert est.estimate(7.0).bps == pytest.approx(850_000, rel=0.01)
    congested(est, video, 8.0, 900_000, 0.25, lost=8)  # a queue that grew: 0.85 again
    assert est.estimate(8.0).bps == pytest.approx(722_500, rel=0.01)
