"""`tongxin bench recorder` at a tiny scale: it runs through the CLI and reports every track."""

from __future__ import annotations

import json

import pytest

from bench import cli
from bench.recorder import CASES


def test_the_recorder_bench_reports_cpu_for_each_track_kind(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["recorder", "--seconds", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["media_seconds"] == 1.0
    for key, *_ in CASES:
        assert result[f"{key}_cpu_ms_per_s"] > 0
        assert result[f"{key}_core_pct"] == pytest.approx(result[f"{key}_cpu_ms_per_s"] / 10,
                                                          abs=0.01)


def test_a_non_positive_duration_is_refused() -> None:
    with pytest.raises(SystemExit):
        cli.main(["recorder", "--seconds", "0"])
