"""Transport-wide congestion control in SDP: what a publisher's offer has, and the answer lines.

aiortc 1.16 neither offers nor answers the transport-wide sequence number header extension
(`a=extmap:<id> ...transport-wide-cc-extensions-01`) nor `a=rtcp-fb:<pt> transport-cc`, and
a browser that is not answered both sends no sequence numbers and uses no feedback. So the
uplink reads, per m-section of the publisher's offer, the extension's id and the payload
types offered with transport-cc feedback (`transport_cc_offer`), and adds to aiortc's answer
for those m-sections the extension (with the offer's id) and the feedback lines for the
answered payload types that had it (`answer_transport_cc`). Pure text functions; the uplink
applies them and sends the feedback (`media.peers.twcc_feedback`).

`a=rtcp-fb:<pt> goog-remb` is left as aiortc answers it: the relay's receivers send no REMB
of their own (`media.peers.aiortc_bends`), so REMB reaches a publisher only as the cap of
`media.adapt.publisher_cap`, which must keep working with transport-cc (Chromium applies a
REMB as an upper bound on its transport-cc estimate).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from media.peers.simulcast_sdp import sdp_sections
from media.rtp.twcc import TRANSPORT_CC_URI

_EXTMAP = re.compile(r"^a=extmap:(\d+)(?:/\w+)? (\S+)")
_RTCP_FB = re.compile(r"^a=rtcp-fb:(\d+) transport-cc\s*$")


@dataclass(frozen=True, slots=True)
class TransportCcOffer:
    """What one m-section of an offer has of transport-cc."""

    ext_id: int
    """Header extension id of the transport-wide sequence number."""
    feedback_pts: frozenset[int]
    """Payload types offered with `a=rtcp-fb:<pt> transport-cc`."""


def _mid(section: list[str]) -> str | None:
    return next((line[6:].strip() for line in section if line.startswith("a=mid:")), None)


def transport_cc_offer(sdp: str) -> dict[str, TransportCcOffer]:
    """mid -> what that m-section offers, for each audio/video m-section with the
    transport-wide sequence number extension."""
    found: dict[str, TransportCcOffer] = {}
    for section in sdp_sections(sdp)[1:]:
        if not section[0].startswith(("m=audio", "m=video")):
            continue
        ext_id: int | None = None
        pts: set[int] = set()
        for line in section:
            match = _EXTMAP.match(line)
            if match and match.group(2) == TRANSPORT_CC_URI:
                ext_id = int(match.group(1))
                continue
            feedback = _RTCP_FB.match(line)
            if feedback:
                pts.add(int(feedback.group(1)))
        mid = _mid(section)
        if mid is not None and ext_id is not None:
            found[mid] = TransportCcOffer(ext_id, frozenset(pts))
    return found


def transport_cc_ext_id(offers: dict[str, TransportCcOffer]) -> int | None:
    """The extension id the transport's packets carry (bundled m-sections share one)."""
    return next((offer.ext_id for offer in offers.values()), None)


def answer_transport_cc(answer: str, offers: dict[str, TransportCcOffer]) -> str:
    """`answer` with, in each m-section whose mid is in `offers` (and not rejected), the
    extension and `a=rtcp-fb:<pt> transport-cc` for each answered payload type offered
    with it (each after the payload type's last rtpmap/rtcp-fb/fmtp line)."""
    if not offers:
        return answer
    eol = "\r\n" if "\r\n" in answer else "\n"
    out: list[str] = []
    for section in sdp_sections(answer):
        mid = _mid(section)
        offer = offers.get(mid) if mid is not None else None
        head = section[0].split() if section and section[0].startswith("m=") else []
        if offer is None or len(head) < 4 or head[1] == "0" \
                or any(TRANSPORT_CC_URI in line for line in section):
            out.extend(section)
            continue
        lines = list(section)
        last_extmap = max((i for i, line in enumerate(lines) if line.startswith("a=extmap:")),
                          default=None)
        at = last_extmap + 1 if last_extmap is not None else _after_direction(lines)
        lines.insert(at, f"a=extmap:{offer.ext_id} {TRANSPORT_CC_URI}")
        for pt in head[3:]:
            if not pt.isdigit() or int(pt) not in offer.feedback_pts:
                continue
            prefixes = (f"a=rtpmap:{pt} ", f"a=rtcp-fb:{pt} ", f"a=fmtp:{pt} ")
            last = max((i for i, line in enumerate(lines) if line.startswith(prefixes)),
                       default=len(lines) - 1)
            lines.insert(last + 1, f"a=rtcp-fb:{pt} transport-cc")
        out.extend(lines)
    text = eol.join(out)
    return text + eol if answer.endswith(("\n", "\r\n")) else text


def _after_direction(lines: list[str]) -> int:
    """Where an extmap goes when the section has none: after the `a=mid` line."""
    return next((i + 1 for i, line in enumerate(lines) if line.startswith("a=mid:")), 1)
