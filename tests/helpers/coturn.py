"""`CoturnProcess`: Debian's coturn (`turnserver`) on a free port, owned by a test.

It authenticates with the TURN REST API shared secret (`use-auth-secret`), as deploy/ configures
it, keeps its pid file, SQLite file and log in its own temporary directory, and is ready once it
answers a STUN Binding request on its UDP port.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from bench.processes import ServerProcess, free_port

READY_TIMEOUT = 15.0
"""Seconds a starting coturn has to answer STUN Binding before the start counts as failed."""

STOP_TIMEOUT = 10.0
"""Seconds a stopping coturn has to exit after SIGTERM before it is killed."""

STUN_MAGIC_COOKIE = 0x2112A442


def turnserver_binary() -> str | None:
    """Path of coturn's `turnserver`, or None when it is not installed."""
    return shutil.which("turnserver")


def require_turnserver() -> None:
    """Skip the calling test when `turnserver` is missing; fail instead when `CI=true`."""
    if turnserver_binary() is not None:
        return
    reason = "coturn's turnserver is not installed (apt-get install coturn, or make system-deps)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the TURN tests", pytrace=False)
    pytest.skip(reason)


def answers_stun_binding(ip: str, port: int, timeout: float = 0.3) -> bool:
    """True when a STUN Binding request to `ip`:`port` over UDP gets a success response."""
    transaction_id = secrets.token_bytes(12)
    request = struct.pack("!HHI", 0x0001, 0, STUN_MAGIC_COOKIE) + transaction_id
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(request, (ip, port))
            data, _ = sock.recvfrom(2048)
        except OSError:  # timeout, or ICMP port unreachable surfacing as ECONNREFUSED
            return False
    return len(data) >= 20 and data[0:2] == b"\x01\x01" and data[8:20] == transaction_id


def relay_port_window() -> tuple[int, int]:
    """A random window of 100 relay ports: clashes with other tests' sockets become unlikely,
    and coturn skips a port that is taken anyway."""
    low = 40000 + secrets.randbelow(200) * 100
    return low, low + 99


class CoturnProcess(ServerProcess):
    """One `turnserver` process; see the module docstring."""

    stop_timeout = STOP_TIMEOUT

    def __init__(
        self,
        *,
        secret: str,
        listen_ip: str = "127.0.0.1",
        relay_ip: str | None = None,
        realm: str = "tongxin.test",
        allow_loopback_peers: bool = True,
        extra_config: Sequence[str] = (),
        config_file: Path | None = None,
    ) -> None:
        found = turnserver_binary()
        if found is None:
            raise FileNotFoundError("turnserver (coturn) is not installed")
        self.binary = found
        self.secret = secret
        self.listen_ip = listen_ip
        self.relay_ip = relay_ip or listen_ip
        self.realm = realm
        self.allow_loopback_peers = allow_loopback_peers
        self.extra_config = tuple(extra_config)
        self.config_file = config_file
        self.port = free_port()
        super().__init__("tongxin-coturn-")

    @property
    def turn_url(self) -> str:
        return f"turn:{self.listen_ip}:{self.port}?transport=udp"

    @property
    def log_path(self) -> Path:
        return self.dir / "turnserver.log"

    def config_text(self) -> str:
        """The configuration file: shared-secret auth, UDP only, no CLI, files in `dir`."""
        low, high = relay_port_window()
        lines = [
            f"listening-ip={self.listen_ip}",
            f"relay-ip={self.relay_ip}",
            f"listening-port={self.port}",
            f"min-port={low}",
            f"max-port={high}",
            "use-auth-secret",
            f"static-auth-secret={self.secret}",
            f"realm={self.realm}",
            "fingerprint",
            "no-cli",
            "no-tls",
            "no-dtls",
            "no-tcp-relay",
            "no-multicast-peers",
            "no-software-attribute",
            f"pidfile={self.dir / 'turnserver.pid'}",
            f"userdb={self.dir / 'turndb'}",
            "log-file=stdout",
            "simple-log",
            "verbose",
        ]
        if self.allow_loopback_peers:
            lines.append("allow-loopback-peers")
        lines.extend(self.extra_config)
        return "\n".join(lines) + "\n"

    def command(self) -> list[str]:
        """`turnserver -c FILE`, plus the overrides that place it here when FILE is deploy/'s."""
        if self.config_file is None:
            config = self.dir / "turnserver.conf"
            config.write_text(self.config_text())
            return [self.binary, "-c", str(config)]
        low, high = relay_port_window()
        return [
            self.binary, "-c", str(self.config_file),
            "--listening-ip", self.listen_ip,
            "--relay-ip", self.relay_ip,
            "--listening-port", str(self.port),
            "--min-port", str(low),
            "--max-port", str(high),
            f"--static-auth-secret={self.secret}",
            "--pidfile", str(self.dir / "turnserver.pid"),
            "--userdb", str(self.dir / "turndb"),
            *self.extra_config,
        ]  # fmt: skip

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Start coturn and return once it answers STUN (a taken port is replaced twice)."""
        if self.is_running():
            return
        for _attempt in range(3):
            if self._start_once(timeout):
                return
            self.port = free_port()
        raise RuntimeError(f"turnserver did not start: {self.log_tail()}")

    def _start_once(self, timeout: float) -> bool:
        self.log_path.unlink(missing_ok=True)
        # coturn logs to stdout (as in containers); keep it in log_path
        with open(self.log_path, "ab") as log:
            self._spawn(self.command(), stdout=log, stderr=subprocess.STDOUT)
        if self._wait_until_ready(lambda: answers_stun_binding(self.listen_ip, self.port),
                                  timeout):
            return True
        self.stop()
        return False
