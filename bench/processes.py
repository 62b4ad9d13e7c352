"""Child processes the benches and the tests start, in one place: a free loopback port, a
`redis-server` on it, a `tongxin serve` node, and a stop that is always bounded.

- `free_port()`: a TCP port on 127.0.0.1 the OS just handed out.
- `redis_server_binary()`: `redis-server` on the PATH, else Debian's, else None.
- `stop_process` (asyncio) / `stop_popen` (subprocess): SIGCONT (a paused process cannot act
  on SIGTERM), the stop signal, a bounded wait, then SIGKILL and another bounded wait.
- `ServerProcess`: a blocking server child in a directory of its own (start waits, bounded,
  until it answers); `RedisServerProcess` is one on a free loopback port, restartable on that
  port and directory, with deploy/'s persistence when asked.
- `NodeProcess`: `tongxin serve` as an asyncio child on a loopback port; `start` returns once
  it answers, `stop` is SIGTERM (its clean shutdown), `kill` SIGKILL.

Tools only: the benches and the tests import this module; the service (broker/, signaling/,
media/) never does. Every server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO, Self

import aiohttp
import redis

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 90.0
"""Seconds a starting node has to answer (aiortc and media workers on a busy 2-core machine)."""
STOP_TIMEOUT_S = 20.0
"""Seconds a stopping process has to exit after its stop signal before it is killed, and
again after SIGKILL before the stop gives up waiting."""
REDIS_READY_TIMEOUT_S = 15.0
"""Seconds a starting redis-server has to answer PING."""
REDIS_STOP_TIMEOUT_S = 15.0
DEBIAN_REDIS_SERVER = "/usr/bin/redis-server"
REDIS_MISSING = "redis-server is not installed (apt-get install redis-server, or make system-deps)"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on `host` that was free a moment ago (the OS picked it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str | None:
    """`redis-server` on the PATH, else Debian's, else None."""
    found = shutil.which("redis-server")
    if found:
        return found
    return DEBIAN_REDIS_SERVER if os.access(DEBIAN_REDIS_SERVER, os.X_OK) else None


def node_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without its `TONGXIN_*` settings (a run must not depend on
    the caller's shell), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGXIN_")}
    env.update(extra or {})
    return env


# --- a bounded stop --------------------------------------------------------------------------


async def stop_process(process: asyncio.subprocess.Process, timeout: float = STOP_TIMEOUT_S,
                       sig: int = signal.SIGTERM) -> int | None:
    """`sig` (after SIGCONT), wait up to `timeout`, then SIGKILL and wait up to `timeout`
    again; the exit code (None if it still has not exited)."""
    if process.returncode is not None:
        return process.returncode
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGCONT)
        process.send_signal(sig)
    try:
        return await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        pass
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), timeout)
    return process.returncode


def stop_popen(process: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT_S,
               sig: int = signal.SIGTERM) -> int | None:
    """`stop_process` for a `subprocess.Popen` (blocks the calling thread)."""
    if process.poll() is not None:
        return process.returncode
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGCONT)
        process.send_signal(sig)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout)
    return process.returncode


def log_tail(path: Path, lines: int = 15) -> str:
    """The last `lines` lines of a log file on one line, or "(no log)"."""
    with contextlib.suppress(OSError):
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        if tail:
            return " | ".join(tail)
    return "(no log)"


# --- blocking servers (redis-server; coturn in the tests) ------------------------------------


class ServerProcess:
    """One server child process in a directory of its own (removed by `close`): a start that
    waits, bounded, until the server answers, a bounded stop, and use as a context manager.
    Subclasses say how to start the server and how to tell that it answers."""

    stop_timeout: float = REDIS_STOP_TIMEOUT_S
    """Seconds a stopping server has to exit after SIGTERM before it is killed."""

    def __init__(self, prefix: str, directory: Path | None = None) -> None:
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix=prefix))
        else:
            directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self._proc: subprocess.Popen[bytes] | None = None

    # --- what a subclass provides --------------------------------------------------------
    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    def start(self, timeout: float = REDIS_READY_TIMEOUT_S) -> None:
        """Start the server; return once it answers (bounded by `timeout`)."""
        raise NotImplementedError

    # --- the process ----------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

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
        """SIGTERM (after SIGCONT), wait, SIGKILL if it lingers (`stop_popen`)."""
        if self._proc is not None:
            stop_popen(self._proc, self.stop_timeout)

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
        return log_tail(self.log_path, lines)

    # --- as a context manager -------------------------------------------------------------
    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class PortTaken(RuntimeError):
    """redis-server could not bind its port: someone else took it after `free_port`."""


def answers_ping(port: int, pid: int | None = None, timeout: float = 0.5) -> bool:
    """True when the Redis on 127.0.0.1:`port` answers PING (not LOADING) and, when `pid` is
    given, is that process (not some other server that took the port)."""
    client = redis.Redis(host=LOOPBACK, port=port, socket_timeout=timeout,
                         socket_connect_timeout=timeout)
    try:
        client.ping()
        return pid is None or int(client.info("server")["process_id"]) == pid
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


