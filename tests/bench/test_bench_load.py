"""`tongxin bench load` (bench_load.py, bench_load_figures.py, bench_load_crowd.py): its pure
parts by table, and one tiny run end to end (a real
redis-server, two `tongxin serve` processes, aiortc participants) whose JSON has the promised
figures and no errors. No timing thresholds: the figures are printed, not judged."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest

from bench.load import configure_parser, deal, wall_limit_s
from bench.load_crowd import CrowdJob, error_kind
from bench.load_figures import (
    Summary,
    cpu_per_participant,
    delivered_pct,
    percentile,
    role_of,
    wait_share,
)
from client.ws import SignalingError
from signaling import cli
from tests.helpers.redis_server import require_redis_server


@pytest.mark.parametrize(("values", "q", "expected"), [
    ([], 50, None),
    ([7.0], 95, 7.0),
    ([1.0, 2.0, 3.0], 50, 2.0),
    ([3.0, 1.0, 2.0, 4.0, 5.0], 50, 3.0),
    ([float(v) for v in range(1, 102)], 95, 96.0),
])
def test_percentile(values: list[float], q: int, expected: float | None) -> None:
    assert percentile(values, q) == expected


def job(label: str) -> CrowdJob:
    return CrowdJob(label=label, session="s", base_url="http://a", fallback_url="http://b",
                    token="t")


@pytest.mark.parametrize(("jobs", "generators", "expected"), [
    (["a", "b", "c"], 2, [["a", "c"], ["b"]]),
    (["a"], 3, [["a"]]),
    ([], 2, [[]]),
    (["a", "b", "c", "d"], 1, [["a", "b", "c", "d"]]),
])
def test_jobs_are_dealt_round_robin_to_the_load_generators(
        jobs: list[str], generators: int, expected: list[list[str]]) -> None:
    hands = deal([job(j) for j in jobs], generators)
    assert [[j.label for j in hand] for hand in hands] == expected


@pytest.mark.parametrize(("cpu_s", "participants", "window_s", "expected"), [
    (3.0, 10, 30.0, 10.0),
    (0.0, 4, 10.0, 0.0),
    (1.0, 0, 10.0, None),
    (1.0, 5, 0.0, None),
])
def test_cpu_per_participant_second(cpu_s: float, participants: int, window_s: float,
                                    expected: float | None) -> None:
    assert cpu_per_participant(cpu_s, participants, window_s) == expected


@pytest.mark.parametrize(("label", "role"), [
    ("class-0/teacher", "teacher"),
    ("class-3/classroom-2", "classroom"),
    ("consult-1/doctor", "doctor"),
])
def test_role_of_a_label(label: str, role: str) -> None:
    assert role_of(label) == role


@pytest.mark.parametrize(("before", "after", "share"), [
    ((1.0, 1.0), (2.0, 4.0), 0.75),
    ((0.0, 0.0), (1.0, 0.0), 0.0),
    ((1.0, 1.0), (1.0, 1.0), None),
])
def test_wait_share_is_runqueue_wait_over_wanted_cpu_time(
        before: tuple[float, float], after: tuple[float, float], share: float | None) -> None:
    assert wait_share(before, after) == share


@pytest.mark.parametrize(("got", "expected", "pct"), [
    ([150, 75], [150, 150], 75.0),
    ([160], [150], 100.0),
    ([None], [None], None),
    ([0], [0], None),
])
def test_delivered_pct(got: list[int | None], expected: list[int | None],
                       pct: float | None) -> None:
    results = [{"window_video_frames": g, "window_video_expected": e}
               for g, e in zip(got, expected, strict=True)]
    assert delivered_pct(results) == pct


@pytest.mark.parametrize(("exc", "expected"), [
    (SignalingError("forbidden", "no"), "join:forbidden"),
    (TimeoutError(), "join:TimeoutError"),
])
def test_errors_are_counted_by_stage_and_cause(exc: BaseException, expected: str) -> None:
    assert error_kind("join", exc) == expected


def test_the_wall_time_bound_grows_with_the_participants_and_the_window() -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    small = wall_limit_s(parser.parse_args(["--classes", "1", "--consults", "0"]))
    large = wall_limit_s(parser.parse_args(["--classes", "20", "--duration", "120"]))
    assert 0 < small < large


def result(label: str, session: str, node: str, first: float | None,
           errors: list[str] | None = None) -> dict[str, Any]:
    return {"label": label, "session": session, "joined_via": node, "node": node, "moves": 1,
            "moves_at_first_frame": 1, "first_frame_s": first,
            "window_video_frames": 150 if first is not None else None,
            "window_video_expected": 150 if first is not None else None,
            "stages_s": {"welcome": 0.1, "first_frame": first} if first is not None else {},
            "errors": errors or []}


def test_the_summary_counts_participants_per_node_and_errors_by_kind() -> None:
    summary = Summary(sessions=2, planned=4, window_s=10.0,
                      node_cpu={"node-a": (0.5, 1.5), "node-b": (0.2, 0.0)},
                      node_urls={"node-a": "http://a", "node-b": "http://b"})
    summary.results = [
        result("class-0/teacher", "c0", "http://a", 1.0),
        result("class-0/classroom-1", "c0", "http://a", 2.0),
        result("consult-0/clinic", "k0", "http://a", 3.0),
        result("consult-0/doctor", "k0", "http://b", None, ["media:timeout"]),
    ]
    summary.errors["setup:conflict"] += 1
    figures = summary.figures()
    assert figures["participants"] == 4 and figures["participants_receiving"] == 3
    assert figures["sessions_with_media"] == 1  # the consult has one receiver only
    assert figures["nodes"]["node-a"]["participants"] == 3
    assert figures["nodes"]["node-a"]["cpu_ms_per_participant_second"] == pytest.approx(66.67)
    assert figures["nodes"]["node-b"]["cpu_ms_per_participant_second"] is None
    assert figures["join_to_first_frame_p50_ms"] == 2000.0
    assert figures["join_to_first_frame_p50_ms_by_role"] == {
        "classroom": 2000.0, "clinic": 3000.0, "teacher": 1000.0}
    assert figures["errors"] == {"media:timeout": 1, "setup:conflict": 1}
    assert figures["error_count"] == 2
    assert figures["video_delivered_pct"] == 100.0
    assert figures["join_steps_p50_ms"] == {"welcome": 100.0, "session": None,
                                            "published": None, "first_frame": 2000.0}


@pytest.mark.redis
@pytest.mark.timeout(300)
def test_a_tiny_load_run_on_two_nodes_reports_its_figures_without_errors(capsys) -> None:
    require_redis_server()
    code = cli.main(["bench", "load", "--json", "--classes", "1", "--classrooms", "1",
                     "--consults", "1", "--duration", "4", "--warmup", "1",
                     "--first-frame-timeout", "60"])
    assert code == 0
    figures = json.loads(capsys.readouterr().out)
    print(json.dumps(figures, ensure_ascii=False))
    assert figures["errors"] == {}, figures["errors"]
    assert isinstance(figures["valid"], bool)  # delivery is a figure here, not a verdict
    assert figures["video_delivered_pct"] is not None
    assert figures["sessions"] == 2 and figures["sessions_with_media"] == 2
    assert figures["participants"] == 4 and figures["participants_receiving"] == 4
    assert figures["redirected_at_join"] >= 1  # someone joined through the node not holding
    assert set(figures["nodes"]) == {"node-a", "node-b"}
    assert sum(n["participants"] for n in figures["nodes"].values()) == 4
    for node in figures["nodes"].values():
        assert node["cpu_s"] >= 0
    assert figures["cpu_ms_per_participant_second"] is not None
    assert figures["join_to_first_frame_p50_ms"] > 0
    assert figures["join_to_first_frame_p95_ms"] >= figures["join_to_first_frame_p50_ms"]
