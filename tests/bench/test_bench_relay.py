"""The relay benchmark runs end to end at a tiny scale and reports every promised figure."""

from __future__ import annotations

import argparse

import pytest

from bench import relay as bench_relay


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_the_benchmark_reports_its_figures() -> None:
    parser = argparse.ArgumentParser()
    bench_relay.configure_parser(parser)
    args = parser.parse_args(
        ["--subscribers", "2", "--duration", "2", "--warmup", "0.5", "--loadgens", "1",
         "--baseline-subscribers", "1", "--baseline-duration", "2"]
    )
    result = await bench_relay.run(args)
    for key in (
        "subscribers", "delivered_pct", "cpu_ms_per_subscriber_second", "subscribers_per_core",
        "baseline_cpu_ms_per_subscriber_second", "baseline_subscribers_per_core", "ratio",
        "latency_p95_ms", "rss_mb_per_subscriber", "adaptation", "video_delivered_pct_min",
        "video_delivered_pct_by_subscriber", "rungs_final", "stepped_down", "loadgen_stalls",
        "other_threads_cpu_ms_per_subscriber_second", "publisher",
    ):
        assert key in result, key
    assert result["subscribers"] == 2
    assert result["cpu_ms_per_subscriber_second"] > 0
    assert result["baseline_cpu_ms_per_subscriber_second"] > 0
    assert result["delivered_pct"] > 0


@pytest.mark.parametrize(
    ("mode", "rounds", "order"),
    [
        ("on", 1, [True]),
        ("off", 1, [False]),
        ("on", 2, [True, True]),
        ("both", 1, [True, False]),
        ("both", 2, [True, False, False, True]),  # ABBA: a machine that drifts weighs on both
        ("both", 3, [True, False, False, True, True, False]),
    ],
)
def test_adaptation_on_and_off_are_measured_interleaved(
    mode: str, rounds: int, order: list[bool]
) -> None:
    assert bench_relay.adaptation_order(mode, rounds) == order


def _run(adaptation: str, at: float, cpu: float, delivered: float) -> dict[str, object]:
    return {
        "adaptation": adaptation, "started_at": at, "cpu_ms_per_subscriber_second": cpu,
        "delivered_pct": delivered, "video_delivered_pct": delivered,
        "video_delivered_pct_min": delivered, "rungs_final": {"full": 10},
    }  # fmt: skip


def test_both_reports_each_sides_medians_every_run_and_the_cpu_ratio() -> None:
    on = [_run("on", 1, 4.4, 100.0), _run("on", 4, 4.0, 99.5), _run("on", 5, 9.0, 90.0)]
    off = [_run("off", 2, 4.0, 100.0), _run("off", 3, 3.8, 100.0), _run("off", 6, 4.1, 100.0)]
    out = bench_relay.compare_adaptation(on, off)
    assert out["adaptation_on"]["cpu_ms_per_subscriber_second"] == 4.4
    assert out["adaptation_on"]["delivered_pct"] == 99.5
    assert out["adaptation_off"]["cpu_ms_per_subscriber_second"] == 4.0
    assert out["on_off_cpu_ratio"] == pytest.approx(1.1)
    assert [r["adaptation"] for r in out["adaptation_runs"]] == [
        "on", "off", "off", "on", "on", "off"
    ]
    assert bench_relay.median_run(on)["started_at"] == 1


def test_a_stepped_down_subscriber_shows_in_the_rung_summary() -> None:
    def event(rung: str, reason: str, at: float) -> dict[str, object]:
        return {"rung": rung, "reason": reason, "at": at, "estimate_kbps": 400.0,
                "loss_pct": 0.0, "rtt_ms": 1.0, "paused": []}  # fmt: skip

    links = {
        "s0": [event("full", "start", 0.0)],
        "s1": [event("full", "start", 0.0), event("low", "shortfall", 12.0)],
    }
    out = bench_relay.rung_summary(links, ["s0", "s1", "s2"], 10.0, 20.0)
    assert out["rungs_final"] == {"full": 1, "low": 1, "none": 1}
    assert out["rung_switches"] == 1
    assert list(out["stepped_down"]) == ["s1"]
    assert out["stepped_down"]["s1"][-1].startswith("low/shortfall@+2.0")


def test_step_downs_count_why_subscribers_left_full() -> None:
    stepped = {
        "s1": ["full/start@-3.0(400k,0.0%,0ms)", "low/shortfall@+2.0(900k,0.0%,1ms)"],
        "s2": ["low/shortfall@+1.0(900k,0.0%,1ms)", "full/probe@+5.0(1500k,0.0%,1ms)"],
    }
    assert bench_relay.step_downs(stepped) == {"low/shortfall": 2, "full/probe": 1}
