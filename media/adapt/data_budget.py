"""Data saver: the downlink ceiling that keeps one subscriber within a data budget (pure).

A participant on prepaid mobile data (or the operator, for a site) sets a budget in MB per
hour (1 MB = 1,000,000 bytes, a little less than what a carrier counting 1,048,576 bytes calls
one: the meter errs on the side of the subscriber). `downlink_ceiling` turns the budget, the
bytes the relay has sent this subscriber since it joined and the time since then into the
most the adaptation may give its downlink now (`media.adapt.data_saver` applies it):

- spend evenly: the ceiling is the budget's even rate, `budget × 8 / 3600` bit/s;
- catch up: what was not spent earlier (the link was weak, the video paused) may be spent
  later, spread over `catch_up_s` and never faster than `catch_up_max` times the even rate;
  what was overspent (the first keyframe before the first decision, retransmissions) is paid
  back the same way. Spending at the ceiling, the total never passes `budget × hours`;
- audio is never cut: the ceiling never goes below what audio costs (`audio_bps`: the
  subscriber's audio as allocated, RED included, plus the heartbeat of paused video); when
  the budget's even rate is below that, the verdict says so (`BudgetVerdict.BELOW_AUDIO`):
  audio only, and the budget will be exceeded by audio alone.

`class_cost_mb` and `MODE_COSTS` give what a class costs at each mode (the README's table).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from media.adapt.transcode import LOW_BITRATE
from media.forward.forwarder import PACKET_OVERHEAD

MB = 1_000_000
"""Bytes in a megabyte, as budgets and the page count them."""
MIN_BUDGET_MB_H = 5
"""The smallest budget accepted (MB per hour): below it not even audio fits, by far."""
MAX_BUDGET_MB_H = 2000
"""The largest budget accepted (MB per hour): above what full video costs, i.e. no saving."""
PRESETS_MB_H = (50, 100, 200)
"""What the page offers: audio only, low video, reduced frame rate (see `MODE_COSTS`)."""

OPUS_BPS = 32_000
"""Opus payload of one microphone (libwebrtc's default for voice, 50 packets a second)."""
AUDIO_PACKETS_PER_S = 50
AUDIO_BPS = OPUS_BPS + AUDIO_PACKETS_PER_S * PACKET_OVERHEAD * 8
"""One microphone on the wire, headers included (what `InboundTrack.layer_rates` measures)."""
RED_EXTRA = 0.5
"""RED's extra cost as a share of the audio rate (`BudgetPolicy.red_extra`)."""
HEARTBEAT_BPS = 4 * (200 + PACKET_OVERHEAD) * 8
"""A paused video stream's padding heartbeat: 4 packets a second of 200 bytes
(`adaptation.HEARTBEAT_PACKETS` every `TICK_S`, `HEARTBEAT_BYTES`), with headers."""
AUDIO_ONLY_BPS = AUDIO_BPS + HEARTBEAT_BPS
"""The audio-only mode of one teacher (audio and one paused camera's heartbeat), no RED."""

VIDEO_PAYLOAD_BYTES = 1100
"""Typical payload of a video packet (the forwarded header costs `PACKET_OVERHEAD` more)."""
CAMERA_LAYER_BPS = (300_000, 500_000, 1_700_000)
"""The ceilings of the page's simulcast camera layers in full mode, 180p, 360p and 720p
(web/js/codecs.js `CAMERA_LAYERS`); a classroom receives one of them. Below a higher layer a
browser gives 180p only its target, `LOW_LAYER_TARGET_BPS`; alone, when every classroom can
take it, up to 300k (`media.adapt.dynacast.lowest_ceiling`)."""
LOW_LAYER_TARGET_BPS = 150_000
"""What a browser gives the 180p layer below a higher one (libwebrtc's target for 320x180),
and about what the relay holds it at for a classroom on a small data budget."""
CAMERA_FULL_BPS = CAMERA_LAYER_BPS[-1]
"""The page's camera encoding in full mode (web/js/codecs.js `MODE_PROFILES.full`): its top
layer."""
SCREEN_FULL_BPS = 1_200_000
"""The page's screen share encoding in full mode: a cap (slides that do not move cost less)."""
L1T3_SHARES = (0.4, 0.2, 0.4)
"""libwebrtc's split of a VP8 L1T3 stream between its temporal layers (TID 0, 1, 2):
`reduced_fps` at 15 fps keeps the first two, at 7.5 fps the first."""


class BudgetVerdict(enum.StrEnum):
    """What the budget leaves the subscriber (protocol field `verdict` of a `data` frame)."""

    UNDER = "under"
    """The ceiling covers every track at its best: the link, not the budget, decides."""
    LIMITING = "limiting"
    """The ceiling is below what the tracks cost at their best: the budget holds the picture
    down (whatever the link; a link estimate held low by sending little says nothing)."""
    BELOW_AUDIO = "below_audio"
    """The budget's even rate does not cover audio: audio only, and audio alone exceeds it."""


@dataclass(frozen=True, slots=True)
class DataPolicy:
    """Constants of the ceiling; the defaults are what the relay uses."""

    catch_up_s: float = 300.0
    """An under- or overspend is evened out over this long (five minutes)."""
    catch_up_max: float = 2.0
    """The ceiling never exceeds the even rate times this (catching up is gradual)."""


@dataclass(frozen=True, slots=True)
class Ceiling:
    """The most a subscriber's downlink may use now, and why."""

    bps: float
    """The ceiling, bits per second (never below the audio floor)."""
    even_bps: float
    """The budget's even rate."""
    allowed_bytes: float
    """What the budget allowed by now (`budget × elapsed hours`)."""
    below_audio: bool
    """The even rate is below what audio costs: audio only, over budget."""


def even_rate_bps(budget_mb_h: float) -> float:
    """The bit rate that spends `budget_mb_h` in exactly one hour."""
    return budget_mb_h * MB * 8 / 3600


def downlink_ceiling(
    budget_mb_h: float,
    sent_bytes: float,
    elapsed_s: float,
    audio_bps: float = AUDIO_ONLY_BPS,
    policy: DataPolicy = DataPolicy(),
) -> Ceiling:
    """The ceiling now for a budget of `budget_mb_h`, `sent_bytes` sent in `elapsed_s` since
    the subscriber joined, and audio costing `audio_bps` (see the module docstring)."""
    even = even_rate_bps(budget_mb_h)
    elapsed = max(elapsed_s, 0.0)
    allowed = even * elapsed / 8
    # under-spent: allowed > sent, the ceiling rises; overspent: it falls, to pay it back
    catch_up = (allowed - max(sent_bytes, 0.0)) * 8 / policy.catch_up_s
    ceiling = min(even + catch_up, even * policy.catch_up_max)
    floor = max(audio_bps, 0.0)
    return Ceiling(
        bps=max(ceiling, floor),
        even_bps=even,
        allowed_bytes=allowed,
        below_audio=even < floor,
    )


def verdict(ceiling: Ceiling, wanted_bps: float) -> BudgetVerdict:
    """Whether the budget holds the subscriber down (`wanted_bps`: every track it receives at
    its best rung, audio included)."""
    if ceiling.below_audio:
        return BudgetVerdict.BELOW_AUDIO
    return BudgetVerdict.LIMITING if ceiling.bps < wanted_bps else BudgetVerdict.UNDER


def valid_budget(value: float | None) -> float | None:
    """`value` if it is an acceptable budget (None: none), else ValueError."""
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError("a data budget is a number of MB per hour")
    if not MIN_BUDGET_MB_H <= value <= MAX_BUDGET_MB_H:
        raise ValueError(
            f"a data budget is {MIN_BUDGET_MB_H}..{MAX_BUDGET_MB_H} MB per hour, not {value}"
        )
    return float(value)


# --- what a class costs at each mode (the README's table) -------------------------------------


def video_wire_bps(payload_bps: float) -> float:
    """A video stream's rate on the wire: its payload and each packet's forwarded header."""
    return payload_bps * (1 + PACKET_OVERHEAD / VIDEO_PAYLOAD_BYTES)


MODE_COSTS: dict[str, float] = {
    "full (720p layer)": AUDIO_BPS + video_wire_bps(CAMERA_LAYER_BPS[2]),
    "reduced_fps (360p layer)": AUDIO_BPS + video_wire_bps(CAMERA_LAYER_BPS[1]),
    "low (180p layer)": AUDIO_BPS + video_wire_bps(LOW_LAYER_TARGET_BPS),
    "low (180p layer alone, every classroom on it)": (
        AUDIO_BPS + video_wire_bps(CAMERA_LAYER_BPS[0])
    ),
    "low (transcoded, a one-layer camera)": AUDIO_BPS + video_wire_bps(LOW_BITRATE),
    "audio_only": AUDIO_ONLY_BPS,
    "audio_only, RED on (lossy link)": AUDIO_BPS * (1 + RED_EXTRA) + HEARTBEAT_BPS,
    "screen share full, camera paused": (
        AUDIO_BPS + video_wire_bps(SCREEN_FULL_BPS) + HEARTBEAT_BPS
    ),
    "screen share at 2.5 fps, camera paused": (
        AUDIO_BPS + video_wire_bps(SCREEN_FULL_BPS * L1T3_SHARES[0]) + HEARTBEAT_BPS
    ),
}
"""What one classroom receives of the teacher at each mode, bits per second on the wire."""


def class_cost_mb(bps: float, minutes: float = 45.0) -> float:
    """MB that `bps` costs over a class of `minutes`."""
    return bps * minutes * 60 / 8 / MB
