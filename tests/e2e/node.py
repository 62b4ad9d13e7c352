"""A real Tongxin node for browser tests: `tongxin serve` as a subprocess on a free loopback
port with the demo directory, its printed join links parsed from stdout."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.processes import free_port, log_tail, node_env, stop_popen

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
LINK_LINE = re.compile(r"^\s+(\S.*?)\s{2,}(https?://\S+/join/\S+)\s*$")


class TongxinNode:
    """One `tongxin serve` process; `links` maps each demo link's printed name to its URL."""

    def __init__(self, log_dir: Path, *, media_workers: int = 1) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / "tongxin-node.log"
        self.media_workers = media_workers
        self.links: dict[str, str] = {}
        self.banner: list[str] = []
        self._proc: subprocess.Popen[str] | None = None

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "signaling.cli", "serve",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--media-workers", str(self.media_workers), "--demo",
            "--log-level", os.environ.get("E2E_NODE_LOG_LEVEL", "INFO"),
        ]  # fmt: skip

    def start(self) -> None:
        env = node_env({"PYTHONUNBUFFERED": "1"})
        log = self.log_path.open("w", encoding="utf-8")
        self._proc = subprocess.Popen(
            self.command(), cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=log, text=True,
        )
        ready = threading.Event()
        threading.Thread(target=self._read_stdout, args=(ready,), daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while not ready.wait(0.2):
            if self._proc.poll() is not None:
                raise RuntimeError(f"tongxin serve exited with {self._proc.returncode}: "
                                   f"{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"tongxin serve printed no banner within {START_TIMEOUT:g} s:"
                                   f" {self.log_tail()}")

    def _read_stdout(self, ready: threading.Event) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self.banner.append(line.rstrip("\n"))
            match = LINK_LINE.match(line)
            if match:
                self.links[match.group(1)] = match.group(2)
            if "Ctrl+C" in line:
                ready.set()

    def link(self, *words: str) -> str:
        """The demo link whose name contains every word (case-insensitive)."""
        found = [url for name, url in self.links.items()
                 if all(w.lower() in name.lower() for w in words)]
        if not found:
            raise KeyError(f"no demo link named with {words}: {sorted(self.links)}")
        return found[0]

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)

    def stop(self) -> None:
        if self._proc is not None:
            stop_popen(self._proc, STOP_TIMEOUT, signal.SIGINT)
