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
        "latency_p95_ms", "rss_mb_per_subscriber",
    ):
        assert key in result, key
    assert result["subscribers"] == 2
    assert result["cpu_ms_per_subscriber_second"] > 0
    assert result["baseline_cpu_ms_per_subscriber_second"] > 0
    assert result["delivered_pct"] > 0
