"""The down connection has one offerer: offers are serialized, changes made while an offer
waits are coalesced into the next one, and m-lines are reused."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiortc import RTCSessionDescription
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from media.forward.forwarder import InboundTrack
from media.peers.aiortc_bends import bind_host_candidates
from media.peers.config import PeerConfig
from media.peers.downlink import Downlink
from tests.media.relay_harness import wait_until

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)


def track(participant: str, source: str) -> InboundTrack:
    codec = OPUS if source == "mic" else VP8
    return InboundTrack(participant, source, [codec], send_pli=lambda ssrc: None)


class Subscriber:
    """A plain aiortc peer answering the downlink's offers when told to."""

    def __init__(self) -> None:
        self.config = PeerConfig()
        self.pc = self.config.new_peer_connection()

    async def answer(self, offer: dict[str, Any]) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        answer = await self.pc.createAnswer()
        bind_host_candidates(self.pc, self.config.udp_host)
        await self.pc.setLocalDescription(answer)
        return self.pc.localDescription.sdp


def mlines(sdp: str) -> list[str]:
    """'video sendonly' per m-line of an SDP."""
    out: list[str] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            out.append(line[2:].split()[0])
        elif line in ("a=sendonly", "a=inactive", "a=recvonly", "a=sendrecv") and out:
            out[-1] += " " + line[2:]
    return out


@pytest.mark.timeout(60)
async def test_offers_wait_for_answers_and_changes_coalesce_and_mlines_are_reused() -> None:
    events: list[dict[str, Any]] = []
    downlink = Downlink("p", PeerConfig(), events.append)
    subscriber = Subscriber()
    offers = lambda: [e for e in events if e["type"] == "offer"]  # noqa: E731
    a, b, c = track("a", "camera"), track("b", "camera"), track("c", "camera")
    mic = track("a", "mic")
    try:
        downlink.set_tracks([a])
        await wait_until(lambda: len(offers()) == 1, what="the first offer")
        downlink.set_tracks([a, b])
        downlink.set_tracks([a, b, c, mic])
        downlink.set_tracks([a, c, mic])
        await asyncio.sleep(0.3)
        assert len(offers()) == 1, "no new offer before the answer"

        await downlink.apply_answer(await subscriber.answer(offers()[0]))
        await wait_until(lambda: len(offers()) == 2, what="the coalesced offer")
        second = offers()[1]
        assert sorted(t["participant"] + ":" + t["source"] for t in second["tracks"].values()) == [
            "a:camera", "a:mic", "c:camera",
        ]
        assert mlines(second["sdp"]) == ["video sendonly", "video sendonly", "audio sendonly"]

        await downlink.apply_answer(await subscriber.answer(second))
        downlink.set_tracks([c, mic])
        await wait_until(lambda: len(offers()) == 3, what="the offer without a")
        assert mlines(offers()[2]["sdp"]) == ["video inactive", "video sendonly", "audio sendonly"]

        await downlink.apply_answer(await subscriber.answer(offers()[2]))
        downlink.set_tracks([b, c, mic])
        await wait_until(lambda: len(offers()) == 4, what="the offer with b")
        fourth = offers()[3]
        assert mlines(fourth["sdp"]) == ["video sendonly", "video sendonly", "audio sendonly"]
        assert fourth["tracks"]["0"] == {"participant": "b", "source": "camera"}, "m-line reused"
        assert {e["connection"] for e in offers()} == {0}

        with pytest.raises(Exception, match="answer"):
            await downlink.apply_answer("v=0\r\nnot an answer\r\n")
    finally:
        await downlink.close()
        await subscriber.pc.close()


async def test_the_adaptation_drops_the_paced_video_of_the_connection_it_has_now() -> None:
    """Each peer connection gets a new pacer: the adaptation's drop reaches the current one
    (bound to the first, it dropped nothing on a renewed connection)."""
    downlink = Downlink("p", PeerConfig(), lambda event: None)
    try:
        downlink._open_connection()
        pacer = downlink._pacer
        pacer.connect(lambda data: None)
        pacer.set_rate(100_000)
        for _ in range(10):
            pacer.video.send(b"\x80" + b"\x00" * 999)
        assert pacer.queued_bytes > 0
        drop = downlink.adaptation._drop_paced
        assert drop is not None
        drop()
        assert pacer.queued_bytes == 0
    finally:
        await downlink.close()
