"""signaling/proc_cpu.py: /proc parsing by table, and a real child process whose CPU time is
found below this one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from signaling.proc_cpu import descendants_cpu_seconds, parse_stat, read_all_stats, tree_cpu

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
