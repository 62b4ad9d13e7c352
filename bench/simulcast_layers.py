"""`tongxin bench relay --publisher simulcast`: which layer each subscriber prefers, how it says
so, and the per-layer figures. Pure functions; `bench.relay` runs the measurement.

The relay forwards one layer per subscriber, chosen by its adaptation from the subscriber's
link; on loopback nothing limits a link, so each subscriber declares the bandwidth of the
layer it should get in its answer (a session-level `b=AS`, which the relay takes as the
ceiling of that subscriber's allocation, `media.peers.sdp_bandwidth`): q (180p, ~150 kbit/s)
under 300 kbit/s, h (360p, ~500 kbit/s) under 1000 kbit/s, f (720p) unbounded. Without
adaptation the relay forwards the published (top) layer to everyone, whatever they declare.

Which layer a subscriber is on is read on its side: the height of the last VP8 keyframe it
received (180, 360, 720). The relay's CPU is one process's; a layer's share of it is
attributed by the packets its subscribers were forwarded (video frames times that layer's
packets per frame, plus audio packets): forwarding costs per packet (SRTP and `sendto` lead
the relay's profile), not per byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.simulcast_publisher import LAYER_HEIGHTS, LAYERS

RIDS = tuple(spec.rid for spec in LAYERS)
LAYER_CAPS_KBPS: dict[str, int | None] = {"q": 300, "h": 1000, "f": None}
"""What a subscriber preferring each layer declares (`b=AS`, kbit/s; None: nothing)."""


def layer_mix(text: str) -> list[str]:
    """`--layer-mix` ("q,h,f", "q,q,f", ...) as a list of RIDs; ValueError if one is unknown."""
    mix = [rid.strip() for rid in text.split(",") if rid.strip()]
    unknown = [rid for rid in mix if rid not in RIDS]
    if not mix or unknown:
        raise ValueError(f"--layer-mix: RIDs among {','.join(RIDS)}, got {text!r}")
    return mix


def preferred_layers(ids: Sequence[str], mix: Sequence[str]) -> dict[str, str]:
    """Subscriber -> the layer it prefers: the mix's RIDs in turn."""
    return {pid: mix[i % len(mix)] for i, pid in enumerate(ids)}


def capped_answer(sdp: str, kbps: int) -> str:
    """`sdp` with a session-level `b=AS:<kbps>` (before the `t=` line, as RFC 4566 orders
    the session's lines), replacing one already there."""
    eol = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(eol)
    first_media = next((i for i, line in enumerate(lines) if line.startswith("m=")), len(lines))
    session = [line for line in lines[:first_media] if not line.startswith("b=AS:")]
    at = next((i for i, line in enumerate(session) if line.startswith("t=")), len(session))
    session.insert(at, f"b=AS:{kbps}")
    return eol.join(session + lines[first_media:])


def layer_of(height: int | None) -> str:
    """The RID of a keyframe height ("none" before any keyframe, "other" if no layer's)."""
    if height is None:
        return "none"
    return LAYER_HEIGHTS.get(height, "other")


def layer_summary(
    ids: Sequence[str],
    preferred: dict[str, str],
    heights: Sequence[int | None],
    video_frames: Sequence[int],
    audio_frames: Sequence[int],
    sent_video: int,
    packets_per_frame: dict[str, float],
    cpu_ms: float,
    window_s: float,
) -> dict[str, dict[str, Any]]:
    """Per layer received (by RID, lowest first; "none"/"other" if any): its subscribers, how
    many of them preferred it, their video frames delivered (% of the frames sent), and the
    relay CPU attributed to it by packets, in ms per subscriber-second."""
    groups: dict[str, list[int]] = {}
    for i, height in enumerate(heights):
        groups.setdefault(layer_of(height), []).append(i)
    packets = [
        video_frames[i] * packets_per_frame.get(layer_of(heights[i]), 1.0) + audio_frames[i]
        for i in range(len(ids))
    ]
    total_packets = sum(packets)
    order = [rid for rid in (*RIDS, "other", "none") if rid in groups]
    out: dict[str, dict[str, Any]] = {}
    for rid in order:
        members = groups[rid]
        share = sum(packets[i] for i in members) / total_packets if total_packets else 0.0
        got = sum(video_frames[i] for i in members)
        out[rid] = {
            "subscribers": len(members),
            "preferred_it": sum(1 for i in members if preferred.get(ids[i]) == rid),
            "video_delivered_pct": round(min(100.0, 100.0 * got / (sent_video * len(members))), 2)
            if sent_video
            else None,
            "packets_per_frame": round(packets_per_frame[rid], 2)
            if rid in packets_per_frame
            else None,
            "cpu_ms_per_subscriber_second_attributed": round(
                cpu_ms * share / (len(members) * window_s), 3
            )
            if window_s > 0
            else None,
        }
    return out
