"""The tc and nft settings the lab applies for a link state (pure: no root needed)."""

from __future__ import annotations

import pytest

from bench.lab.linkprofile import LinkState
from bench.lab.netlab import lab_available, nft_script, tbf_burst_bytes, tbf_qdisc


@pytest.mark.parametrize(
    ("state", "rules"),
    [
        (LinkState(), []),
        (
            LinkState(down_loss_pct=5.0),
            ['iifname "rs" oifname "rc" numgen random mod 1000 < 50 counter drop'],
        ),
        (
            LinkState(down_loss_pct=1.0, up_loss_pct=0.25),
            [
                'iifname "rs" oifname "rc" numgen random mod 1000 < 10 counter drop',
                'iifname "rc" oifname "rs" numgen random mod 1000 < 2 counter drop',
            ],
        ),
        (
            LinkState(down_loss_pct=3.0, cut=True),
            ['iifname "rs" oifname "rc" counter drop', 'iifname "rc" oifname "rs" counter drop'],
        ),
        (LinkState(up_loss_pct=100.0), ['iifname "rc" oifname "rs" counter drop']),
    ],
)
def test_nft_script_flushes_then_adds_one_drop_rule_per_impaired_direction(
    state: LinkState, rules: list[str]
) -> None:
    lines = nft_script(state).splitlines()
    assert lines[:3] == [
        "add table inet tongxin_lab",
        "add chain inet tongxin_lab forward "
        "{ type filter hook forward priority 0 ; policy accept ; }",
        "flush chain inet tongxin_lab forward",
    ]
    assert [line.removeprefix("add rule inet tongxin_lab forward ") for line in lines[3:]] == rules


@pytest.mark.parametrize(
    ("kbps", "burst"),
    [(128, 3028), (2_000, 3028), (10_000, 12_500), (100_000, 125_000)],
)
def test_tbf_burst_is_10_ms_of_traffic_but_at_least_two_frames(kbps: float, burst: int) -> None:
    assert tbf_burst_bytes(kbps) == burst


def test_tbf_qdisc_arguments() -> None:
    assert tbf_qdisc(256, 100) == [
        "tbf", "rate", "256kbit", "burst", "3028", "latency", "100ms",
    ]  # fmt: skip


def test_lab_available_gives_a_reason_either_way() -> None:
    ok, why = lab_available()
    assert isinstance(ok, bool) and why
