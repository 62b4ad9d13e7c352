"""The weak-link lab: an impaired link between two network namespaces, for tests and benchmarks.

Three namespaces per lab, named `txlab-<owner pid>-<n>-srv|rtr|cli`, joined by two veth pairs:

    srv: srv0 10.77.0.1/30 --- rs 10.77.0.2/30 :rtr: rc 10.77.0.5/30 --- cli0 10.77.0.6/30 :cli

The router namespace `rtr` forwards between the two and is where the link is impaired: `tc tbf`
on `rc`'s egress caps the down direction (server -> client) and on `rs`'s the up direction,
with a queue of `queue_ms` (the kernel here has no netem: delay comes only from queueing), and
an nftables forward chain drops at random (`numgen random mod 1000 < N drop`) or everything
(a cut). The endpoints stay untouched, as behind a real network: their sockets see neither a
local qdisc's back-pressure nor EPERM from a local drop. Nothing is routed outside: no
namespace has a default route or a link to the host's namespace, and the host is unchanged.

How the link behaves (caps, loss, cuts, the named profiles) is `bench.lab.linkprofile`.
Run programs inside with `ip netns exec` (`WeakLink.command`, `run`, `popen`). Cleanup is
idempotent and always happens: on `close` (context exit, also after an exception), at
interpreter exit, and for a crashed run's leftovers (namespaces whose owner pid is gone) when
the next lab opens. Requires root, iproute2 and nftables: `lab_available()` says why not.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import enum
import functools
import itertools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any

from bench.lab.linkprofile import UNIMPAIRED, Direction, LinkState, Profile
from bench.processes import stop_popen

LAB_PREFIX = "txlab-"
"""Every namespace the lab creates starts with this, then the owner's pid."""
SERVER_IP = "10.77.0.1"
"""The server side's address (relay, teacher)."""
CLIENT_IP = "10.77.0.6"
"""The client side's address (the classroom behind the weak link)."""
NFT_TABLE = "tongxin_lab"
"""The nftables table (in the router namespace only)."""
COMMAND_TIMEOUT_S = 10.0
"""Seconds any one `ip`/`tc`/`nft` command may take."""
STOP_TIMEOUT_S = 2.0
"""Seconds a process inside the lab has to exit after SIGTERM (and then SIGKILL) when the lab
closes."""

_SERVER_IF, _ROUTER_SERVER_IF, _ROUTER_CLIENT_IF, _CLIENT_IF = "srv0", "rs", "rc", "cli0"
_MTU_FRAME = 1514
_lab_numbers = itertools.count()


class LabError(RuntimeError):
    """A lab command failed; the message names the command and its error output."""


class Side(enum.StrEnum):
    """An end of the link, where programs run."""

    SERVER = "server"
    CLIENT = "client"


def tbf_burst_bytes(kbps: float) -> int:
    """Bucket size for a cap: 10 ms of traffic, but at least two full frames."""
    return max(2 * _MTU_FRAME, int(kbps * 1000 / 8 * 0.010))


def tbf_qdisc(kbps: float, queue_ms: float) -> list[str]:
    """The `tc qdisc` arguments of a `kbps` cap whose queue holds `queue_ms` of traffic."""
    burst = str(tbf_burst_bytes(kbps))
    return ["tbf", "rate", f"{kbps:g}kbit", "burst", burst, "latency", f"{queue_ms:g}ms"]


def nft_script(state: LinkState) -> str:
    """The nftables transaction that sets the router's drops for `state` (atomic, idempotent)."""
    lines = [
        f"add table inet {NFT_TABLE}",
        f"add chain inet {NFT_TABLE} forward "
        "{ type filter hook forward priority 0 ; policy accept ; }",
        f"flush chain inet {NFT_TABLE} forward",
    ]
    for direction, (iif, oif) in (
        (Direction.DOWN, (_ROUTER_SERVER_IF, _ROUTER_CLIENT_IF)),
        (Direction.UP, (_ROUTER_CLIENT_IF, _ROUTER_SERVER_IF)),
    ):
        match = f'add rule inet {NFT_TABLE} forward iifname "{iif}" oifname "{oif}"'
        permille = round(state.loss(direction) * 10)
        if state.cut:
            lines.append(f"{match} counter drop")
        elif permille >= 1000:
            lines.append(f"{match} counter drop")
        elif permille > 0:
            lines.append(f"{match} numgen random mod 1000 < {permille} counter drop")
    return "\n".join(lines) + "\n"


def _run(argv: Sequence[str], *, stdin: str | None = None, check: bool = True) -> str:
    """Run one lab command; its stdout, or LabError with its stderr."""
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"{' '.join(argv)}: {exc}") from exc
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def lab_namespaces() -> list[str]:
    """Every namespace with the lab prefix on this machine (any owner)."""
    try:
        listing = _run(["ip", "netns", "list"])
    except LabError:
        return []
    names = (line.split()[0] for line in listing.splitlines() if line.strip())
    return [name for name in names if name.startswith(LAB_PREFIX)]


