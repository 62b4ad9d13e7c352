"""deploy/prometheus: the config and alert rules pass promtool, and the rules' unit tests pass.

Also: every rule reads only metrics Tongxin exports, carries a severity and words for the person
it wakes, and has a unit test in alerts_test.yml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.metric_names import KNOWN_SERIES, metric_names
from tests.deploy.promtool import run_promtool

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"

pytestmark = pytest.mark.timeout(180)


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_accepts_the_rules() -> None:
    out = run_promtool("check", "rules", ALERTS)
    assert f"SUCCESS: {len(alert_rules())} rules found" in out.stdout


def test_promtool_accepts_the_config_and_finds_the_rules() -> None:
    out = run_promtool("check", "config", CONFIG)
    assert "1 rule files found" in out.stdout


def test_alert_rules_pass_their_unit_tests() -> None:
    out = run_promtool("test", "rules", ALERTS_TEST)
    assert "SUCCESS" in out.stdout


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_reads_only_exported_metrics(rule: dict[str, Any]) -> None:
    unknown = metric_names(rule["expr"]) - KNOWN_SERIES
    assert not unknown, f"{rule['alert']} reads metrics no node exports: {sorted(unknown)}"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_has_severity_summary_and_description(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in ("critical", "warning")
    assert rule["annotations"]["summary"].strip()
    assert len(rule["annotations"]["description"].split()) >= 8, "say what to check"


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    missing = {rule["alert"] for rule in alert_rules()} - fired
    assert not missing, f"alerts without a test that fires them: {sorted(missing)}"


def test_the_alerts_operators_rely_on_exist() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert {
        "TongxinNodeDown",
        "TongxinStoreDown",
        "TongxinMediaWorkerDown",
        "TongxinHigh5xxRatio",
        "TongxinHighLatencyP95",
        "TongxinManySubscribersAudioOnly",
        "TongxinHighSubscriberLoss",
        "TongxinConsultWaitingTooLong",
        "TongxinConsultQueueGrowing",
        "TongxinNodeCpuSaturated",
    } <= names


def test_prometheus_scrapes_both_compose_nodes() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "tongxin")
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {"tongxin-a:8080", "tongxin-b:8080"}
    assert config["rule_files"] == ["alerts.yml"]
