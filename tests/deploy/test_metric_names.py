"""`metric_names` finds the series an expression reads, and nothing else."""

from __future__ import annotations

import pytest

from tests.deploy.metric_names import KNOWN_SERIES, metric_names


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("up == 0", {"up"}),
        ('sum by (instance, le) (rate(a_bucket{route!="/ws", x=~"$instance"}[5m]))', {"a_bucket"}),
        ("histogram_quantile(0.95, b_bucket[$__rate_interval]) > 0.5", {"b_bucket"}),
        ("max(q) - max(q offset 30m) >= 5", {"q"}),
        ("x > 0 and on () sum(increase(c_count[20m])) == 0", {"x", "c_count"}),
        ('absent(up{job="tongxin"} == 1)', {"up"}),
        ('label_values(g, instance)', {"g", "instance"}),
        ('sum(m{name="not_a_metric"}) / ignoring(kind) group_left n', {"m", "n"}),
    ],
)
def test_metric_names_reads_series_not_functions_labels_or_variables(
    expr: str, expected: set[str]
) -> None:
    assert metric_names(expr) == expected


def test_histograms_expose_bucket_count_and_sum_series() -> None:
    assert {"tongxin_consult_wait_seconds_bucket", "tongxin_consult_wait_seconds_count",
            "tongxin_consult_wait_seconds_sum"} <= KNOWN_SERIES  # fmt: skip
    assert "tongxin_consult_wait_seconds" not in KNOWN_SERIES


async def test_a_node_exports_every_series_deploy_may_read(aiohttp_client) -> None:
    """Scrape a real app: every `tongxin_*` name of KNOWN_SERIES is on /metrics (labelled
    series appear once a label is set, so only the HELP line is required)."""
    from broker.memory_store import MemoryStore
    from signaling.app import create_app
    from signaling.config import ServeConfig

    client = await aiohttp_client(create_app(ServeConfig(media_workers=0, demo=False),
                                             MemoryStore()))
    await client.get("/healthz")
    text = await (await client.get("/metrics")).text()
    helped = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")}
    exported = {n for n in KNOWN_SERIES if n.startswith("tongxin_")}
    for name in exported:
        family = name.removesuffix("_total")
        for suffix in ("_bucket", "_count", "_sum"):
            family = family.removesuffix(suffix) if name.endswith(suffix) else family
        assert family in helped or name in helped, f"{name} is not exported"
