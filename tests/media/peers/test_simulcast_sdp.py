"""Simulcast in SDP: the layers a publisher's offer sends, and the answer that accepts them."""

from __future__ import annotations

import pytest

from media.peers.simulcast_sdp import (
    REPAIRED_RID_URI,
    RID_URI,
    SimulcastOffer,
    answer_simulcast,
    send_rids,
    simulcast_offer,
)

OFFER = "\r\n".join([
    "v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0 1 2",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=sendonly",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97", "a=mid:1",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    f"a=extmap:10 {RID_URI}", f"a=extmap:11 {REPAIRED_RID_URI}", "a=sendonly",
    "a=rid:q send", "a=rid:h send", "a=rid:f send", "a=simulcast:send q;h;~f",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97", "a=mid:2",
    f"a=extmap:10 {RID_URI}", "a=sendonly",
    "",
])

ANSWER = "\r\n".join([
    "v=0", "o=- 3 4 IN IP4 127.0.0.1", "s=-", "t=0 0",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=recvonly",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97", "a=mid:1",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid", "a=recvonly",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97", "a=mid:2", "a=recvonly",
    "",
])


@pytest.mark.parametrize(
    ("line", "rids"),
    [
        ("a=simulcast:send q;h;f", ("q", "h", "f")),
        ("a=simulcast:send q;~h", ("q", "h")),
        ("a=simulcast:send a,b;c", ("a", "c")),
        ("a=simulcast:recv x;y send q;f", ("q", "f")),
        ("a=simulcast:recv q;h", ()),
    ],
)
def test_send_rids(line: str, rids: tuple[str, ...]) -> None:
    assert send_rids(line) == rids


def test_the_offer_names_each_simulcast_mline_with_its_extension_ids() -> None:
    # mid 2 sends no simulcast line: a single layer
    assert simulcast_offer(OFFER) == {"1": SimulcastOffer("1", ("q", "h", "f"), 10, 11, 4)}


def test_an_offer_without_the_rid_extension_is_no_simulcast() -> None:
    assert simulcast_offer(OFFER.replace(f"a=extmap:10 {RID_URI}\r\n", "")) == {}


def test_the_answer_accepts_the_rids_after_the_extensions() -> None:
    answer = answer_simulcast(ANSWER, simulcast_offer(OFFER))
    video = answer.split("m=video")[1].split("\r\n")
    assert video[1:9] == [
        "a=mid:1",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        f"a=extmap:10 {RID_URI}",
        f"a=extmap:11 {REPAIRED_RID_URI}",
        "a=rid:q recv", "a=rid:h recv", "a=rid:f recv",
        "a=simulcast:recv q;h;f",
    ]
    assert "a=simulcast" not in answer.split("m=video")[2]
    assert answer.endswith("\r\n") and answer.count("m=") == 3
    # idempotent, and nothing to do without simulcast
    assert answer_simulcast(answer, simulcast_offer(OFFER)) == answer
    assert answer_simulcast(ANSWER, {}) == ANSWER


def test_a_rejected_mline_gets_no_simulcast() -> None:
    rejected = ANSWER.replace("m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=mid:1",
                              "m=video 0 UDP/TLS/RTP/SAVPF 96 97\r\na=mid:1")
    assert "a=simulcast" not in answer_simulcast(rejected, simulcast_offer(OFFER))
