"""The two-node service `tongxin bench load` runs against: a local redis-server and two
`tongxin serve --redis URL --no-demo` processes on free loopback ports, and their CPU time.

Everything listens on 127.0.0.1 only, keeps its files in one temporary directory and is
stopped (SIGTERM, then SIGKILL after a bound) when the `LocalCluster` closes. A node's CPU is
read from /proc for its whole process tree (the signaling process and its media workers).
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from bench.processes import NodeProcess, RedisServerProcess
from signaling.proc_cpu import read_all_stats, tree_cpu, tree_pids

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class LocalCluster:
    """redis-server + two nodes; `start()`, then `close()` (always, even after a failure)."""

    def __init__(self, media_workers: int, nodes: int = 2, adaptation: bool = True) -> None:
        self.media_workers = media_workers
        self.adaptation = adaptation
        self.node_count = nodes
        self.dir = Path(tempfile.mkdtemp(prefix="tongxin-bench-load-"))
        self.token_secret = secrets.token_urlsafe(32)
        """Every node signs with it, so the benchmark can make an operator credential."""
        self.redis: RedisServerProcess | None = None
        self.nodes: list[NodeProcess] = []

    @property
    def redis_url(self) -> str:
        assert self.redis is not None, "the cluster has not been started"
        return self.redis.url

    async def start(self) -> None:
        self.redis = RedisServerProcess(directory=self.dir / "redis")
        await asyncio.to_thread(self.redis.start, START_TIMEOUT_S)
        self.nodes = [
            NodeProcess(self.dir, name=f"node-{chr(ord('a') + i)}", redis_url=self.redis_url,
                        media_workers=self.media_workers, adaptation=self.adaptation,
                        env={"TONGXIN_TOKEN_SECRET": self.token_secret}, ready_path="/readyz")
            for i in range(self.node_count)]
        # every start runs to its end (each is bounded) before a failure is raised: `close`
        # must not race a start that is still spawning its node
        started = await asyncio.gather(*(n.start(START_TIMEOUT_S) for n in self.nodes),
                                       return_exceptions=True)
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome

    def cpu(self) -> dict[str, tuple[float, float]]:
        """Node name -> (signaling process CPU s, media worker CPU s) so far."""
        stats = read_all_stats()
        return {n.name: tree_cpu(stats, n.pid) for n in self.nodes}

    def pids(self) -> list[int]:
        """Every process of the nodes (signaling and media workers)."""
        stats = read_all_stats()
        return [pid for n in self.nodes for pid in tree_pids(stats, n.pid)]

    def crashed(self) -> list[str]:
        """Names of nodes whose process has exited."""
        return [n.name for n in self.nodes if n.returncode is not None]

    async def close(self, keep_logs: Path | None = None) -> None:
        """Stop everything and remove the directory (the logs copied to `keep_logs`)."""
        await asyncio.gather(*(n.stop(STOP_TIMEOUT_S) for n in self.nodes))
        if self.redis is not None:
            await asyncio.to_thread(self.redis.stop)
        if keep_logs is not None:
            logs = [*self.dir.glob("*.log")]
            if self.redis is not None:
                logs.append(self.redis.log_path)
            await asyncio.to_thread(copy_logs, logs, keep_logs)
        await asyncio.to_thread(shutil.rmtree, self.dir, True)


def copy_logs(logs: Iterable[Path], target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for log in logs:
        if log.exists():
            shutil.copy(log, target / log.name)
