"""signaling/proc_cpu.py: /proc parsing by table, and a real child process whose CPU time is
found below this one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from signaling.proc_cpu import (
    descendants_cpu_seconds,
    parse_schedstat,
    parse_stat,
    read_all_stats,
    schedstat,
    tree_cpu,
    tree_pids,
)

BURN = """
import os, sys
while os.times().user + os.times().system < 0.2:
    pass
print("burnt", flush=True)
sys.stdin.readline()
"""


def test_parse_stat_reads_parent_and_cpu_even_with_spaces_in_the_name() -> None:
    fields = ["S", "41"] + ["0"] * 9 + ["250", "50"] + ["0"] * 30
    ppid, cpu = parse_stat("123 (python -m x) y) " + " ".join(fields))
    assert ppid == 41
    assert cpu == pytest.approx(300 / os.sysconf("SC_CLK_TCK"))


@pytest.mark.parametrize(("stats", "root", "expected"), [
    ({1: (0, 1.0), 2: (1, 2.0), 3: (2, 4.0), 4: (9, 8.0)}, 1, (1.0, 6.0)),
    ({1: (0, 1.0)}, 1, (1.0, 0.0)),
    ({}, 5, (0.0, 0.0)),
])
def test_tree_cpu_splits_a_process_from_its_descendants(
        stats: dict[int, tuple[int, float]], root: int, expected: tuple[float, float]) -> None:
    assert tree_cpu(stats, root) == expected


def test_parse_schedstat_reads_run_and_wait_seconds() -> None:
    assert parse_schedstat("1500000000 250000000 42\n") == (1.5, 0.25)


def test_schedstat_sums_processes_and_skips_gone_ones(tmp_path) -> None:
    for pid, text in ((10, "1000000000 3000000000 5"), (11, "500000000 0 1")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "schedstat").write_text(text)
    assert schedstat([10, 11, 12], str(tmp_path)) == (1.5, 3.0)


def test_tree_pids_lists_a_process_and_its_descendants() -> None:
    stats = {1: (0, 0.0), 2: (1, 0.0), 3: (2, 0.0), 4: (9, 0.0)}
    assert sorted(tree_pids(stats, 1)) == [1, 2, 3]


def test_a_missing_proc_reads_as_no_processes(tmp_path) -> None:
    assert read_all_stats(str(tmp_path / "nowhere")) == {}


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
@pytest.mark.timeout(60)
def test_a_child_that_burnt_cpu_counts_below_this_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", BURN], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "burnt"
        assert descendants_cpu_seconds() >= 0.15  # 0.2 s burnt, counted in clock ticks
        assert descendants_cpu_seconds(child.pid) == 0.0
    finally:
        child.communicate("\n", timeout=30)