class RedisServerProcess(ServerProcess):
    """A real `redis-server` on a free loopback port.

    It keeps its files in its own directory (a temporary one unless `directory` is given) and
    can be stopped, killed, paused and restarted on the same port and directory (for outage
    tests). With `appendonly=True` (and `fsync_always=True`) writes survive a restart. Its
    `start` blocks: from asyncio, `await asyncio.to_thread(server.start)`."""

    stop_timeout = REDIS_STOP_TIMEOUT_S

    def __init__(self, *, appendonly: bool = False, fsync_always: bool = False,
                 port: int | None = None, binary: str | None = None,
                 directory: Path | None = None) -> None:
        self.appendonly = appendonly or fsync_always
        self.fsync_always = fsync_always
        self.port = port or free_port()
        self._may_change_port = port is None
        found = binary or redis_server_binary()
        if found is None:
            raise FileNotFoundError(REDIS_MISSING)
        self.binary = found
        super().__init__("tongxin-redis-", directory)

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.dir / "redis.log"

    def command(self) -> list[str]:
        """The command line: loopback only, no RDB snapshots, AOF as configured."""
        cmd = [
            self.binary,
            "--port", str(self.port),
            "--bind", LOOPBACK,
            "--dir", str(self.dir),
            "--logfile", str(self.log_path),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
        ]  # fmt: skip
        if self.fsync_always:
            cmd += ["--appendfsync", "always"]
        return cmd

    def start(self, timeout: float = REDIS_READY_TIMEOUT_S) -> None:
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

    def restart(self, timeout: float = REDIS_READY_TIMEOUT_S) -> None:
        """Stop, then start again on the same port with the same directory."""
        self.stop()
        self.start(timeout)


# --- `tongxin serve` -------------------------------------------------------------------------


class NodeProcess:
    """`tongxin serve` as an asyncio child process on a loopback port.

    Its files are in `workdir`: the log (stderr, JSON lines, appended across restarts) at
    `<name>.log`, the banner (stdout) of each start at `<name>-<start>.out`, its data directory
    at `<name>/`. `start` returns once `ready_path` answers 200 (and, with the demo, the banner
    is out); `stop` is SIGTERM (the node's clean shutdown), then SIGKILL if it lingers; `kill`
    is SIGKILL. It runs without the caller's `TONGXIN_*` settings (`node_env`), with the rate
    limit out of the way (one address plays every participant), plus `env`."""

    def __init__(self, workdir: Path, *, name: str | None = None, port: int | None = None,
                 redis_url: str | None = None, media_workers: int = 0, demo: bool = False,
                 adaptation: bool | None = None, env: Mapping[str, str] | None = None,
                 log_level: str = "WARNING", ready_path: str = "/healthz",
                 extra_args: Sequence[str] = ()) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.name = name or f"node-{self.port}"
        self.redis_url = redis_url
        self.media_workers = media_workers
        self.demo = demo
        self.adaptation = adaptation
        """True/False: `--adaptation on/off`; None: the node's default."""
        self.env = dict(env or {})
        self.log_level = log_level
        self.ready_path = ready_path
        self.extra_args = tuple(extra_args)
        """More `tongxin serve` flags (e.g. `--media-role edge`), after the usual ones."""
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the node has not been started"
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has exited (None while it runs or before a start)."""
        return None if self.proc is None else self.proc.returncode

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def banner_path(self) -> Path:
        return self.workdir / f"{self.name}-{self.starts}.out"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "signaling.cli", "serve", "--host", LOOPBACK,
               "--port", str(self.port), "--media-workers", str(self.media_workers),
               "--log-format", "json", "--log-level", self.log_level,
               "--data-dir", str(self.workdir / self.name),
               "--demo" if self.demo else "--no-demo"]
        if self.redis_url:
            cmd += ["--redis", self.redis_url]
        if self.adaptation is not None:
            cmd += ["--adaptation", "on" if self.adaptation else "off"]
        return cmd + list(self.extra_args)

    async def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start and return once `ready_path` answers (and the banner is out, with the demo);
        bounded by `timeout` (then the process is killed and TimeoutError raised)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        env = node_env({"TONGXIN_RATE_LIMIT_PER_MINUTE": "1000000", **self.env})
        out, log = self._output_files()
        with out, log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command(), stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=log,
                env=env)
        await self._wait_ready(self.proc, timeout)

    async def _wait_ready(self, proc: asyncio.subprocess.Process, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                if proc.returncode is not None:
                    raise RuntimeError(f"{self.name} exited with {proc.returncode}: "
                                       f"{self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with http.get(self.url + self.ready_path,
                                        timeout=aiohttp.ClientTimeout(total=3)) as resp:
                        if resp.status == 200 and (not self.demo or self.banner_done()):
                            return
                if time.monotonic() > deadline:
                    await self.kill()
                    raise TimeoutError(f"{self.name} did not answer within {timeout:g} s: "
                                       f"{self.log_tail()}")
                await asyncio.sleep(0.2)

    def _output_files(self) -> tuple[BinaryIO, BinaryIO]:
        """(banner, log) files handed to the child (a local file opens without waiting)."""
        return open(self.banner_path, "wb"), open(self.log_path, "ab")

    def banner_done(self) -> bool:
        with contextlib.suppress(OSError):
            return "Press Ctrl+C" in self.banner_path.read_text(errors="replace")
        return False

    def demo_links(self) -> dict[str, str]:
        """Label -> join link, from the banner of the last start with the demo."""
        links = {}
        for line in self.banner_path.read_text().splitlines():
            if "/join/" in line:
                label, link = line.strip().rsplit(None, 1)
                links[label.strip()] = link
        return links

    def log_tail(self, lines: int = 15) -> str:
        return log_tail(self.log_path, lines)

    async def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, wait (bounded), SIGKILL if it lingers; the exit code (None if never
        started)."""
        if self.proc is None:
            return None
        return await stop_process(self.proc, timeout)

    async def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed (the wait for it is bounded)."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT_S)
