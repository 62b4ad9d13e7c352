"""deploy/grafana: the dashboard parses, reads only metrics Tongxin exports, its PromQL is valid,
it shows what operators need, and Grafana's provisioning finds it and its datasource."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.metric_names import KNOWN_SERIES, metric_names
from tests.deploy.promtool import run_promtool

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "tongxin.json"
PROVISIONING = DEPLOY / "grafana" / "provisioning"

GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$instance": ".*"}
LABEL_VALUES = re.compile(r"^label_values\(\s*([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})?\s*,\s*\w+\s*\)$")


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def graph_panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def expressions() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel."""
    return [(p["title"], t["expr"]) for p in graph_panels() for t in p["targets"]]


def test_every_panel_has_a_query_and_a_unique_id() -> None:
    panels = dashboard()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in graph_panels():
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert all(t["expr"].strip() for t in panel["targets"])


@pytest.mark.parametrize(("title", "expr"), expressions(), ids=lambda v: str(v)[:40])
def test_panel_reads_only_exported_metrics(title: str, expr: str) -> None:
    unknown = metric_names(expr) - KNOWN_SERIES
    assert not unknown, f"panel {title!r} reads metrics no node exports: {sorted(unknown)}"


def test_template_variables_read_only_exported_metrics() -> None:
    for variable in dashboard()["templating"]["list"]:
        query = variable["query"]
        if isinstance(query, dict):
            query = query["query"]
        match = LABEL_VALUES.match(query)
        assert match, f"variable {variable['name']}: unexpected query {query!r}"
        assert match.group(1) in KNOWN_SERIES


def test_panel_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool parses every expression of a rule file: hand it the panels as recording rules
    rules = []
    for n, (_title, expr) in enumerate(expressions()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
        rules.append({"record": f"dashboard:panel_{n}", "expr": expr})
    rule_file = tmp_path / "dashboard_rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = run_promtool("check", "rules", rule_file)
    assert f"SUCCESS: {len(rules)} rules found" in out.stdout


def test_dashboard_shows_what_operators_watch() -> None:
    read = set().union(*(metric_names(expr) for _title, expr in expressions()))
    for needed in (
        "tongxin_sessions_live",
        "tongxin_participants",
        "tongxin_subscribers_by_rung",
        "tongxin_subscriber_loss_ratio_bucket",
        "tongxin_subscriber_rtt_seconds_bucket",
        "tongxin_consult_queue_length",
        "tongxin_process_cpu_seconds_total",
        "tongxin_process_resident_memory_bytes",
        "tongxin_http_requests_total",
        "tongxin_http_request_duration_seconds_bucket",
    ):
        assert needed in read, f"no panel shows {needed}"


def test_panels_use_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())
    uids = {d["uid"] for d in provisioned["datasources"]}
    for panel in graph_panels():
        assert panel["datasource"]["uid"] in uids
        assert all(t["datasource"]["uid"] in uids for t in panel["targets"])


def test_panels_fit_the_grid_without_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                 for y in range(pos["y"], pos["y"] + pos["h"])}  # fmt: skip
        assert not cells & taken, f"panel {panel['title']!r} overlaps another"
        taken |= cells


def test_provisioning_loads_the_dashboard_folder_compose_mounts() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "tongxin.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{path}:ro" in mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
