"""Audio redundancy (RFC 2198, `red/48000/2`) built by the relay from a plain Opus stream.

aiortc knows no RED, so the relay offers it on a subscriber's downlink by adding it to the
offer's audio m-lines (`offer_with_red`), reads from the answer whether the subscriber took
it (`red_payload_type`), and, while that subscriber's link is lossy (`red_wanted`, with
hysteresis), sends each Opus packet wrapped with copies of the previous one or two
(`red_payload`): a lost packet is then recovered from the next one, without a round trip.
Opus's own in-band FEC (a low-rate copy of the previous frame) and DTX are negotiated on the
publisher's side (`codec_match.OPUS_RECEIVE_PARAMETERS`). Pure functions, byte-exact.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

RED_PAYLOAD_TYPE = 63
"""What the relay's offers use for RED (Chromium's number; any free one would do)."""
MAX_BLOCK = 1023
"""A redundant block's length must fit 10 bits."""
MAX_OFFSET = 0x3FFF
"""A redundant block's timestamp offset must fit 14 bits."""
REDUNDANCY = 1
"""Previous packets carried in each RED packet (Chromium sends 1 to 2): with Opus's own FEC
besides, one copy leaves 0.25% of packets lost on a 5%-loss link, at the cost budget.py counts
(`red_extra`: the Opus payload once more, about half the measured rate with its overhead)."""
KEPT = 2
"""Previous packets a track keeps for RED (the most `red_payload` may be asked for)."""

_MLINE = re.compile(r"^m=audio (\d+) (\S+) ([\d ]+)$")


def red_wanted(loss: float, was_on: bool, on_above: float = 0.02, off_below: float = 0.01) -> bool:
    """Whether a subscriber's audio goes with RED: on when loss exceeds `on_above`, off again
    only when it falls below `off_below` (the subscriber must have negotiated RED)."""
    if was_on:
        return loss >= off_below
    return loss > on_above


def red_payload(
    primary_pt: int,
    timestamp: int,
    primary: bytes,
    previous: Sequence[tuple[int, bytes]],
    redundancy: int = REDUNDANCY,
) -> bytes:
    """A RED payload: block headers, then up to `redundancy` of the `previous` (timestamp,
    payload) packets (oldest first, those too old, too large or empty left out), then the
    primary. With nothing to repeat it is a one-byte header and the primary."""
    blocks: list[tuple[int, bytes]] = []
    for ts, data in list(previous)[-redundancy:] if redundancy > 0 else []:
        offset = (timestamp - ts) & 0xFFFFFFFF
        if 0 < offset <= MAX_OFFSET and 0 < len(data) <= MAX_BLOCK:
            blocks.append((offset, data))
    header = bytearray()
    for offset, data in blocks:
        header += bytes([
            0x80 | (primary_pt & 0x7F),
            (offset >> 6) & 0xFF,
            ((offset & 0x3F) << 2) | (len(data) >> 8),
            len(data) & 0xFF,
        ])
    header.append(primary_pt & 0x7F)
    return bytes(header) + b"".join(data for _, data in blocks) + primary


def parse_red(payload: bytes, timestamp: int) -> list[tuple[int, int, bytes]]:
    """(payload type, timestamp, data) of each block of a RED payload, primary last;
    ValueError if it is malformed."""
    headers: list[tuple[int, int, int]] = []
    pos = 0
    while True:
        if pos >= len(payload):
            raise ValueError("RED: truncated block header")
        first = payload[pos]
        if not first & 0x80:
            headers.append((first & 0x7F, 0, -1))
            pos += 1
            break
        if pos + 4 > len(payload):
            raise ValueError("RED: truncated block header")
        offset = (payload[pos + 1] << 6) | (payload[pos + 2] >> 2)
        length = ((payload[pos + 2] & 0x03) << 8) | payload[pos + 3]
        headers.append((first & 0x7F, offset, length))
        pos += 4
    blocks: list[tuple[int, int, bytes]] = []
    for pt, offset, length in headers:
        if length < 0:
            blocks.append((pt, timestamp, payload[pos:]))
            break
        if pos + length > len(payload):
            raise ValueError("RED: block longer than the payload")
        blocks.append((pt, (timestamp - offset) & 0xFFFFFFFF, payload[pos:pos + length]))
        pos += length
    return blocks


def offer_with_red(sdp: str, red_pt: int = RED_PAYLOAD_TYPE) -> str:
    """The offer with `red/48000/2` added after Opus in every audio m-line that sends Opus
    (fmtp `opus/opus`), so a subscriber that can take RED may accept it."""
    lines = sdp.split("\r\n")
    out: list[str] = []
    section: list[str] = []

    def flush() -> None:
        out.extend(_with_red(section, red_pt))
        section.clear()

    for line in lines:
        if line.startswith("m="):
            flush()
        section.append(line)
    flush()
    return "\r\n".join(out)


def _with_red(section: list[str], red_pt: int) -> list[str]:
    if not section or not section[0].startswith("m=audio"):
        return list(section)
    match = _MLINE.match(section[0])
    if match is None:
        return list(section)
    pts = match.group(3).split()
    opus = next(
        (line.split()[0].split(":")[1] for line in section
         if line.startswith("a=rtpmap:") and line.lower().endswith("opus/48000/2")),
        None,
    )
    if opus is None or str(red_pt) in pts:
        return list(section)
    pts.insert(pts.index(opus) + 1, str(red_pt))
    result = [f"m=audio {match.group(1)} {match.group(2)} {' '.join(pts)}"]
    for line in section[1:]:
        result.append(line)
        if line.startswith(f"a=rtpmap:{opus} "):
            result += [f"a=rtpmap:{red_pt} red/48000/2", f"a=fmtp:{red_pt} {opus}/{opus}"]
    return result


def red_payload_type(sdp: str, mid: str) -> int | None:
    """The RED payload type the m-line with `mid` accepted in an answer, or None."""
    current_mid: str | None = None
    red: int | None = None
    for line in sdp.splitlines():
        if line.startswith("m="):
            if current_mid == mid and red is not None:
                return red
            current_mid, red = None, None
        elif line.startswith("a=mid:"):
            current_mid = line[len("a=mid:"):].strip()
        elif line.startswith("a=rtpmap:") and line.lower().rstrip().endswith(" red/48000/2"):
            red = int(line[len("a=rtpmap:"):].split()[0])
    return red if current_mid == mid else None
