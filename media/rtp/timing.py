"""RTP time arithmetic for forwarded streams: timestamp continuity and abs-send-time."""

from __future__ import annotations

MASK32 = 0xFFFFFFFF
# Seconds between the NTP epoch (1900) and the Unix epoch (1970).
NTP_EPOCH_OFFSET = 2208988800


def continuation_offset(
    last_out_ts: int | None,
    last_out_at: float | None,
    now: float,
    clock_rate: int,
    first_in_ts: int,
) -> int:
    """Offset to add to a new source's timestamps so the outbound clock keeps running.

    The first packet of the new source lands where the outbound clock would be after the
    wall-clock time elapsed since the last packet sent (at least one tick later), so the
    subscriber's jitter buffer sees a plausible gap rather than a jump backwards.
    """
    if last_out_ts is None or last_out_at is None:
        return (-first_in_ts) & MASK32
    elapsed_ticks = max(1, round((now - last_out_at) * clock_rate))
    return (last_out_ts + elapsed_ticks - first_in_ts) & MASK32


def abs_send_time(unix_time: float) -> int:
    """The 24-bit abs-send-time value (6.18 fixed-point seconds, NTP based) for a send time."""
    return int((unix_time + NTP_EPOCH_OFFSET) * 262144) & 0xFFFFFF


def ntp_timestamp(unix_time: float) -> int:
    """The 64-bit NTP timestamp of a Unix time, as carried in RTCP sender reports."""
    seconds = unix_time + NTP_EPOCH_OFFSET
    return (int(seconds) << 32) | int((seconds % 1) * (1 << 32))
