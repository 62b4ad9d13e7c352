"""A media worker process killed under a live class (`tongxin serve --media-workers 2`): its
room is placed again on a live worker, the participants get `reconnect`, build new peer
connections and exchange media again; a replacement worker starts.

The goal is "back in a session within 5 s of the kill". The figure is measured and
printed; the assertion allows 15 s, because this 2-core machine is shared with other test
runs (a loaded run measured here is in the report).
"""

from __future__ import annotations

import os
import signal
import time

import aiohttp
import pytest

from tests.faults.session_parts import exchanging, join_class, since
from tests.helpers.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

GOAL_S = 5.0
BOUND_S = 15.0
"""The goal's 5 s with slack for a shared, loaded machine."""


def socket_count(pid: int) -> int:
    """Sockets a process holds (a worker carrying a room holds its peer connections' UDP
    sockets besides the one to the node)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


async def media_health(base: str) -> dict:
    async with aiohttp.ClientSession() as http, http.get(
            base + "/readyz", timeout=aiohttp.ClientTimeout(total=10)) as resp:
        body = await resp.json()
        return dict(body.get("media") or {}) if resp.status == 200 else {}


async def test_a_killed_media_worker_s_class_is_placed_again_and_back_in_session(start_node):
    node = await start_node(media_workers=2, demo=True)
    teacher, classroom, _ = await join_class(node)
    try:
        await exchanging(teacher, classroom)
        pids = (await media_health(node.url))["pids"]
        assert len(pids) == 2
        holder = max(pids, key=socket_count)
        assert socket_count(holder) > min(socket_count(p) for p in pids), "the room's worker"

        os.kill(holder, signal.SIGKILL)
        killed = time.monotonic()
        await wait_until(lambda: teacher.reconnects and classroom.reconnects,
                         within=BOUND_S, what="reconnect sent to both participants")
        took = await exchanging(teacher, classroom, within=30)
        back_s = since(killed)
        print(f"\nmedia worker killed: back in session exchanging media {back_s:.2f} s after "
              f"the kill (goal {GOAL_S:g} s)")
        assert back_s <= BOUND_S, f"media back only after {back_s:.1f} s"
        assert took >= 0
        assert not teacher.offer_errors and not classroom.offer_errors
        health = {}

        async def replaced() -> bool:
            nonlocal health
            health = await media_health(node.url)
            return health.get("alive") == 2 and holder not in health.get("pids", [])
        await wait_until(replaced, within=60, what="a replacement worker")
        assert health["rooms"] == 1
    finally:
        await teacher.close()
        await classroom.close()
