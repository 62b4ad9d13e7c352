"""Which packets each transport-cc feedback reports: arrival tables in, feedback out."""

from __future__ import annotations

import asyncio

import pytest

from media.peers.twcc_feedback import FeedbackWindow, TwccFeedback
from media.rtp.twcc import (
    LARGE_DELTA,
    NOT_RECEIVED,
    SMALL_DELTA,
    TransportFeedback,
    decode_feedback,
    encode_feedback,
)

R, L, N = SMALL_DELTA, LARGE_DELTA, NOT_RECEIVED
MS = 1000
Arrivals = list[tuple[int, int]]
"""(transport-wide sequence number, arrival in ms)."""
Report = tuple[int, tuple[int, ...]]
"""(base sequence number, statuses) of one feedback packet."""


def reports(rounds: list[Arrivals], *, max_span: int = 0x4000) -> list[list[Report]]:
    """Each round's arrivals recorded, then collected: what each collect reports."""
    window = FeedbackWindow(lambda: 0, max_span=max_span)
    out: list[list[Report]] = []
    for arrivals in rounds:
        for seq, ms in arrivals:
            window.record_at(seq, (1_000_000 + ms * MS) * 1000)
        out.append([(f.base_seq, f.statuses) for f in window.collect(1)])
    return out


@pytest.mark.parametrize(
    ("rounds", "expected"),
    [
        # in order, two rounds: each reports what arrived since the last
        ([[(1, 0), (2, 1)], [(3, 2), (4, 3)]], [[(1, (R, R))], [(3, (R, R))]]),
        # nothing new: no feedback
        ([[(1, 0)], []], [[(1, (R,))], []]),
        # loss: reported as not received
        ([[(1, 0), (3, 2)], [(6, 5)]], [[(1, (R, N, R))], [(4, (N, N, R))]]),
        # reordering inside a round: one feedback in sequence order, negative delta large
        ([[(1, 0), (3, 1), (2, 2)]], [[(1, (R, R, L))]]),
        # a packet reported lost arrives late: the range is reported again from it
        ([[(1, 0), (3, 1)], [(2, 3), (4, 4)]], [[(1, (R, N, R))], [(2, (R, L, R))]]),
        # duplicates are reported once
        ([[(1, 0), (1, 1), (2, 2)]], [[(1, (R, R))]]),
        # wrap-around of the 16-bit number
        ([[(65534, 0), (65535, 1)], [(0, 2), (2, 3)]], [[(65534, (R, R))], [(0, (R, N, R))]]),
        ([[(65535, 0), (1, 1), (0, 2)]], [[(65535, (R, R, L))]]),
        # a long gap (more than max_span numbers): reporting restarts near the highest
        ([[(1, 0)], [(30, 1), (31, 2)]], [[(1, (R,))], [(30, (R, R))]]),
    ],
)
def test_feedback_window(rounds: list[Arrivals], expected: list[list[Report]]) -> None:
    max_span = 16 if any(seq >= 30 for r in rounds for seq, _ in r) else 0x4000
    assert reports(rounds, max_span=max_span) == expected


def test_arrival_times_survive_the_wire() -> None:
    window = FeedbackWindow(lambda: 500_000_000)
    for seq, us in [(10, 600_000), (11, 601_250), (13, 700_000), (12, 650_000)]:
        window.record_at(seq, us * 1000)
    (feedback,) = window.collect(77)
    decoded = decode_feedback(encode_feedback(feedback))
    assert decoded is not None
    assert decoded.sender_ssrc == 77
    assert decoded.base_seq == 10
    assert decoded.arrivals_us() == [100_000, 101_250, 150_000, 200_000]


def test_feedback_counts_and_long_runs_split() -> None:
    window = FeedbackWindow(lambda: 0)
    for seq in range(600):
        window.record_at(seq, seq * 500_000)
    first = window.collect(1)
    window.record_at(600, 400_000_000)
    second = window.collect(1)
    assert [len(f.statuses) for f in first] == [250, 250, 100]
    assert [f.feedback_count for f in first + second] == [0, 1, 2, 3]
    assert window.sent == 4


def test_record_stamps_with_the_clock() -> None:
    now = [2_000_000_000]
    window = FeedbackWindow(lambda: now[0])
    window.record(5, 1234)
    now[0] += 3_000_000
    window.record(6, 1234)
    (feedback,) = window.collect(1)
    assert feedback.media_ssrc == 1234
    assert decode_feedback(encode_feedback(feedback)) == feedback
    assert feedback.deltas[1] == 12  # 3 ms in 250 µs ticks


async def test_timer_sends_while_started_only() -> None:
    sent: list[TransportFeedback] = []

    def send(collect: object) -> bool:
        assert callable(collect)
        sent.extend(collect(9))
        return True

    twcc = TwccFeedback(send, interval_s=0.01)
    twcc.record(1, 5)
    twcc.start()
    for _ in range(200):  # bounded: the timer fires within a few loop turns of 10 ms
        if sent:
            break
        await asyncio.sleep(0.01)
    assert [(f.base_seq, f.statuses) for f in sent] == [(1, (R,))]
    twcc.stop()
    twcc.record(2, 5)
    await asyncio.sleep(0.05)
    assert len(sent) == 1
    assert twcc.sent == 1


async def test_no_rtcp_path_drops_what_arrived() -> None:
    calls = 0

    def send(collect: object) -> bool:
        nonlocal calls
        calls += 1
        return False

    twcc = TwccFeedback(send, interval_s=0.01)
    twcc.record(1, 5)
    twcc.start()
    for _ in range(200):
        if calls:
            break
        await asyncio.sleep(0.01)
    twcc.stop()
    assert calls >= 1
    assert twcc.window.collect(1) == []
