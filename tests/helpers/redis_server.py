"""`RedisServerProcess`: a real `redis-server` on a free loopback port, owned by a test.

It listens on 127.0.0.1 only, keeps its files in its own temporary directory, and can be
stopped, killed, paused and restarted on the same port and directory (for outage tests).
With `appendonly=True` (and `fsync_always=True`) writes survive a restart.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
import redis

from tests.helpers.net import free_port
from tests.helpers.server_process import ServerProcess

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


class RedisServerProcess(ServerProcess):
    """One `redis-server` process; see the module docstring."""

    stop_timeout = STOP_TIMEOUT

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
        super().__init__("tongxin-redis-")

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
        proc = self._spawn(self.command())
        if self._wait_until_ready(lambda: answers_ping(self.port, proc.pid), timeout):
            return
        if proc.poll() is not None:
            tail = self.log_tail()
            if "Address already in use" in tail:
                raise PortTaken(f"port {self.port} is taken: {tail}")
            raise RuntimeError(f"redis-server exited with {proc.returncode}: {tail}")
        self.kill()
        raise TimeoutError(f"redis-server did not answer within {timeout:g} s: {self.log_tail()}")

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
