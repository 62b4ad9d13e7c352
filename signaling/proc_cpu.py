"""CPU time of a process and of everything it started, read from Linux's /proc.

A node's media workers are its child processes, and a node's cost is the sum: the benchmark
reads it for its `tongxin serve` processes and the node exports its children's share as
`tongxin_media_cpu_seconds_total` (its own is `tongxin_process_cpu_seconds_total`). The
scheduler's run and wait times (`schedstat`) tell a starved process from a busy one. Parsing
is pure (`parse_stat`, `tree_cpu`, `parse_schedstat`); the rest reads /proc. Elsewhere than
Linux, nothing is found and the figures are zero.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_stat(text: str) -> tuple[int, float]:
    """(parent pid, user + system CPU seconds) from the text of /proc/<pid>/stat."""
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu(stats: dict[int, tuple[int, float]], root: int) -> tuple[float, float]:
    """(root's own CPU seconds, its descendants' CPU seconds) from {pid: (ppid, cpu)}."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _cpu) in stats.items():
        children.setdefault(ppid, []).append(pid)
    own = stats.get(root, (0, 0.0))[1]
    below = 0.0
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        below += stats[pid][1]
        todo.extend(children.get(pid, ()))
    return own, below


def read_all_stats(proc: str = "/proc") -> dict[int, tuple[int, float]]:
    """{pid: (ppid, cpu seconds)} of every process readable in `proc`."""
    stats: dict[int, tuple[int, float]] = {}
    try:
        entries = os.listdir(proc)
    except OSError:
        return stats
    for entry in entries:
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"{proc}/{entry}/stat") as f:
                stats[int(entry)] = parse_stat(f.read())
    return stats


def descendants_cpu_seconds(root: int | None = None) -> float:
    """CPU seconds of the processes below `root` (default: this process), alive now."""
    return tree_cpu(read_all_stats(), os.getpid() if root is None else root)[1]


def parse_schedstat(text: str) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) from /proc/<pid>/schedstat."""
    fields = text.split()
    return int(fields[0]) / 1e9, int(fields[1]) / 1e9


def schedstat(pids: Iterable[int], proc: str = "/proc") -> tuple[float, float]:
    """Summed (run, wait) seconds of the main threads of `pids` (gone ones count zero). Waiting
    more than running means the machine, not the program, set the pace."""
    run = wait = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"{proc}/{pid}/schedstat") as f:
                r, w = parse_schedstat(f.read())
            run, wait = run + r, wait + w
    return run, wait


def tree_pids(stats: dict[int, tuple[int, float]], root: int) -> list[int]:
    """`root` and its descendants in {pid: (ppid, cpu)}."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _cpu) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found
