"""`tongxin serve` as a user runs it: starts, prints its URL, answers, stops cleanly on a signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from bench.processes import free_port

TONGXIN = [sys.executable, "-m", "signaling.cli"]


def wait_for_url(proc: subprocess.Popen, url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"tongxin serve exited early with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")


@pytest.mark.parametrize(
    ("args", "env", "word"),
    [
        (["serve", "--port", "notaport"], {}, "port"),
        (["serve", "--media-workers", "-3"], {}, "media-workers"),
        (["serve"], {"TONGXIN_PORT": "99999"}, "port"),
        (["serve", "--unknown-flag"], {}, "--unknown-flag"),
        (["nonsense"], {}, "nonsense"),
    ],
)
def test_bad_flag_or_value_exits_2_with_one_clear_line(args, env, word):
    proc = subprocess.run(TONGXIN + args, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})
    assert proc.returncode == 2
    error_lines = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(error_lines) == 1, proc.stderr
    assert word in error_lines[0]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_prints_url_answers_and_exits_0_on_signal(sig, tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [*TONGXIN, "serve", "--port", str(port), "--media-workers", "1",
         "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for_url(proc, f"http://127.0.0.1:{port}/healthz")
        ready = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status == 200
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"http://127.0.0.1:{port}/" in out
    assert "eyJ" not in err, "a token leaked into the log"


@pytest.mark.timeout(180)
def test_client_joins_with_a_printed_link_and_shutdown_sends_going_away(tmp_path):
    import asyncio
    import json as jsonlib
    import re

    import aiohttp

    port = free_port()
    proc = subprocess.Popen(
        [*TONGXIN, "serve", "--port", str(port), "--media-workers", "1",
         "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for_url(proc, f"http://127.0.0.1:{port}/healthz")
        banner = ""
        while "Ctrl+C" not in banner:
            banner += proc.stdout.readline()  # type: ignore[union-attr]
        links = re.findall(rf"http://127\.0\.0\.1:{port}/join/\S+", banner)
        teacher, classroom = links[0], links[1]
        client = subprocess.run(
            [*TONGXIN, "client", classroom, "--seconds", "1"],
            capture_output=True, text=True, timeout=90)
        assert client.returncode == 0, client.stderr
        assert jsonlib.loads(client.stdout)["role"] == "assistant"

        async def hold_socket_through_shutdown() -> int | None:
            async with aiohttp.ClientSession() as http:
                base = f"http://127.0.0.1:{port}"
                token = teacher.rsplit("/", 1)[1]
                async with http.post(base + "/api/v1/session", json={"token": token}) as r:
                    credential = (await r.json())["credential"]
                async with http.ws_connect(base.replace("http", "ws") + "/ws") as ws:
                    await ws.send_json({"type": "join", "credential": credential})
                    await ws.receive(timeout=10)  # welcome
                    proc.send_signal(signal.SIGTERM)
                    while True:
                        msg = await ws.receive(timeout=20)
                        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                            return ws.close_code

        assert asyncio.run(hold_socket_through_shutdown()) == 1001
        proc.communicate(timeout=30)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
