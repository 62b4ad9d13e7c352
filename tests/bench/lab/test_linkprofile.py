"""The weak-link lab's link profiles and their schedules, as `state_at` gives them."""

from __future__ import annotations

import pytest

from bench.lab.linkprofile import (
    PROFILES,
    LinkState,
    custom_profile,
    drop_profile,
    flap_profile,
)


@pytest.mark.parametrize(
    ("name", "down", "up", "loss"),
    [
        ("good", 10_000, 10_000, 0.0),
        ("village-4g", 2_000, 1_000, 1.0),
        ("weak", 500, 256, 3.0),
        ("very-weak", 200, 128, 5.0),
        ("flap", 10_000, 10_000, 0.0),
        ("drop", 10_000, 10_000, 0.0),
    ],
)
def test_profiles_start_as_the_issue_describes(
    name: str, down: float, up: float, loss: float
) -> None:
    state = PROFILES[name].state
    assert (state.down_kbps, state.up_kbps) == (down, up)
    assert state.down_loss_pct == state.up_loss_pct == loss
    assert not state.cut


@pytest.mark.parametrize(
    ("elapsed", "down_kbps", "cut"),
    [(0.0, 10_000, False), (9.9, 10_000, False), (10.0, 150, False), (29.9, 150, False),
     (30.0, 10_000, False), (300.0, 10_000, False)],
)  # fmt: skip
def test_flap_is_good_then_150_kbit_for_20_s_then_good(
    elapsed: float, down_kbps: float, cut: bool
) -> None:
    state = PROFILES["flap"].state_at(elapsed)
    assert (state.down_kbps, state.cut) == (down_kbps, cut)
    assert PROFILES["flap"].settled_after_s == 30.0


@pytest.mark.parametrize(
    ("elapsed", "cut"),
    [(0.0, False), (9.99, False), (10.0, True), (14.99, True), (15.0, False), (60.0, False)],
)
def test_drop_cuts_the_link_for_5_s_then_brings_it_back(elapsed: float, cut: bool) -> None:
    assert PROFILES["drop"].state_at(elapsed).cut is cut


def test_schedules_can_be_shifted_and_stretched() -> None:
    assert flap_profile(after_s=2.0, low_kbps=100, low_for_s=3.0).state_at(4.9).down_kbps == 100
    assert flap_profile(after_s=2.0, low_kbps=100, low_for_s=3.0).state_at(5.0).down_kbps == 10_000
    assert drop_profile(after_s=1.0, cut_for_s=1.0).state_at(1.5).cut


def test_custom_profile_is_steady_with_the_same_loss_both_ways() -> None:
    profile = custom_profile(300, 100, 2.5, queue_ms=200)
    assert profile.schedule == ()
    assert profile.state_at(1e6) == LinkState(300, 100, 2.5, 2.5, queue_ms=200)
