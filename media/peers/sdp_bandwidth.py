"""The bandwidth a subscriber declares in its answer (RFC 4566 `b=AS`, RFC 3890 `b=TIAS`).

A receiver may bound what it wants to be sent: a session-level `b=AS:<kbit/s>` or
`b=TIAS:<bit/s>` line bounds everything; otherwise, when every video m-line it receives on
declares one, their sum bounds the whole (audio included: audio is never cut, so the video
gets what is left). The downlink's adaptation then never allocates more than that
(`DownlinkAdaptation.ceiling_bps`), whatever the link's estimate. Browser tests use it to put
one classroom on a capped link without a network namespace.
"""

from __future__ import annotations


def _bandwidth(line: str) -> float | None:
    kind, _, value = line.partition(":")
    try:
        if kind == "b=AS":
            bps = int(value) * 1000.0
        elif kind == "b=TIAS":
            bps = float(int(value))
        else:
            return None
    except ValueError:
        return None
    return bps if bps > 0 else None


def declared_max_bps(sdp: str) -> float | None:
    """What an SDP declares it takes at most in bit/s (see the module docstring), or None."""
    session: list[float] = []
    video: list[float | None] = []
    section = "session"  # session | video (received, port not 0) | other
    for line in sdp.splitlines():
        if line.startswith("m="):
            parts = line[2:].split()
            section = "video" if len(parts) > 1 and parts[0] == "video" and parts[1] != "0" \
                else "other"
            if section == "video":
                video.append(None)
            continue
        bps = _bandwidth(line)
        if bps is None:
            continue
        if section == "session":
            session.append(bps)
        elif section == "video":
            before = video[-1]
            video[-1] = bps if before is None else min(before, bps)
    if session:
        return min(session)
    declared = [bps for bps in video if bps is not None]
    if video and len(declared) == len(video):
        return sum(declared)
    return None
