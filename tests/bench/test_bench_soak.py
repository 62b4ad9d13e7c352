"""`tongxin bench soak`: the verdict on a series (tables), the hand-made WebSocket frame, and
a short real run of the command whose JSON has the documented shape and no error."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.soak import (
    Sample,
    log_errors,
    masked_text_frame,
    server_error_counts,
    soak_verdict,
    warm_reference,
)


def series(*rows: tuple[float, float, int, int, int, bool]) -> list[Sample]:
    return [Sample(t_s=t, rss_mb=rss, fds=fds, tasks=tasks, websockets=0, errors=errors,
                   quiet=quiet) for t, rss, fds, tasks, errors, quiet in rows]


STEADY = series((0, 80, 10, 10, 0, False), (20, 100, 10, 12, 0, True),
                (50, 102, 30, 80, 0, False), (100, 101, 10, 12, 0, True))


@pytest.mark.parametrize(
    ("samples", "ok", "reason"),
    [
        (STEADY, True, None),
        # growth during the warm-up does not count; a churn peak of files/tasks does not either
        (series((0, 50, 9, 8, 0, False), (20, 100, 10, 12, 0, True),
                (60, 104, 40, 90, 0, False), (100, 100, 10, 12, 0, True)), True, None),
        (series((0, 80, 10, 10, 0, False), (20, 100, 10, 12, 0, True),
                (60, 104, 10, 12, 0, False), (100, 107, 10, 12, 0, True)), False, "RSS moved"),
        (series((0, 80, 10, 10, 0, False), (20, 100, 10, 12, 0, True),
                (100, 100, 13, 12, 0, True)), False, "open files grew from 10 to 13"),
        (series((0, 80, 10, 10, 0, False), (20, 100, 10, 12, 0, True),
                (100, 100, 10, 15, 0, True)), False, "asyncio tasks grew from 12 to 15"),
        (series((0, 80, 10, 10, 0, False), (20, 100, 10, 12, 0, True),
                (100, 100, 10, 12, 2, True)), False, "2 errors"),
        (series((0, 80, 10, 10, 0, False), (100, 80, 10, 10, 0, True)), False,
         "too few samples"),
    ],
)
def test_the_verdict_judges_rss_files_tasks_and_errors_after_the_warm_up(
        samples: list[Sample], ok: bool, reason: str | None) -> None:
    verdict = soak_verdict(samples)
    assert verdict.ok is ok
    if reason is not None:
        assert any(reason in r for r in verdict.reasons), verdict.reasons


@pytest.mark.parametrize(
    ("samples", "index"),
    [
        (STEADY, 1),  # the quiet sample ending the warm-up
        (series((0, 1, 1, 1, 0, False), (10, 1, 1, 1, 0, False), (30, 1, 1, 1, 0, False),
                (100, 1, 1, 1, 0, False)), 2),  # none quiet: first at or after 20% of the run
        (series((0, 1, 1, 1, 0, False), (100, 1, 1, 1, 0, True)), 1),
    ],
)
def test_the_reference_is_the_quiet_sample_ending_the_warm_up(samples: list[Sample],
                                                              index: int) -> None:
    assert warm_reference(samples) == index


def test_a_hand_made_websocket_frame_matches_rfc_6455s_masked_hello() -> None:
    mask = bytes.fromhex("37fa213d")
    assert masked_text_frame("Hello", mask) == bytes.fromhex("8185") + mask + bytes.fromhex(
        "7f9f4d5158")


@pytest.mark.parametrize(("length", "header"), [
    (125, bytes([0x81, 0x80 | 125])),
    (126, bytes([0x81, 0x80 | 126, 0, 126])),
    (70_000, bytes([0x81, 0x80 | 127]) + (70_000).to_bytes(8, "big")),
])
def test_a_hand_made_websocket_frame_encodes_its_length_in_7_16_or_64_bits(
        length: int, header: bytes) -> None:
    frame = masked_text_frame("x" * length, b"\0\0\0\0")
    assert frame.startswith(header + b"\0\0\0\0") and frame.endswith(b"x" * length)


METRICS = """\
# TYPE tongxin_websocket_errors_total counter
tongxin_websocket_errors_total{code="not_in_session"} 3.0
tongxin_websocket_errors_total{code="conflict"} 0.0
# TYPE tongxin_http_requests_total counter
tongxin_http_requests_total{method="POST",route="/api/v1/session",status="200"} 40.0
tongxin_http_requests_total{method="POST",route="/api/v1/session",status="500"} 2.0
tongxin_http_requests_total{method="GET",route="/readyz",status="503"} 1.0
"""


def test_server_errors_are_error_frames_by_code_and_http_5xx_answers() -> None:
    assert server_error_counts(METRICS) == {"frame:not_in_session": 3, "http:500": 2,
                                            "http:503": 1}


def test_log_errors_counts_error_lines_and_keeps_distinct_messages(tmp_path) -> None:
    log = tmp_path / "node.log"
    lines = [{"level": "warning", "msg": "subscription lost"},
             {"level": "error", "msg": "unhandled error"},
             {"level": "error", "msg": "unhandled error"},
             {"level": "critical", "msg": "worker died"}]
    log.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json\n")
    assert log_errors(log) == (3, ["unhandled error", "worker died"])
    assert log_errors(tmp_path / "missing.log") == (0, [])


@pytest.mark.timeout(300)
@pytest.mark.slow
def test_a_short_soak_prints_the_series_and_a_verdict_without_errors(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "signaling.cli", "bench", "soak", "--minutes", "0.33",
         "--sample-s", "3", "--settle-s", "1", "--hold-s", "1", "--json"],
        capture_output=True, text=True, timeout=280, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert set(result) >= {"minutes", "store", "churn", "errors", "samples", "verdict"}
    assert result["store"] == "memory"
    samples = result["samples"]
    assert len(samples) >= 4
    assert {"t_s", "rss_mb", "fds", "tasks", "websockets", "errors", "quiet"} <= set(samples[0])
    assert all(s["rss_mb"] > 0 and s["fds"] > 0 and s["tasks"] > 0 for s in samples)
    assert sum(s["quiet"] for s in samples) == 2, "a quiet sample at warm-up end and at the end"
    assert result["churn"]["joins"] > 0 and result["churn"]["websocket_drops"] > 0
    assert result["errors"] == {"churn": {}, "server": {}, "log_lines": 0, "log_messages": []}, (
        proc.stderr[-2000:])
    assert result["refused_frames"] == {}
    verdict = result["verdict"]
    assert verdict["errors"] == 0
    assert {"ok", "rss_reference_mb", "rss_max_change_pct", "fds_warm", "fds_end",
            "tasks_warm", "tasks_end", "reasons"} <= set(verdict)
    assert "soak: verdict" in proc.stderr
