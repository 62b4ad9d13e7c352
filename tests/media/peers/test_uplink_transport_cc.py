"""The uplink answers a publisher's transport-cc (through aiortc's real answer) and feeds it,
unless the peer config turns it off."""

from __future__ import annotations

import re

import pytest
from aiortc import AudioStreamTrack, RTCPeerConnection, VideoStreamTrack

from media.peers.config import PeerConfig
from media.peers.uplink import Uplink
from media.rtp.twcc import TRANSPORT_CC_URI

TWCC_ID = 5


def with_transport_cc(sdp: str) -> str:
    """A browser-like offer: the extension (id 5) and `transport-cc` feedback on every media
    payload type (not RTX), as Chromium offers them."""
    out: list[str] = []
    for line in sdp.splitlines():
        out.append(line)
        if line.startswith("a=mid:"):
            out.append(f"a=extmap:{TWCC_ID} {TRANSPORT_CC_URI}")
        match = re.match(r"a=rtpmap:(\d+) (\S+)/", line)
        if match and match.group(2) != "rtx":
            out.append(f"a=rtcp-fb:{match.group(1)} transport-cc")
    return "\r\n".join(out) + "\r\n"


def sections(sdp: str) -> list[str]:
    return ["m=" + part for part in sdp.split("\r\nm=")[1:]]


@pytest.mark.parametrize("enabled", [True, False])
async def test_the_answer_takes_transport_cc_when_enabled(enabled: bool) -> None:
    publisher = RTCPeerConnection()
    publisher.addTransceiver(AudioStreamTrack(), direction="sendonly")
    publisher.addTransceiver(VideoStreamTrack(), direction="sendonly")
    await publisher.setLocalDescription(await publisher.createOffer())
    offer = with_transport_cc(publisher.localDescription.sdp)
    uplink = Uplink("t", PeerConfig(transport_cc=enabled), lambda: None, lambda state: None)
    try:
        answer = await uplink.handle_offer(offer, {"0": "mic", "1": "camera"})
        has_feedback = uplink.twcc is not None
    finally:
        await uplink.close()
        await publisher.close()
    assert has_feedback is enabled
    for section in sections(answer):
        answered = section.splitlines()[0].split()[3:]  # the m-line's payload types
        extmap = f"a=extmap:{TWCC_ID} {TRANSPORT_CC_URI}" in section
        feedback = [pt for pt in answered if f"a=rtcp-fb:{pt} transport-cc" in section]
        if enabled:
            assert extmap, section
            assert feedback == [answered[0]], "the forwarded codec, not its RTX"
        else:
            assert not extmap and not feedback
    assert uplink.twcc is None, "closed with the connection"
