"""The broker benchmark runs small on both stores, reports its figures and never double-claims;
its command line cleans its Redis namespace up."""

from __future__ import annotations

import argparse

import pytest
import redis

from bench.broker import run_broker_bench
from bench.broker_cli import configure_parser, run
from broker.store import Store

REQUIRED = {
    "store",
    "tickets",
    "experts",
    "match_p50_ms",
    "match_p99_ms",
    "claims_per_s",
    "double_claims",
}


@pytest.mark.timeout(120)
async def test_small_bench_reports_figures_and_no_double_claims(store: Store) -> None:
    result = await run_broker_bench(store, tickets=300, experts=80, claimers=8, samples=20)
    assert REQUIRED <= set(result)
    assert (result["store"], result["tickets"], result["experts"]) == (store.name, 300, 80)
    assert result["double_claims"] == 0
    assert result["unclaimed_after_race"] == 0 and result["holders_agree"] is True
    assert result["raced_tickets"] > 0 and result["claimers"] >= 2
    assert 0 < result["match_p50_ms"] <= result["match_p99_ms"]


@pytest.mark.redis
@pytest.mark.timeout(120)
async def test_cli_run_on_redis_leaves_no_keys_behind(redis_url: str) -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(
        ["--redis", redis_url, "--tickets", "200", "--experts", "40", "--samples", "5"]
    )
    result = await run(args)
    assert result["store"] == "redis" and result["double_claims"] == 0
    client = redis.Redis.from_url(redis_url)
    try:
        assert list(client.scan_iter(match="bench:*")) == []
    finally:
        client.close()
