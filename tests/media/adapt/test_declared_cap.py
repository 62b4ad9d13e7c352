"""A bandwidth the subscriber declared (`b=AS`/`b=TIAS`) is a policy ceiling: the estimate is
capped there and carries it as `ceiling_bps`, and no rung probe starts while the estimate is
the ceiling (nothing above it to find). The capped classroom of the two-classroom browser test
probed the 360p layer (~300k) into its last 10% of a 350k declaration, lost a third of it and
paused."""

from __future__ import annotations

from dataclasses import replace

import pytest

from media.adapt.budget import IncomingTrack, Priority, allocate
from media.adapt.estimator import EstimateBound, LinkEstimate
from media.adapt.rung import RungCosts

SIMULCAST = RungCosts((290_000.0,), low_bps=160_000.0)
"""180p at 160k and 360p at 290k (what Chromium sent at load)."""
MIC = IncomingTrack("teacher-mic", Priority.LEAD_AUDIO, audio_bps=48_000)
CAM = IncomingTrack("teacher-cam", Priority.SPEAKER_VIDEO, costs=SIMULCAST)


def link(bps: float, ceiling: float | None) -> LinkEstimate:
    return replace(LinkEstimate(bps, 0.0, 0.01, 0.0, EstimateBound.REMB, 200_000.0, bps),
                   ceiling_bps=ceiling)


def probes(bps: float, ceiling: float | None, seconds: float = 20.0) -> int:
    previous = allocate(link(bps, ceiling), [MIC, CAM], None, 0.0)
    started = 0
    for tick in range(1, int(seconds * 2) + 1):
        previous = allocate(link(bps, ceiling), [MIC, CAM], previous, tick * 0.5)
        started += sum(
            1 for t in previous.tracks
            if t.decision is not None and t.decision.switched and t.decision.reason == "probe"
        )
    return started


@pytest.mark.parametrize(
    ("bps", "ceiling", "probed"),
    [
        (350_000.0, None, True),  # the link's own estimate: the probe may find more
        (350_000.0, 350_000.0, False),  # the estimate is the declared ceiling
        (250_000.0, 350_000.0, False),  # below it: 360p does not fit under the ceiling's share
        (350_000.0, 1_000_000.0, True),  # a ceiling far above: the link decides
    ],
)
def test_no_rung_probe_while_the_estimate_is_a_policy_ceiling(
    bps: float, ceiling: float | None, probed: bool
) -> None:
    assert (probes(bps, ceiling) > 0) is probed


def test_the_declared_bandwidth_caps_the_estimate_as_a_ceiling() -> None:
    from media.adapt.adaptation import DownlinkAdaptation

    adaptation = DownlinkAdaptation("a", lambda: [], lambda event: None)
    assert adaptation._estimate(0.0).ceiling_bps is None
    adaptation.ceiling_bps = 350_000.0
    capped = adaptation._estimate(0.0)
    assert capped.bps == 350_000.0 and capped.ceiling_bps == 350_000.0  # initial 400k guess
    adaptation.ceiling_bps = 1_000_000.0
    above = adaptation._estimate(0.0)
    assert above.bps == 400_000.0 and above.ceiling_bps == 1_000_000.0
