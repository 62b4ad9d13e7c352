"""The two-node service `tongxin bench load` runs against: a local redis-server and two
`tongxin serve --redis URL --no-demo` processes on free loopback ports, and their CPU time.

Everything listens on 127.0.0.1 only, keeps its files in one temporary directory and is
stopped (SIGTERM, then SIGKILL after a bound) when the `LocalCluster` closes. A node's CPU is
read from /proc for its whole process tree (the signaling process and its media workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from signaling.proc_cpu import read_all_stats, tree_cpu, tree_pids

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
DEBIAN_REDIS_SERVER = "/usr/bin/redis-server"


def redis_server_binary() -> str | None:
    """`redis-server` on the PATH, else Debian's, else None."""
    found = shutil.which("redis-server")
    if found:
        return found
    return DEBIAN_REDIS_SERVER if os.access(DEBIAN_REDIS_SERVER, os.X_OK) else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class NodeProcess:
    """One `tongxin serve` process."""

    name: str
    url: str
    process: asyncio.subprocess.Process
    log_path: Path

    def log_tail(self, lines: int = 15) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class LocalCluster:
    """redis-server + two nodes; `start()`, then `close()` (always, even after a failure)."""

    def __init__(self, media_workers: int, nodes: int = 2, adaptation: bool = True) -> None:
        self.media_workers = media_workers
        self.adaptation = adaptation
        self.node_count = nodes
        self.dir = Path(tempfile.mkdtemp(prefix="tongxin-bench-load-"))
        self.token_secret = secrets.token_urlsafe(32)
        """Every node signs with it, so the benchmark can make an operator credential."""
        self.redis_port = free_port()
        self.redis: asyncio.subprocess.Process | None = None
        self.nodes: list[NodeProcess] = []

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    async def start(self) -> None:
        await self._start_redis()
        self.nodes = [await self._spawn_node(f"node-{chr(ord('a') + i)}")
                      for i in range(self.node_count)]
        await asyncio.gather(*(self._wait_ready(n) for n in self.nodes))

    async def _start_redis(self) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.redis = await asyncio.create_subprocess_exec(
            binary, "--port", str(self.redis_port), "--bind", "127.0.0.1",
            "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log"),
            "--daemonize", "no", "--save", "", "--appendonly", "no",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        client = aioredis.Redis(host="127.0.0.1", port=self.redis_port, socket_timeout=1)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                try:
                    await client.ping()
                    return
                except (aioredis.RedisError, OSError):
                    if self.redis.returncode is not None or time.monotonic() > deadline:
                        raise RuntimeError("redis-server did not start: see "
                                           f"{self.dir / 'redis.log'}") from None
                    await asyncio.sleep(0.1)
        finally:
            await client.aclose()

    async def _spawn_node(self, name: str) -> NodeProcess:
        port = free_port()
        log_path = self.dir / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TONGXIN_")}
        env.update({
            "TONGXIN_TOKEN_SECRET": self.token_secret,
            "TONGXIN_RATE_LIMIT_PER_MINUTE": "1000000",  # one address plays every participant
            "TONGXIN_LOG_LEVEL": "WARNING",
        })
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "signaling.cli", "serve", "--redis", self.redis_url,
                "--no-demo", "--host", "127.0.0.1", "--port", str(port),
                "--media-workers", str(self.media_workers),
                "--adaptation", "on" if self.adaptation else "off",
                "--data-dir", str(self.dir / name),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=log, env=env)
        finally:
            os.close(log)
        return NodeProcess(name, f"http://127.0.0.1:{port}", process, log_path)

    async def _wait_ready(self, node: NodeProcess) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        async with aiohttp.ClientSession() as http:
            while True:
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with http.get(node.url + "/readyz",
                                        timeout=aiohttp.ClientTimeout(total=3)) as resp:
                        if resp.status == 200:
                            return
                if node.process.returncode is not None:
                    raise RuntimeError(f"{node.name} exited with {node.process.returncode}: "
                                       f"{node.log_tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{node.name} not ready within {START_TIMEOUT_S:g} s: "
                                       f"{node.log_tail()}")
                await asyncio.sleep(0.2)

    def cpu(self) -> dict[str, tuple[float, float]]:
        """Node name -> (signaling process CPU s, media worker CPU s) so far."""
        stats = read_all_stats()
        return {n.name: tree_cpu(stats, n.process.pid) for n in self.nodes}

    def pids(self) -> list[int]:
        """Every process of the nodes (signaling and media workers)."""
        stats = read_all_stats()
        return [pid for n in self.nodes for pid in tree_pids(stats, n.process.pid)]

    def crashed(self) -> list[str]:
        """Names of nodes whose process has exited."""
        return [n.name for n in self.nodes if n.process.returncode is not None]

    async def close(self, keep_logs: Path | None = None) -> None:
        """Stop everything and remove the directory (its *.log files copied to `keep_logs`)."""
        processes = [n.process for n in self.nodes]
        if self.redis is not None:
            processes.append(self.redis)
        await asyncio.gather(*(stop_process(p) for p in processes))
        if keep_logs is not None:
            await asyncio.to_thread(copy_logs, self.dir, keep_logs)
        await asyncio.to_thread(shutil.rmtree, self.dir, True)


def copy_logs(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for log in source.glob("*.log"):
        shutil.copy(log, target / log.name)


async def stop_process(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, wait up to `STOP_TIMEOUT_S`, then SIGKILL."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
