"""Which simulcast layer an RTP packet belongs to: demultiplexing by MID and RID.

A browser sends simulcast layers on SSRCs it does not announce in SDP. The first packets of
each SSRC carry the `sdes:mid` and `rtp-stream-id` header extensions (RTX packets
`repaired-rtp-stream-id` instead), until the receiver's reports acknowledge the SSRC; from
them the relay learns SSRC -> (mid, rid, repair) and routes every later packet by SSRC alone.
`identify` is that decision, a pure function of what was learned and the packet's fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LayerKey:
    """One simulcast RTP stream: the m-line (mid), the layer (rid), media or its RTX."""

    mid: str
    rid: str
    repair: bool = False


def identify(
    learned: Mapping[int, LayerKey],
    simulcast: Mapping[str, tuple[str, ...]],
    ssrc: int,
    mid: str | None,
    rid: str | None,
    repaired_rid: str | None,
) -> LayerKey | None:
    """The layer stream of a packet, or None when it is no simulcast layer's.

    `learned`: SSRC -> key so far; `simulcast`: mid -> RIDs of each simulcast m-line. A known
    SSRC keeps its key (later packets carry no extension). An unknown one needs a RID (or a
    repaired RID) of its m-line; without a MID the RID must belong to exactly one simulcast
    m-line.
    """
    key = learned.get(ssrc)
    if key is not None:
        return key
    name, repair = (rid, False) if rid else (repaired_rid, True)
    if not name:
        return None
    if mid is not None:
        rids = simulcast.get(mid)
        return LayerKey(mid, name, repair) if rids is not None and name in rids else None
    owners = [m for m, rids in simulcast.items() if name in rids]
    return LayerKey(owners[0], name, repair) if len(owners) == 1 else None