def _owner_pid(namespace: str) -> int | None:
    head = namespace[len(LAB_PREFIX) :].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def cleanup_leftovers() -> list[str]:
    """Delete lab namespaces whose owner process is gone (a crashed or killed run); the names
    deleted. Labs of live processes, including other test runs at the same time, are kept."""
    removed = []
    for namespace in lab_namespaces():
        pid = _owner_pid(namespace)
        if pid is None or _alive(pid):
            continue
        with contextlib.suppress(LabError):
            _run(["ip", "netns", "del", namespace])
            removed.append(namespace)
    return removed


@functools.cache
def lab_available() -> tuple[bool, str]:
    """Whether this machine can build the lab, and why not: root, the tools, and a real try of
    a namespace with a veth, a tbf qdisc, an nft numgen rule and `ip netns exec`."""
    if not sys.platform.startswith("linux"):
        return False, "the weak-link lab needs Linux network namespaces"
    if os.geteuid() != 0:
        return False, "the weak-link lab needs root (network namespaces, tc, nft)"
    for tool, package in (("ip", "iproute2"), ("tc", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return False, f"the weak-link lab needs `{tool}` (Debian package {package})"
    namespace = f"{LAB_PREFIX}{os.getpid()}-probe"
    steps: list[tuple[list[str], str | None]] = [
        (["ip", "netns", "add", namespace], None),
        (
            [
                "ip",
                "-n",
                namespace,
                "link",
                "add",
                "name",
                "p0",
                "type",
                "veth",
                "peer",
                "name",
                "p1",
            ],
            None,
        ),
        (
            ["tc", "-n", namespace, "qdisc", "add", "dev", "p0", "root", *tbf_qdisc(1000, 50)],
            None,
        ),
        (["ip", "netns", "exec", namespace, "nft", "-f", "-"], nft_script(LinkState(0, 0, 5, 5))),
        (["ip", "netns", "exec", namespace, "true"], None),
    ]
    try:
        for argv, stdin in steps:
            _run(argv, stdin=stdin)
    except LabError as exc:
        return False, f"the weak-link lab cannot run here: {exc}"
    finally:
        with contextlib.suppress(LabError):
            _run(["ip", "netns", "del", namespace], check=False)
    return True, "root, iproute2 and nftables with tbf and numgen work"


class WeakLink:
    """One lab: open it (or enter it, sync or async), impair it, run programs in it, close it."""

    def __init__(self, profile: Profile | None = None) -> None:
        self.profile = profile
        base = f"{LAB_PREFIX}{os.getpid()}-{next(_lab_numbers)}"
        self.server_ns = f"{base}-srv"
        self.router_ns = f"{base}-rtr"
        self.client_ns = f"{base}-cli"
        self.state = UNIMPAIRED
        self._shaped: dict[Direction, bool] = {Direction.DOWN: False, Direction.UP: False}
        self._processes: list[subprocess.Popen[Any]] = []
        self._open = False

    @property
    def namespaces(self) -> tuple[str, str, str]:
        """The server, router and client namespaces."""
        return (self.server_ns, self.router_ns, self.client_ns)

    def namespace(self, side: Side) -> str:
        """The namespace of `side`."""
        return self.server_ns if side is Side.SERVER else self.client_ns

    # -- life cycle ------------------------------------------------------------------------

    def open(self) -> WeakLink:
        """Build the namespaces and links and apply the profile's first state."""
        if self._open:
            return self
        cleanup_leftovers()
        atexit.register(self.close)
        self._open = True
        try:
            self._build()
            self.apply(self.profile.state if self.profile is not None else UNIMPAIRED)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop what runs inside and delete the namespaces (with their veths and nft table).
        Idempotent; safe after a failed `open`."""
        if not self._open:
            return
        self._open = False
        atexit.unregister(self.close)
        for process in self._processes:
            stop_popen(process, STOP_TIMEOUT_S)
        self._processes.clear()
        for namespace in self.namespaces:
            for pid in self._pids_in(namespace):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
        for namespace in self.namespaces:
            with contextlib.suppress(LabError):
                _run(["ip", "netns", "del", namespace], check=False)

    def __enter__(self) -> WeakLink:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> WeakLink:
        return await asyncio.to_thread(self.open)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.shield(asyncio.to_thread(self.close))

    def _build(self) -> None:
        s, r, c = self.namespaces
        for namespace in self.namespaces:
            _run(["ip", "netns", "add", namespace])
        # Each veth is created straight inside its namespaces: the host never sees it.
        for end, end_ns, peer in (
            (_SERVER_IF, s, _ROUTER_SERVER_IF),
            (_CLIENT_IF, c, _ROUTER_CLIENT_IF),
        ):
            veth = ["ip", "link", "add", "name", end, "netns", end_ns, "type", "veth"]
            _run([*veth, "peer", "name", peer, "netns", r])
        for namespace, interface, address in (
            (s, _SERVER_IF, f"{SERVER_IP}/30"),
            (r, _ROUTER_SERVER_IF, "10.77.0.2/30"),
            (r, _ROUTER_CLIENT_IF, "10.77.0.5/30"),
            (c, _CLIENT_IF, f"{CLIENT_IP}/30"),
        ):
            _run(["ip", "-n", namespace, "addr", "add", address, "dev", interface])
            _run(["ip", "-n", namespace, "link", "set", interface, "up"])
        for namespace in self.namespaces:
            _run(["ip", "-n", namespace, "link", "set", "lo", "up"])
        _run(["ip", "-n", s, "route", "add", "10.77.0.4/30", "via", "10.77.0.2"])
        _run(["ip", "-n", c, "route", "add", "10.77.0.0/30", "via", "10.77.0.5"])
        _run(["ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1"])

    def _pids_in(self, namespace: str) -> list[int]:
        try:
            listing = _run(["ip", "netns", "pids", namespace])
        except LabError:
            return []
        return [int(pid) for pid in listing.split() if pid.isdigit() and int(pid) != os.getpid()]

    # -- impairments -----------------------------------------------------------------------

    def apply(self, state: LinkState) -> None:
        """Make the link behave as `state` (on the fly: flows keep running)."""
        self._require_open()
        for direction in Direction:
            self._shape(direction, state.rate(direction), state.queue_ms)
        _run(["ip", "netns", "exec", self.router_ns, "nft", "-f", "-"], stdin=nft_script(state))
        self.state = state

    def set_rate(self, direction: Direction, kbps: float | None) -> None:
        """Cap `direction` at `kbps` (None: no cap)."""
        if direction is Direction.DOWN:
            self.apply(replace(self.state, down_kbps=kbps))
        else:
            self.apply(replace(self.state, up_kbps=kbps))

    def set_loss(self, direction: Direction, pct: float) -> None:
        """Drop `pct` percent of `direction`'s packets at random."""
        if direction is Direction.DOWN:
            self.apply(replace(self.state, down_loss_pct=pct))
        else:
            self.apply(replace(self.state, up_loss_pct=pct))

    def cut(self) -> None:
        """Let nothing through either way."""
        self.apply(replace(self.state, cut=True))

    def restore(self) -> None:
        """End a cut (rates and loss as they were)."""
        self.apply(replace(self.state, cut=False))

    async def play(
        self,
        profile: Profile | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        """Apply `profile` (default: the lab's) now and each scheduled change at its time;
        returns after the last change. Cancel it to stop early."""
        profile = profile if profile is not None else self.profile
        if profile is None:
            return
        start = clock()
        await asyncio.to_thread(self.apply, profile.state)
        for at_s, state in profile.schedule:
            delay = start + at_s - clock()
            if delay > 0:
                await sleep(delay)
            await asyncio.to_thread(self.apply, state)

    def _shape(self, direction: Direction, kbps: float | None, queue_ms: float) -> None:
        interface = _ROUTER_CLIENT_IF if direction is Direction.DOWN else _ROUTER_SERVER_IF
        qdisc = ["tc", "-n", self.router_ns, "qdisc"]
        if kbps is None:
            if self._shaped[direction]:
                _run([*qdisc, "del", "dev", interface, "root"])
                self._shaped[direction] = False
            return
        _run([*qdisc, "replace", "dev", interface, "root", *tbf_qdisc(kbps, queue_ms)])
        self._shaped[direction] = True

    # -- programs inside -------------------------------------------------------------------

    def command(self, side: Side, argv: Sequence[str]) -> list[str]:
        """`argv` prefixed to run inside `side`'s namespace (for any subprocess API)."""
        return ["ip", "netns", "exec", self.namespace(side), *argv]

    def run(
        self,
        side: Side,
        argv: Sequence[str],
        *,
        timeout: float,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside `side` to completion (killed after `timeout`); not checked."""
        self._require_open()
        return subprocess.run(
            self.command(side, argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def popen(self, side: Side, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `argv` inside `side`; it is stopped when the lab closes, if still running."""
        self._require_open()
        process: subprocess.Popen[Any] = subprocess.Popen(self.command(side, argv), **kwargs)
        self._processes.append(process)
        return process

    def _require_open(self) -> None:
        if not self._open:
            raise LabError("the lab is not open")
