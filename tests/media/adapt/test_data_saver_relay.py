"""The data saver through the real relay: real aiortc peers over UDP on loopback, the bytes
measured where the subscriber's socket receives them (not by the relay's own meter)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from client.peer import FrameLog, PeerClient
from media.adapt.data_budget import MB
from media.errors import MediaUserError
from media.peers.aiortc_bends import _nominated_protocol, transport_of
from tests.media.relay_harness import clip_tracks, running_relay, wait_until

IP_UDP_BYTES = 28
"""What each datagram costs below DTLS (IPv4 and UDP headers): the data plan pays for it."""


class DatagramMeter:
    """Counts every datagram the client's receiving connection gets on its nominated ICE pair
    (SRTP, SRTCP, STUN, DTLS), IP and UDP headers included: what its data plan pays for."""

    def __init__(self, client: PeerClient) -> None:
        pc = client._down  # the harness's participant: its down connection
        dtls = transport_of(pc) if pc is not None else None
        nominated = _nominated_protocol(dtls) if dtls is not None else None
        assert nominated is not None, "the down connection is up"
        protocol = nominated[0]
        self.bytes = 0
        inner = protocol.datagram_received

        def counted(data: bytes, addr: tuple[Any, ...]) -> None:
            self.bytes += len(data) + IP_UDP_BYTES
            inner(data, addr)

        protocol.datagram_received = counted  # type: ignore[method-assign]


@pytest.mark.timeout(120)
async def test_a_small_budget_keeps_a_classroom_under_it_while_another_gets_full_video() -> None:
    """40 MB/h (89 kbit/s) is less than the low rung with audio: the classroom with that
    budget gets audio only (its audio goes on), what it receives stays under the budget, and
    a classroom beside it without one gets the teacher's video in full."""
    async with running_relay(0) as (service, relay):
        await service.open_room("class-1", "class")
        teacher = await relay.join("class-1", "t", "teacher")
        saver = await relay.join("class-1", "a", "assistant")
        other = await relay.join("class-1", "b", "assistant")
        await service.set_data_budget("class-1", "a", 40)
        await teacher.publish(clip_tracks(FrameLog()))
        await wait_until(
            lambda: saver.track("t", "mic").frames >= 50 and other.track("t", "camera").frames
            >= 30,
            what="audio at the saver, video at the other",
        )
        await asyncio.sleep(3.0)  # the first decisions are made
        start, audio_before = time.monotonic(), saver.track("t", "mic").frames
        room = service._local.rooms["class-1"]  # type: ignore[union-attr]
        data = room._participants["a"].downlink.data_saver
        saver_meter, other_meter = DatagramMeter(saver), DatagramMeter(other)
        metered_before = data.sent_bytes
        await asyncio.sleep(10.0)
        elapsed = time.monotonic() - start
        saver_bytes, other_bytes = saver_meter.bytes, other_meter.bytes
        metered = data.sent_bytes - metered_before
        budget_bytes = 40 * MB * elapsed / 3600
        assert saver_bytes <= budget_bytes, (saver_bytes, budget_bytes)
        assert other_bytes > 3 * budget_bytes, "without a budget the same link carries more"
        assert saver.track("t", "mic").frames - audio_before >= 40 * elapsed, "audio goes on"

        downlink = room._participants["a"].downlink
        assert downlink.adaptation.rung is not None
        assert str(downlink.adaptation.rung) in ("audio_only", "low")
        assert data.ceiling is not None and data.limiting
        # the relay's meter agrees with what the socket got (RTCP, STUN aside: a few percent)
        assert 0.85 * saver_bytes <= metered <= saver_bytes, (metered, saver_bytes)
        # the camera ran in full for its first seconds, before its cost was measured: the
        # meter counted that, and the ceiling now pays it back below the even rate
        joined_s = time.monotonic() - data.started_at
        if data.sent_bytes > 40 * MB * joined_s / 3600:
            assert data.ceiling.bps < data.ceiling.even_bps

        events: list[dict[str, Any]] = [e for _, p, e in relay.events if p == "a"]
        usage = [e for e in events if e["type"] == "data"]
        assert usage and usage[-1]["budget_mb_h"] == 40 and usage[-1]["verdict"] == "limiting"
        assert usage[-1]["used_mb"] > 0
        links = [e for e in events if e["type"] == "link"]
        assert links and links[-1]["reason"] == "data_saver", links
        assert not [e for _, p, e in relay.events if p == "b" and e["type"] == "data"
                    and e["budget_mb_h"] is not None]  # fmt: skip
        assert (await service.describe_room("class-1"))["participants"]["a"][
            "data_budget_mb_h"
        ] == 40

        with pytest.raises(MediaUserError):
            await service.set_data_budget("class-1", "a", 3)
        await service.set_data_budget("class-1", "a", None)
        assert data.budget_mb_h is None
