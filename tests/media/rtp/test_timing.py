"""Forwarded timestamps keep running across source switches; abs-send-time wraps at 64 s."""

from __future__ import annotations

import pytest

from media.rtp.timing import abs_send_time, continuation_offset, ntp_timestamp


@pytest.mark.parametrize(
    ("last_ts", "last_at", "now", "rate", "first_in", "expected"),
    [
        # nothing sent yet: the offset cancels the source's origin
        (None, None, 10.0, 90000, 5000, (-5000) & 0xFFFFFFFF),
        # 100 ms after the last packet at 90 kHz: 9000 ticks later
        (1000, 10.0, 10.1, 90000, 123456, (1000 + 9000 - 123456) & 0xFFFFFFFF),
        # no time elapsed: at least one tick later, never the same timestamp
        (1000, 10.0, 10.0, 48000, 0, 1001),
        # wraps at 2^32
        (0xFFFFFFFF, 1.0, 1.02, 48000, 0, 959),
    ],
)
def test_continuation_offset(last_ts, last_at, now, rate, first_in, expected) -> None:
    offset = continuation_offset(last_ts, last_at, now, rate, first_in)
    assert offset == expected
    assert 0 <= offset <= 0xFFFFFFFF


def test_abs_send_time_counts_in_1_over_262144_seconds_and_wraps() -> None:
    t0 = abs_send_time(1000.0)
    assert (abs_send_time(1000.5) - t0) & 0xFFFFFF == 131072
    assert abs_send_time(1000.0 + 64.0) == t0


def test_ntp_timestamp_splits_seconds_and_fraction() -> None:
    ts = ntp_timestamp(0.5)
    assert ts >> 32 == 2208988800
    assert ts & 0xFFFFFFFF == 1 << 31
