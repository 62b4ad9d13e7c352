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
