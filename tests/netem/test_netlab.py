"""The weak-link lab does what it says, proven with real UDP traffic between its namespaces:
rate caps per direction, random loss, rate changes on the fly, cuts, and cleanup that leaves
nothing behind (also after an exception, at exit, and after a crash)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench.lab.linkprofile import Direction, LinkState, Profile, custom_profile
from bench.lab.netlab import (
    CLIENT_IP,
    LAB_PREFIX,
    NFT_TABLE,
    SERVER_IP,
    LabError,
    Side,
    WeakLink,
    cleanup_leftovers,
    lab_namespaces,
)

pytestmark = [pytest.mark.netem, pytest.mark.usefixtures("lab_ready"), pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]
PROBE = str(Path(__file__).with_name("udp_probe.py"))
PORT = 5004
WIRE_OVERHEAD = 42
"""Ethernet (14) + IPv4 (20) + UDP (8) bytes per datagram: what tbf counts besides payload."""


def flow(
    link: WeakLink,
    direction: Direction,
    *,
    count: int,
    kbps: float,
    size: int,
    max_wait: float = 20.0,
    during: Any = None,
) -> dict[str, Any]:
    """Send `count` datagrams at `kbps` across `link` in `direction`; the receiver's report.
    `during(seconds_since_start)` is called once, halfway through sending, if given."""
    down = direction is Direction.DOWN
    receiver, sender = (Side.CLIENT, Side.SERVER) if down else (Side.SERVER, Side.CLIENT)
    target = CLIENT_IP if down else SERVER_IP
    rx = link.popen(
        receiver,
        [sys.executable, PROBE, "recv", str(PORT), "--idle", "1.0", "--max-wait", str(max_wait)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert rx.stdout is not None
    assert rx.stdout.readline().strip() == "ready"
    send = [sys.executable, PROBE, "send", target, str(PORT), "--count", str(count)]
    send += ["--kbps", str(kbps), "--size", str(size)]
    if during is None:
        tx = link.run(sender, send, timeout=60)
        assert tx.returncode == 0, tx.stderr
    else:
        process = link.popen(sender, send, stdout=subprocess.PIPE, text=True)
        time.sleep(count * size * 8 / (kbps * 1000) / 2)
        during()
        assert process.wait(timeout=60) == 0
    out, _ = rx.communicate(timeout=max_wait + 10)
    report: dict[str, Any] = json.loads(out)
    return report


def wire_kbps(arrivals: list[float], size: int) -> float:
    """Rate between the first and the last arrival, counting what tbf counts."""
    assert len(arrivals) >= 10, f"only {len(arrivals)} datagrams arrived"
    return (len(arrivals) - 1) * (size + WIRE_OVERHEAD) * 8 / (arrivals[-1] - arrivals[0]) / 1000


def host_state() -> tuple[list[str], str, str]:
    """What the host namespace shows: lab namespaces, its links, its nft tables."""
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    return lab_namespaces(), links.stdout, tables.stdout


def assert_gone(link: WeakLink) -> None:
    namespaces, links, tables = host_state()
    for namespace in link.namespaces:
        assert namespace not in namespaces
    for interface in ("srv0", "cli0", " rs@", " rc@"):
        assert interface not in links
    assert NFT_TABLE not in tables


@pytest.mark.parametrize(
    ("direction", "cap_kbps"),
    [(Direction.DOWN, 1_000), (Direction.UP, 500)],
)
def test_rate_cap_limits_each_direction_to_within_15_percent(
    direction: Direction, cap_kbps: float
) -> None:
    profile = custom_profile(1_000, 500, 0.0)
    with WeakLink(profile) as link:
        report = flow(link, direction, count=int(cap_kbps / 4), kbps=2 * cap_kbps, size=1000)
    measured = wire_kbps(report["arrivals"], 1000)
    print(f"{direction}: cap {cap_kbps} kbit/s, measured {measured:.0f} kbit/s")
    assert measured == pytest.approx(cap_kbps, rel=0.15)
    assert report["received"] < int(cap_kbps / 4) * 0.8, "the excess was dropped"


@pytest.mark.parametrize("direction", [Direction.DOWN, Direction.UP])
def test_random_loss_drops_the_set_share_of_packets(direction: Direction) -> None:
    count = 5_000
    state = (
        LinkState(down_loss_pct=5.0) if direction is Direction.DOWN else LinkState(up_loss_pct=5.0)
    )
    with WeakLink() as link:
        link.apply(state)
        report = flow(link, direction, count=count, kbps=4_000, size=200)
    loss = 1 - report["unique"] / count
    print(f"{direction}: 5% set, {loss * 100:.2f}% measured over {count} datagrams")
    # Binomial sd is 0.31% at n=5000: 3..7% is more than six of them either side.
    assert 0.03 <= loss <= 0.07


def test_loss_in_one_direction_leaves_the_other_clean() -> None:
    with WeakLink() as link:
        link.apply(LinkState(down_loss_pct=20.0))
        report = flow(link, Direction.UP, count=1_000, kbps=2_000, size=200)
    assert report["unique"] >= 995


def test_changing_the_rate_on_the_fly_takes_effect_on_a_running_flow() -> None:
    size = 1000
    changed_at: list[float] = []

    with WeakLink(custom_profile(2_000, None)) as link:

        def lower() -> None:
            link.set_rate(Direction.DOWN, 500)
            changed_at.append(time.monotonic())

        report = flow(link, Direction.DOWN, count=1_000, kbps=4_000, size=size, during=lower)
        assert link.state.down_kbps == 500
    arrivals: list[float] = report["arrivals"]
    (t,) = changed_at
    before = [a for a in arrivals if a < t - 0.05]
    after = [a for a in arrivals if a > t + 0.5]
    fast, slow = wire_kbps(before, size), wire_kbps(after, size)
    print(f"before {fast:.0f} kbit/s (cap 2000), after {slow:.0f} kbit/s (cap 500)")
    assert fast == pytest.approx(2_000, rel=0.15)
    assert slow == pytest.approx(500, rel=0.15)


def test_a_cut_link_passes_nothing_and_passes_again_once_restored() -> None:
    with WeakLink() as link:
        link.cut()
        # 100 datagrams take 0.5 s to send; the receivers listen for 1.5 s.
        cut = flow(link, Direction.DOWN, count=100, kbps=800, size=500, max_wait=1.5)
        up_cut = flow(link, Direction.UP, count=100, kbps=800, size=500, max_wait=1.5)
        link.restore()
        back = flow(link, Direction.DOWN, count=200, kbps=800, size=500)
    assert cut["received"] == 0 and up_cut["received"] == 0
    assert back["unique"] >= 198


def test_namespaces_reach_each_other_and_nothing_else() -> None:
    with WeakLink() as link:
        routes = link.run(Side.CLIENT, ["ip", "route"], timeout=10).stdout
        links = link.run(Side.CLIENT, ["ip", "-o", "link"], timeout=10).stdout
        addresses = link.run(Side.SERVER, ["ip", "-o", "-4", "addr"], timeout=10).stdout
    assert "default" not in routes
    assert sorted(line.split(":")[1].strip().split("@")[0] for line in links.splitlines()) == [
        "cli0",
        "lo",
    ]
    assert f"{SERVER_IP}/30" in addresses


def test_close_removes_namespaces_veths_tables_and_stops_processes() -> None:
    link = WeakLink(custom_profile(500, 256, 3.0))
    with link:
        assert set(link.namespaces) <= set(lab_namespaces())
        sleeper = link.popen(Side.CLIENT, ["sleep", "30"])
    assert sleeper.poll() is not None
    assert_gone(link)
    link.close()  # idempotent
    with pytest.raises(LabError):
        link.cut()


def test_cleanup_happens_after_an_exception_inside_the_context() -> None:
    link = WeakLink()
    with pytest.raises(RuntimeError, match="test failed"), link:
        link.cut()
        raise RuntimeError("test failed")
    assert_gone(link)


async def test_async_context_and_play_apply_the_schedule_in_order() -> None:
    applied: list[LinkState] = []
    now = [0.0]

    async def fake_sleep(seconds: float) -> None:
        now[0] += seconds

    first, second = LinkState(1_000, 1_000), LinkState(150, 150, cut=True)
    profile = Profile("test", first, ((5.0, second), (7.0, first)))
    async with WeakLink() as link:
        original = link.apply

        def recording(state: LinkState) -> None:
            original(state)
            applied.append(state)

        link.apply = recording  # type: ignore[method-assign]
        await link.play(profile, clock=lambda: now[0], sleep=fake_sleep)
        assert link.state == first
    assert applied == [first, second, first] and now[0] == 7.0
    assert_gone(link)


CHILD = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # not inherited ignored (CI, nohup &)
sys.path.insert(0, {root!r})
from bench.lab.netlab import WeakLink
link = WeakLink().open()
print(" ".join(link.namespaces), flush=True)
if sys.argv[1] == "exit":
    sys.exit(0)
time.sleep(30)  # SIGINT: KeyboardInterrupt unwinds and atexit runs; SIGKILL: nothing runs
"""


