"""Transport-cc in SDP: what a publisher's offer has, and the answer lines that accept it."""

from __future__ import annotations

import pytest

from media.peers.transport_cc_sdp import (
    TransportCcOffer,
    answer_transport_cc,
    transport_cc_ext_id,
    transport_cc_offer,
)
from media.rtp.twcc import TRANSPORT_CC_URI

TWCC = f"a=extmap:3 {TRANSPORT_CC_URI}"

# as Chromium offers (trimmed): transport-cc on audio and video, RTX without feedback
OFFER = "\r\n".join([
    "v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0 1 2",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63", "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level", TWCC,
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid", "a=sendonly",
    "a=rtpmap:111 opus/48000/2", "a=rtcp-fb:111 transport-cc", "a=fmtp:111 minptime=10",
    "a=rtpmap:63 red/48000/2",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 98", "a=mid:1",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", TWCC,
    "a=sendonly",
    "a=rtpmap:96 VP8/90000", "a=rtcp-fb:96 goog-remb", "a=rtcp-fb:96 transport-cc",
    "a=rtcp-fb:96 nack", "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96",
    "a=rtpmap:98 H264/90000", "a=rtcp-fb:98 transport-cc",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "a=mid:2",
    "",
])

# as aiortc answers: its own extensions, one codec (+ RTX) per m-line, goog-remb kept
ANSWER = "\r\n".join([
    "v=0", "o=- 3 4 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0 1 2",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level", "a=recvonly",
    "a=rtpmap:111 opus/48000/2", "a=fmtp:111 useinbandfec=1",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97", "a=mid:1",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time", "a=recvonly",
    "a=rtpmap:96 VP8/90000", "a=rtcp-fb:96 nack", "a=rtcp-fb:96 goog-remb",
    "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "a=mid:2",
    "",
])


def test_the_offer_names_the_extension_and_the_payload_types_with_feedback() -> None:
    offers = transport_cc_offer(OFFER)
    assert offers == {
        "0": TransportCcOffer(3, frozenset({111})),
        "1": TransportCcOffer(3, frozenset({96, 98})),
    }
    assert transport_cc_ext_id(offers) == 3


@pytest.mark.parametrize(
    ("offer", "expected"),
    [
        (OFFER.replace(TWCC + "\r\n", ""), {}),
        # feedback without the extension: nothing to number packets with
        (OFFER.replace(TWCC + "\r\n", "", 1), {"1": TransportCcOffer(3, frozenset({96, 98}))}),
    ],
)
def test_offers_without_the_extension(offer: str, expected: dict[str, TransportCcOffer]) -> None:
    assert transport_cc_offer(offer) == expected


def test_the_answer_gets_the_extension_and_feedback_for_answered_payload_types() -> None:
    answer = answer_transport_cc(ANSWER, transport_cc_offer(OFFER))
    lines = answer.split("\r\n")
    audio = lines[lines.index("a=mid:0") : lines.index("a=mid:1")]
    video = lines[lines.index("a=mid:1") : lines.index("a=mid:2")]
    assert TWCC in audio and TWCC in video
    assert audio.index(TWCC) == audio.index(
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level") + 1
    assert "a=rtcp-fb:111 transport-cc" in audio
    assert "a=rtcp-fb:96 transport-cc" in video
    assert not any(line.startswith(("a=rtcp-fb:97", "a=rtcp-fb:98")) for line in video)
    assert "a=rtcp-fb:96 goog-remb" in video  # kept: the publisher cap's REMB still applies
    assert answer.endswith("\r\n")
    assert lines[lines.index("a=mid:2") - 1].startswith("m=application")
    assert answer_transport_cc(answer, transport_cc_offer(OFFER)) == answer  # idempotent


def test_rejected_and_unoffered_sections_are_left_alone() -> None:
    rejected = ANSWER.replace("m=video 9 ", "m=video 0 ")
    answer = answer_transport_cc(rejected, transport_cc_offer(OFFER))
    assert answer.count(TRANSPORT_CC_URI) == 1  # audio only
    assert answer_transport_cc(ANSWER, {}) == ANSWER
