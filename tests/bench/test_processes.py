"""bench/processes.py: the free port binds, the bounded stops stop what they are given within
their bound (a process that ignores SIGTERM too), the environment a node gets, a node's command
line, and a real redis-server started, answering, restarted on its port and stopped."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench.processes import (
    LOOPBACK,
    NodeProcess,
    RedisServerProcess,
    answers_ping,
    free_port,
    node_env,
    redis_server_binary,
    stop_popen,
    stop_process,
)
from tests.helpers.redis_server import require_redis_server

SLEEPER = [sys.executable, "-c",
           "import signal, time\n"
           "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
           "print('ready', flush=True)\n"
           "time.sleep(60)"]
"""Stops on SIGTERM and SIGINT. It sets Python's SIGINT handler itself: a process started in
the background by a non-interactive shell (as CI may run the tests) inherits SIGINT ignored,
and Python then keeps it ignored. It says when it is ready, so no signal arrives before."""
STUBBORN = [sys.executable, "-c",
            "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)"]
"""Ignores SIGTERM: only the SIGKILL after the bound stops it. It says when it is ready, so
SIGTERM cannot arrive before the handler is set."""


def test_free_port_is_bindable_on_loopback() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, port))


@pytest.mark.parametrize(("command", "sig", "bound", "killed"), [
    (SLEEPER, signal.SIGTERM, 5.0, False),
    (SLEEPER, signal.SIGINT, 5.0, False),
    (STUBBORN, signal.SIGTERM, 0.5, True),
])
def test_stop_popen_stops_within_its_bound(command: list[str], sig: int, bound: float,
                                           killed: bool) -> None:
    process = subprocess.Popen(command, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None and process.stdout.readline() == b"ready\n"
        started = time.monotonic()
        code = stop_popen(process, bound, sig)
        elapsed = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()
    assert code == (-signal.SIGKILL if killed else -sig)
    assert elapsed < 2 * bound + 1.0


def test_stop_popen_on_an_exited_process_returns_its_code() -> None:
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait()
    assert stop_popen(process, 1.0) == 3


@pytest.mark.parametrize(("command", "bound", "killed"), [
    (SLEEPER, 5.0, False),
    (STUBBORN, 0.5, True),
])
async def test_stop_process_stops_within_its_bound(command: list[str], bound: float,
                                                   killed: bool) -> None:
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        assert await asyncio.wait_for(process.stdout.readline(), 30) == b"ready\n"
        started = time.monotonic()
        code = await stop_process(process, bound)
        elapsed = time.monotonic() - started
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
    assert code == (-signal.SIGKILL if killed else -signal.SIGTERM)
    assert elapsed < 2 * bound + 1.0
    assert await stop_process(process, bound) == code  # stopping again: the same code


def test_node_env_drops_the_callers_tongxin_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONGXIN_PORT", "1")
    monkeypatch.setenv("TONGXIN_REDIS_URL", "redis://elsewhere")
    monkeypatch.setenv("SOMETHING_ELSE", "kept")
    env = node_env({"TONGXIN_TOKEN_SECRET": "s"})
    assert {k for k in env if k.startswith("TONGXIN_")} == {"TONGXIN_TOKEN_SECRET"}
    assert env["SOMETHING_ELSE"] == "kept"


@pytest.mark.parametrize(("options", "present", "absent"), [
    ({}, ["--no-demo", "--host 127.0.0.1"], ["--redis", "--adaptation", "--demo"]),
    ({"demo": True, "redis_url": "redis://127.0.0.1:1/0"},
     ["--demo", "--redis redis://127.0.0.1:1/0"], ["--no-demo", "--adaptation"]),
    ({"adaptation": False, "media_workers": 2},
     ["--adaptation off", "--media-workers 2"], ["--redis"]),
    ({"adaptation": True}, ["--adaptation on"], []),
])
def test_node_command_line(tmp_path: Path, options: dict[str, Any], present: list[str],
                           absent: list[str]) -> None:
    node = NodeProcess(tmp_path, name="node-a", port=4321, **options)
    words = node.command()
    line = " ".join(words[1:])
    assert words[1:4] == ["-m", "signaling.cli", "serve"]
    assert "--port 4321" in line and f"--data-dir {tmp_path / 'node-a'}" in line
    for flag in present:
        assert flag in line
    for flag in absent:
        assert flag not in words
    assert node.url == "http://127.0.0.1:4321"
    assert node.log_path == tmp_path / "node-a.log"
    assert node.returncode is None


def test_redis_server_binary_is_executable() -> None:
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server on the PATH or at /usr/bin/redis-server")
    assert Path(binary).exists()


@pytest.mark.redis
def test_redis_server_starts_answers_restarts_on_its_port_and_stops(tmp_path: Path) -> None:
    require_redis_server()
    server = RedisServerProcess(directory=tmp_path / "redis")
    try:
        server.start()
        assert server.dir == tmp_path / "redis"
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert answers_ping(server.port, server.pid)
        port = server.port
        server.restart()
        assert server.port == port and answers_ping(server.port, server.pid)
        server.stop()
        assert not server.is_running() and not answers_ping(port)
    finally:
        server.close()
    assert not (tmp_path / "redis").exists()