@pytest.mark.parametrize(
    ("how", "left_behind"),
    [("exit", False), ("interrupt", False), ("kill", True)],
)
def test_labs_of_exited_interrupted_and_killed_processes_are_cleaned_up(
    how: str, left_behind: bool
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(root=str(ROOT)), how],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # the interrupted child's KeyboardInterrupt traceback
        text=True,
    )
    try:
        assert child.stdout is not None
        names = child.stdout.readline().split()
        assert len(names) == 3 and all(n.startswith(f"{LAB_PREFIX}{child.pid}-") for n in names)
        if how == "interrupt":
            child.send_signal(signal.SIGINT)
        elif how == "kill":
            child.kill()
        child.wait(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=20)
    remaining = set(names) & set(lab_namespaces())
    assert bool(remaining) is left_behind  # atexit ran, unless the process was killed
    removed = cleanup_leftovers()  # what the next lab does first
    assert set(names) <= set(removed) or not left_behind
    assert not set(names) & set(lab_namespaces())


def test_leftover_cleanup_spares_labs_of_live_processes() -> None:
    dead = f"{LAB_PREFIX}99999999-0-srv"
    subprocess.run(["ip", "netns", "add", dead], check=True, capture_output=True)
    try:
        with WeakLink() as link:  # opening cleans leftovers first
            assert dead not in lab_namespaces()
            assert cleanup_leftovers() == []
            assert set(link.namespaces) <= set(lab_namespaces())
            assert os.getpid() == int(link.server_ns.split("-")[1])
    finally:
        subprocess.run(["ip", "netns", "del", dead], capture_output=True)
