"""The data saver's pure ceiling (`media.adapt.data_budget`), tested with tables, and the
cost table the README quotes."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from media.adapt.data_budget import (
    AUDIO_BPS,
    AUDIO_ONLY_BPS,
    CAMERA_FULL_BPS,
    CAMERA_LAYER_BPS,
    HEARTBEAT_BPS,
    MAX_BUDGET_MB_H,
    MB,
    MIN_BUDGET_MB_H,
    MODE_COSTS,
    RED_EXTRA,
    SCREEN_FULL_BPS,
    BudgetVerdict,
    Ceiling,
    DataPolicy,
    class_cost_mb,
    downlink_ceiling,
    even_rate_bps,
    valid_budget,
    verdict,
)

ROOT = Path(__file__).resolve().parents[3]


def allowed(mb_h: float, elapsed_s: float) -> float:
    return mb_h * MB * elapsed_s / 3600


@pytest.mark.parametrize(
    ("mb_h", "sent", "elapsed_s", "audio_bps", "bps", "below_audio"),
    [
        # spend evenly: at the start, and right on schedule, the ceiling is the even rate
        (100, 0, 0.0, AUDIO_ONLY_BPS, 222_222.2, False),
        (100, allowed(100, 600), 600.0, AUDIO_ONLY_BPS, 222_222.2, False),
        (40, 0, 0.0, AUDIO_ONLY_BPS, 88_888.9, False),
        # under-spent by 1.5 MB: caught up over 5 minutes (+40 kbit/s)
        (100, allowed(100, 600) - 1.5 * MB, 600.0, AUDIO_ONLY_BPS, 262_222.2, False),
        # under-spent by a lot (nothing sent in 10 minutes): at most twice the even rate
        (100, 0, 600.0, AUDIO_ONLY_BPS, 444_444.4, False),
        # overspent by 3 MB: paid back over 5 minutes (-80 kbit/s)
        (100, allowed(100, 600) + 3 * MB, 600.0, AUDIO_ONLY_BPS, 142_222.2, False),
        # overspent by far more: never below audio (audio is never cut)
        (100, allowed(100, 600) + 50 * MB, 600.0, AUDIO_ONLY_BPS, AUDIO_ONLY_BPS, False),
        # a budget below audio's cost: audio only, at audio's cost, and the verdict says so
        (20, 0, 0.0, AUDIO_ONLY_BPS, AUDIO_ONLY_BPS, True),
        (40, 0, 0.0, AUDIO_BPS * (1 + RED_EXTRA) + HEARTBEAT_BPS, 92_320.0, True),
        (MIN_BUDGET_MB_H, 0, 3600.0, AUDIO_ONLY_BPS, AUDIO_ONLY_BPS, True),
        # nonsense inputs from a clock or a counter do not make nonsense ceilings
        (100, -5, -1.0, AUDIO_ONLY_BPS, 222_222.2, False),
        (100, 0, 0.0, 0.0, 222_222.2, False),
    ],
)
def test_the_ceiling_spends_evenly_catches_up_pays_back_and_never_cuts_audio(
    mb_h: float, sent: float, elapsed_s: float, audio_bps: float, bps: float, below_audio: bool
) -> None:
    ceiling = downlink_ceiling(mb_h, sent, elapsed_s, audio_bps)
    assert ceiling.bps == pytest.approx(bps, abs=0.1)
    assert ceiling.below_audio is below_audio
    assert ceiling.even_bps == pytest.approx(even_rate_bps(mb_h))


@pytest.mark.parametrize(
    ("ceiling_bps", "wanted_bps", "below_audio", "expected"),
    [
        (222_000, 400_000, False, BudgetVerdict.LIMITING),
        (222_000, 200_000, False, BudgetVerdict.UNDER),
        (222_000, 222_000, False, BudgetVerdict.UNDER),
        (64_000, 2_000_000, True, BudgetVerdict.BELOW_AUDIO),
        (64_000, 30_000, True, BudgetVerdict.BELOW_AUDIO),
    ],
)
def test_the_verdict_says_whether_the_budget_holds_the_picture_down(
    ceiling_bps: float, wanted_bps: float, below_audio: bool, expected: BudgetVerdict
) -> None:
    ceiling = Ceiling(ceiling_bps, ceiling_bps, 0.0, below_audio)
    assert verdict(ceiling, wanted_bps) is expected


@pytest.mark.parametrize(
    ("mb_h", "burst_bytes", "greedy_from_s"),
    [
        (40, 0, 0),
        (100, 0, 0),
        (100, 250_000, 0),  # the first keyframe and half a second of full video
        (200, 0, 1800),  # half an hour of audio only, then everything the ceiling allows
        (50, 0, 2400),
    ],
)
def test_spending_at_the_ceiling_never_passes_the_budget_over_the_session(
    mb_h: float, burst_bytes: int, greedy_from_s: int
) -> None:
    """A subscriber that takes everything the ceiling allows, every second for an hour (after
    an idle stretch: catching up), is never ahead of `budget × elapsed hours` by more than its
    first burst, and ends the hour within the budget."""
    sent = float(burst_bytes)
    worst_ahead = 0.0
    for second in range(3600):
        ceiling = downlink_ceiling(mb_h, sent, float(second), audio_bps=0.0)
        rate = ceiling.bps if second >= greedy_from_s else 0.0
        sent += rate / 8
        worst_ahead = max(worst_ahead, sent - allowed(mb_h, second + 1))
    assert worst_ahead <= burst_bytes + even_rate_bps(mb_h) / 8 * DataPolicy().catch_up_max
    assert sent <= mb_h * MB + 100, "within bytes of the budget (the burst paid back)"
    if greedy_from_s == 0:
        assert sent >= mb_h * MB * 0.99, "spent evenly, the budget is used"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (MIN_BUDGET_MB_H, 5.0),
        (MAX_BUDGET_MB_H, 2000.0),
        (100, 100.0),
        (62.5, 62.5),
        (4.99, ValueError),
        (0, ValueError),
        (-100, ValueError),
        (2000.01, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        (True, ValueError),
        ("100", ValueError),
    ],
)
def test_a_budget_is_validated(value: object, expected: float | type | None) -> None:
    if expected is ValueError:
        with pytest.raises(ValueError, match="MB per hour"):
            valid_budget(value)  # type: ignore[arg-type]
    else:
        assert valid_budget(value) == expected  # type: ignore[arg-type]


def test_the_limits_are_the_same_in_the_protocol_and_the_directory() -> None:
    """Signaling and the broker may not import the relay: they repeat the limits in their
    message types; these must agree."""
    for path in ("signaling/messages.py", "broker/models.py"):
        text = (ROOT / path).read_text()
        assert f"ge={MIN_BUDGET_MB_H}, le={MAX_BUDGET_MB_H}" in text, path


def test_the_costs_use_the_pages_encodings() -> None:
    """The camera and screen rates of the cost table are what the page publishes in full."""
    codecs = (ROOT / "web/js/codecs.js").read_text()
    full = codecs[codecs.index("full: {") : codecs.index("low: {")]
    camera = re.search(r"camera: \{[^}]*maxBitrate: ([\d_]+)", full)
    screen = re.search(r"screen: \{[^}]*maxBitrate: ([\d_]+)", full)
    assert camera is not None and int(camera.group(1).replace("_", "")) == CAMERA_FULL_BPS
    assert screen is not None and int(screen.group(1).replace("_", "")) == SCREEN_FULL_BPS
    layers = codecs[codecs.index("CAMERA_LAYERS = [") :]
    layers = layers[: layers.index("];")]
    rates = [int(r.replace("_", "")) for r in re.findall(r"maxBitrate: ([\d_]+)", layers)]
    assert tuple(rates) == CAMERA_LAYER_BPS


def test_the_readme_quotes_the_computed_cost_of_a_45_minute_class() -> None:
    readme = (ROOT / "README.md").read_text()
    for mode, bps in MODE_COSTS.items():
        row = f"| {mode} | {bps / 1000:.0f} | {class_cost_mb(bps, 60):.0f} | "
        row += f"{class_cost_mb(bps):.0f} |"
        assert row in readme, f"README row for {mode!r}: {row}"


@pytest.mark.parametrize(
    ("bps", "minutes", "mb"),
    [(88_888.9, 60, 40.0), (1_000_000, 45, 337.5), (0, 45, 0.0)],
)
def test_what_a_class_costs(bps: float, minutes: float, mb: float) -> None:
    assert class_cost_mb(bps, minutes) == pytest.approx(mb, abs=0.01)
