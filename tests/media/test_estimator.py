"""DownlinkEstimator turns REMB, receiver reports and sent bytes into one link estimate: tables
for each input, and sequences over time for overflow, recovery and outages."""

from __future__ import annotations

import pytest
from aiortc.rtp import pack_remb_fci

from media.estimator import (
    DownlinkEstimator,
    EstimateBound,
    EstimatorPolicy,
    SentRate,
)

POLICY = EstimatorPolicy()


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
    est = DownlinkEstimator()
    est.on_remb(remb_bps, remb_at)
    e = est.estimate(now)
    assert (e.bps, e.bound) == (expected_bps, bound)


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
    est = DownlinkEstimator()
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
    est = DownlinkEstimator()
    est.on_sender_report(sr_ntp, sr_at)
    est.on_receiver_report(0, 0, lsr, dlsr, rr_at)
    assert est.estimate(rr_at).rtt_s == pytest.approx(rtt_s, abs=1e-4)


def test_rtt_is_smoothed_and_only_recent_sender_reports_are_kept() -> None:
    est = DownlinkEstimator()
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
    est = DownlinkEstimator()
    est.on_receiver_report(0, jitter, 0, 0, 1.0, clock_rate=clock_rate)
    assert est.estimate(1.0).jitter_s == pytest.approx(jitter_s)


def test_loss_is_an_average_weighted_to_the_newest_report() -> None:
    est = DownlinkEstimator()
    losses = []
    for i, fraction in enumerate([0.0, 0.2, 0.2, 0.0, 0.0]):
        est.on_receiver_report(lost(fraction), 0, 0, 0, float(i))
        losses.append(est.estimate(float(i)).loss)
    assert losses == pytest.approx([0.0, 0.1, 0.15, 0.075, 0.0375], abs=0.002)


@pytest.mark.parametrize(
    ("sent_bps", "loss", "expected_bps"),
    [
        (1_000_000, 0.85, 150_000),  # overflow: down to what got through
        (1_000_000, 0.30, 700_000),
        (1_000_000, 0.12, 940_000),  # GCC: sent x (1 - loss / 2)
        (1_000_000, 0.05, 1_000_000),  # 2..10%: hold
        (200_000, 0.12, 188_000),
    ],
)
def test_one_lossy_report_lowers_the_bound_as_gcc_does(
    sent_bps: float, loss: float, expected_bps: float
) -> None:
    est = DownlinkEstimator()
    send(est, sent_bps, 0.0, 2.0)
    est.on_receiver_report(lost(loss), 0, 0, 0, 2.0)
    e = est.estimate(2.0)
    assert e.bps == pytest.approx(expected_bps, rel=0.03)
    assert e.bound is EstimateBound.LOSS


def test_decreases_are_spaced_by_the_interval_plus_rtt() -> None:
    est = DownlinkEstimator()
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
    # Sending at the bound: +8% a second, until the bound is beyond 8/7 of what we send.
    bounds = []
    for t in range(6, 11):
        step(est, 500_000, t - 1, t, 0.0)
        bounds.append(est.estimate(float(t)).bps)
    assert bounds == pytest.approx([540_000, 583_200, 583_200, 583_200, 583_200], rel=0.01)


def test_what_got_through_without_loss_lifts_the_bound_at_once() -> None:
    est = DownlinkEstimator()
    send(est, 1_000_000, 0.0, 2.0)
    est.on_receiver_report(lost(0.85), 0, 0, 0, 2.0)
    assert est.estimate(2.0).bps == pytest.approx(150_000, rel=0.03)
    # A probe: 450k sent for a second and all of it arrived.
    send(est, 450_000, 2.0, 3.0)
    est.on_receiver_report(0, 0, 0, 0, 3.0)
    assert est.estimate(3.0).bps >= 440_000


def test_remb_below_the_loss_bound_wins_and_loss_cuts_below_a_lagging_remb() -> None:
    est = DownlinkEstimator()
    send(est, 1_000_000, 0.0, 2.0)
    est.on_remb(600_000, 1.5)
    est.on_receiver_report(0, 0, 0, 0, 1.5)
    assert (est.estimate(1.5).bps, est.estimate(1.5).bound) == (600_000, EstimateBound.REMB)
    est.on_remb(2_000_000, 1.9)
    est.on_receiver_report(lost(0.8), 0, 0, 0, 2.0)
    e = est.estimate(2.0)
    assert e.bound is EstimateBound.LOSS and e.bps == pytest.approx(200_000, rel=0.05)


def test_report_after_an_outage_does_not_count_as_congestion() -> None:
    est = DownlinkEstimator()
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
    # The next one counts again.
    step(est, 1_000_000, 7.5, 8.5, 0.95)
    assert est.estimate(8.5).bps < before.bps / 2


def test_estimate_follows_a_flap_down_at_once_and_back_up_through_probes() -> None:
    """1 Mbit/s offered; the link falls to 150k for 20 s, then returns. The relay offers what
    the estimate allows, plus a probe a rung up after the link returns."""
    est = DownlinkEstimator()
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
    assert estimates[11] <= 200_000, "the first report after the drop cuts the estimate"
    assert all(e <= 200_000 for t, e in estimates.items() if 11 <= t < 30)
    assert all(e >= 100_000 for t, e in estimates.items() if 11 <= t < 30)
    assert estimates[33] >= 440_000 and estimates[36] >= 1_000_000
