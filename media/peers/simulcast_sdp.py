"""Simulcast in SDP (RFC 8853, RFC 8851): what a publisher's offer sends, and the answer lines.

aiortc 1.16 neither offers the `rtp-stream-id` / `repaired-rtp-stream-id` header extensions
nor answers `a=rid` / `a=simulcast`, and a browser that is not answered `a=simulcast:recv`
sends only its first encoding. So the uplink reads, per m-section of the publisher's offer, the
RIDs it sends (`simulcast_offer`), and adds to aiortc's answer for those m-sections the RID
extensions (with the offer's ids) and `a=rid:<rid> recv` + `a=simulcast:recv <r1>;<r2>`
(`answer_simulcast`). Pure text functions; the uplink applies them.

Layer order: the RIDs in the order of the offer's `a=simulcast:send` line, which is the order
of the page's `sendEncodings`, lowest resolution first (web/js/codecs.js).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"

_EXTMAP = re.compile(r"^a=extmap:(\d+)(?:/\w+)? (\S+)")


@dataclass(frozen=True, slots=True)
class SimulcastOffer:
    """What one m-section of an offer sends as simulcast."""

    mid: str
    rids: tuple[str, ...]
    """The RIDs sent, lowest layer first (paused ones, `~rid`, included)."""
    rid_ext: int
    """Header extension id of `rtp-stream-id`."""
    repaired_ext: int | None
    """Header extension id of `repaired-rtp-stream-id` (RTX of a layer), if offered."""
    mid_ext: int | None
    """Header extension id of `sdes:mid`, if offered."""


def sdp_sections(sdp: str) -> list[list[str]]:
    """The SDP's lines split at each `m=` line (the session part first)."""
    sections: list[list[str]] = [[]]
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    return sections


def send_rids(simulcast_line: str) -> tuple[str, ...]:
    """The RIDs of an `a=simulcast:send ...` value in order: `send q;h;~f` -> (q, h, f); the
    first of alternatives (`a,b`) stands for its layer."""
    value = simulcast_line.split(":", 1)[-1].strip()
    parts = value.split()
    for direction, streams in zip(parts[::2], parts[1::2], strict=False):
        if direction == "send":
            return tuple(
                alt.split(",")[0].lstrip("~") for alt in streams.split(";") if alt.strip()
            )
    return ()


def simulcast_offer(sdp: str) -> dict[str, SimulcastOffer]:
    """mid -> what that m-section sends as simulcast, for each m-section that offers at least
    two RIDs and the `rtp-stream-id` header extension."""
    found: dict[str, SimulcastOffer] = {}
    for section in sdp_sections(sdp)[1:]:
        mid = None
        rids: tuple[str, ...] = ()
        ids: dict[str, int] = {}
        for line in section:
            if line.startswith("a=mid:"):
                mid = line[6:].strip()
            elif line.startswith("a=simulcast:"):
                rids = send_rids(line)
            else:
                match = _EXTMAP.match(line)
                if match:
                    ids[match.group(2)] = int(match.group(1))
        if mid is not None and len(rids) >= 2 and RID_URI in ids:
            found[mid] = SimulcastOffer(
                mid, rids, ids[RID_URI], ids.get(REPAIRED_RID_URI), ids.get(MID_URI)
            )
    return found


def answer_simulcast(answer: str, offers: dict[str, SimulcastOffer]) -> str:
    """`answer` with, in each m-section whose mid is in `offers` (and not rejected), the RID
    header extensions and `a=rid:<rid> recv` / `a=simulcast:recv ...` lines added."""
    if not offers:
        return answer
    eol = "\r\n" if "\r\n" in answer else "\n"
    out: list[str] = []
    for section in sdp_sections(answer):
        mid = next((line[6:].strip() for line in section if line.startswith("a=mid:")), None)
        offer = offers.get(mid) if mid is not None else None
        rejected = bool(section) and section[0].startswith("m=") and section[0].split()[1] == "0"
        if offer is None or rejected or any(line.startswith("a=simulcast:") for line in section):
            out.extend(section)
            continue
        added = [f"a=extmap:{offer.rid_ext} {RID_URI}"]
        if offer.repaired_ext is not None:
            added.append(f"a=extmap:{offer.repaired_ext} {REPAIRED_RID_URI}")
        added += [f"a=rid:{rid} recv" for rid in offer.rids]
        added.append(f"a=simulcast:recv {';'.join(offer.rids)}")
        last_extmap = max(
            (i for i, line in enumerate(section) if line.startswith("a=extmap:")), default=None
        )
        at = last_extmap + 1 if last_extmap is not None else len(section)
        out.extend(section[:at] + added + section[at:])
    text = eol.join(out)
    return text + eol if answer.endswith(("\n", "\r\n")) else text
