"""Memory stays flat under abusive clients: round after round of a connection flood, a client
that never reads, an oversized frame and an ordinary client, the node's RSS and asyncio task
count stay within a (generous) bound of what they were after warm-up, and the hub forgets every
connection. Memory store: this is about the HTTP/WebSocket edge."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable

import aiohttp
import pytest

from client.ws import SignalingClient
from signaling.appkeys import HUB
from tests.helpers.waiting import wait_until
from tests.signaling.test_abuse import masked_text_frame, raw_websocket

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.parametrize("store", ["memory"], indirect=True)]

ROUNDS = 6
WARM_UP_ROUNDS = 2
FLOOD = 80
"""WebSockets opened per round from one address (64 accepted, the rest refused)."""
RSS_GROWTH_BOUND = 48 * 1024 * 1024
"""Growth allowed after warm-up (client and server share this process; the garbage collector
and allocator keep some slack)."""
TASK_GROWTH_BOUND = 10


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def settled(condition: Callable[[], bool], what: str) -> None:
    await wait_until(condition, within=30.0, interval=0.05, what=what)


async def abuse_round(node, host: str, port: int) -> None:
    hub = node.app[HUB]
    ws_url = node.base_url.replace("http", "ws", 1) + "/ws"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as flood:
        opened = [await flood.ws_connect(ws_url, heartbeat=None) for _ in range(FLOOD)]
        for ws in opened:
            await ws.close()

    async with SignalingClient(node.base_url) as clinic:
        grant = await clinic.exchange(node.demo.clinic_token)
        loop = asyncio.get_running_loop()
        sock = await raw_websocket(host, port)
        try:
            await loop.sock_sendall(sock, masked_text_frame(json.dumps(
                {"type": "join", "credential": grant["credential"]}).encode()))
            await settled(lambda: node.demo.clinic_site_id in hub.by_participant, "joined")
            conn = hub.by_participant[node.demo.clinic_site_id]
            junk = masked_text_frame(json.dumps({"type": "ping", "x" * 450: 1}).encode())
            for _ in range(400):  # bounded; the connection is closed far sooner
                if conn.closed:
                    break
                await loop.sock_sendall(sock, junk * 100)
                await asyncio.sleep(0)
            assert conn.closed
        finally:
            sock.close()

        await clinic.connect()
        await clinic.ws.send_str("x" * (300 * 1024))  # type: ignore[union-attr]
        assert (await clinic.expect("_closed", timeout=20))["code"] == 1009

    async with SignalingClient(node.base_url) as doctor:
        await doctor.exchange(node.demo.doctor_token)
        await doctor.connect()
        await doctor.send({"type": "ping", "t": 1})
        await doctor.expect("pong")
    await settled(lambda: not hub.connections and not hub._per_address,
                  "the hub forgot every connection")


async def test_memory_and_tasks_stay_flat_under_repeated_abuse(node) -> None:
    host, port = node.base_url.removeprefix("http://").rsplit(":", 1)
    samples: list[tuple[int, int]] = []
    for _round in range(ROUNDS):
        await abuse_round(node, host, int(port))
        await asyncio.sleep(0.5)
        samples.append((rss_bytes(), len(asyncio.all_tasks())))
    print("RSS MiB / tasks per round:",
          [(round(rss / 2**20, 1), tasks) for rss, tasks in samples])
    base_rss, base_tasks = samples[WARM_UP_ROUNDS - 1]
    for rss, tasks in samples[WARM_UP_ROUNDS:]:
        assert rss - base_rss < RSS_GROWTH_BOUND, samples
        assert tasks - base_tasks <= TASK_GROWTH_BOUND, samples
