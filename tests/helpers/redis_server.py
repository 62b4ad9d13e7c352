"""`RedisServerProcess`: a real `redis-server` on a free loopback port, owned by a test.

It listens on 127.0.0.1 only, keeps its files in its own temporary directory, and can be
stopped, killed, paused and restarted on the same port and directory (for outage tests).
With `appendonly=True` (and `fsync_always=True`) writes survive a restart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import pytest
import redis

from tests.helpers.net import free_port

READY_TIMEOUT = 15.0
"""Seconds a starting server has to answer PING before the start counts as failed."""

STOP_TIMEOUT = 15.0
"""Seconds a stopping server has to exit after SIGTERM before it is killed."""


class PortTaken(Exception):
    """redis-server could not bind its port: someone else took it after `free_port`."""


def redis_server_binary() -> str | None:
    """Path of `redis-server`, or None when it is not installed."""
    return shutil.which("redis-server")


def require_redis_server() -> None:
    """Skip the calling test when `redis-server` is missing; fail instead when `CI=true`."""
    if redis_server_binary() is not None:
        return
    reason = "redis-server is not installed (apt-get install redis-server, or make system-deps)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the Redis tests", pytrace=False)
    pytest.skip(reason)


def answers_ping(port: int, pid: int | None = None, timeout: float = 0.5) -> bool:
    """True when the Redis on 127.0.0.1:`port` answers PING (not LOADING) and, when `pid` is
    given, is that process (not some other server that took the port)."""
    client = redis.Redis(
        host="127.0.0.1", port=port, socket_timeout=timeout, socket_connect_timeout=timeout
    )
    try:
        client.ping()
        return pid is None or int(client.info("server")["process_id"]) == pid
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


class RedisServerProcess:
    """One `redis-server` process; see the module docstring."""

    def __init__(
        self,
        *,
        appendonly: bool = False,
        fsync_always: bool = False,
        port: int | None = None,
        binary: str | None = None,
    ) -> None:
        self.appendonly = appendonly or fsync_always
        self.fsync_always = fsync_always
        self.port = port or free_port()
        self._may_change_port = port is None
        found = binary or redis_server_binary()
        if found is None:
            raise FileNotFoundError("redis-server is not installed")
        self.binary = found
        self.dir = Path(tempfile.mkdtemp(prefix="tongxin-redis-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.dir / "redis.log"

    def command(self) -> list[str]:
        """The command line: loopback only, no RDB snapshots, AOF as configured."""
        cmd = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--logfile", str(self.log_path),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
        ]  # fmt: skip
        if self.fsync_always:
            cmd += ["--appendfsync", "always"]
        return cmd

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Start the server and return once it answers PING (bounded by `timeout`).

        On the first start with a port chosen here, a port taken meanwhile by someone else
        is replaced by another free one (twice at most); later starts keep the port.
        """
        if self.is_running():
            return
        for _attempt in range(3):
            try:
                self._start_once(timeout)
                break
            except PortTaken:
                if not self._may_change_port:
                    raise
                self.port = free_port()
                self.log_path.unlink(missing_ok=True)
        else:
            raise PortTaken(f"redis-server could not bind a free port: {self.log_tail()}")
        self._may_change_port = False

    def _start_once(self, timeout: float) -> None:
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not answers_ping(self.port, self._proc.pid):
            if self._proc.poll() is not None:
                tail = self.log_tail()
                if "Address already in use" in tail:
                    raise PortTaken(f"port {self.port} is taken: {tail}")
                raise RuntimeError(f"redis-server exited with {self._proc.returncode}: {tail}")
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(
                    f"redis-server did not answer within {timeout:g} s: {self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (Redis flushes its AOF on the way out), wait, SIGKILL if it lingers."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed beyond what was already fsynced."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(STOP_TIMEOUT)

    def pause(self) -> None:
        """SIGSTOP: the port stays open but nothing answers (a hung server)."""
        if self._proc is not None and self.is_running():
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        if self._proc is not None and self.is_running():
            self._proc.send_signal(signal.SIGCONT)

    def restart(self, timeout: float = READY_TIMEOUT) -> None:
        """Stop, then start again on the same port with the same directory."""
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> RedisServerProcess:
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
