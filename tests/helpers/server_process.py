"""`ServerProcess`: what every server a test runs as a child process has in common.

A temporary directory of its own (removed by `close`), a start that waits, bounded, until the
server answers, a stop that sends SIGTERM and then SIGKILL when it lingers, and use as a
context manager. Subclasses (`RedisServerProcess`, `CoturnProcess`) say how to start the
server and how to tell that it answers.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self


class ServerProcess:
    """One server child process; see the module docstring."""

    stop_timeout: float = 15.0
    """Seconds a stopping server has to exit after SIGTERM before it is killed."""

    def __init__(self, prefix: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self._proc: subprocess.Popen[bytes] | None = None

    # --- what a subclass provides --------------------------------------------------------
    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    def start(self, timeout: float = 15.0) -> None:
        """Start the server; return once it answers (bounded by `timeout`)."""
        raise NotImplementedError

    # --- the process ----------------------------------------------------------------------
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _spawn(self, command: list[str], stdout: IO[bytes] | int = subprocess.DEVNULL,
               stderr: IO[bytes] | int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        self._proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=stdout,
                                      stderr=stderr)
        return self._proc

    def _wait_until_ready(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Poll `ready` every 50 ms: True once it answers; False when the process exits or
        `timeout` seconds pass first (the process is left as it is)."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self._proc is None or self._proc.poll() is not None:
                return False
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        """SIGTERM (after SIGCONT: a paused process cannot act on it), wait, SIGKILL if it
        lingers."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
        try:
            proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(self.stop_timeout)

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- its log ----------------------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        return " | ".join(self.log_text().splitlines()[-lines:]) or "(no log)"

    # --- as a context manager -------------------------------------------------------------
    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
