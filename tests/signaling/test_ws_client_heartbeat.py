"""The Python signaling client sends the heartbeat a browser sends, so a quiet participant
(`tongxin client`, `RemoteParticipant`, the benches) is not closed for silence; the answers to
its own pings are not delivered to whoever reads its frames."""

from __future__ import annotations

import asyncio

import pytest

import signaling.hub as hub_module
from client.ws import SignalingClient

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.parametrize("store", ["memory"], indirect=True)]


@pytest.fixture
def short_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the node starts: its silence watch reads the period when it starts."""
    monkeypatch.setattr(hub_module, "HEARTBEAT_S", 0.2)
    monkeypatch.setattr(hub_module, "SILENCE_LIMIT_S", 1.0)


async def test_a_quiet_client_outlives_the_silence_limit(short_heartbeat, node) -> None:
    async with SignalingClient(node.base_url) as doctor:
        await doctor.exchange(node.demo.doctor_token)
        welcome = await doctor.connect()
        assert welcome["heartbeat_s"] == 0.2
        await asyncio.sleep(3.0)  # three silence limits without a frame of our own
        assert doctor.ws is not None and not doctor.ws.closed
        await doctor.send({"type": "ping", "t": 5})
        assert (await doctor.expect("pong", timeout=10))["t"] == 5
        assert not [f for f in doctor.history if f["type"] == "pong" and f.get("t") is None]
