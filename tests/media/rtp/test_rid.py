"""RID demux: a simulcast packet's layer from its SSRC (once learned) or its MID/RID
header extensions."""

from __future__ import annotations

import pytest

from media.rtp.rid import LayerKey, identify

SIMULCAST = {"1": ("q", "h", "f"), "2": ("a", "b")}
LEARNED = {111: LayerKey("1", "q"), 222: LayerKey("1", "f", repair=True)}


@pytest.mark.parametrize(
    ("ssrc", "mid", "rid", "rrid", "expected"),
    [
        # learned SSRCs keep their layer, with or without extensions
        (111, None, None, None, LayerKey("1", "q")),
        (111, "1", "h", None, LayerKey("1", "q")),
        (222, None, None, None, LayerKey("1", "f", repair=True)),
        # a new SSRC with its m-line's MID and a RID of it
        (333, "1", "h", None, LayerKey("1", "h")),
        (333, "2", "b", None, LayerKey("2", "b")),
        # RTX: the repaired RID names the layer
        (444, "1", None, "h", LayerKey("1", "h", repair=True)),
        # a RID the m-line does not send, or an m-line without simulcast: not a layer
        (333, "1", "x", None, None),
        (333, "3", "q", None, None),
        # no RID at all (a single-layer m-line, or a layer whose SSRC is not learned yet)
        (333, "1", None, None, None),
        (333, None, None, None, None),
        # without a MID, a RID that only one m-line sends
        (333, None, "h", None, LayerKey("1", "h")),
        (333, None, "a", None, LayerKey("2", "a")),
    ],
)
def test_identify(
    ssrc: int, mid: str | None, rid: str | None, rrid: str | None, expected: LayerKey | None
) -> None:
    assert identify(LEARNED, SIMULCAST, ssrc, mid, rid, rrid) == expected


def test_identify_a_rid_two_mlines_send_needs_the_mid() -> None:
    both = {"1": ("q", "f"), "2": ("q", "f")}
    assert identify({}, both, 5, None, "q", None) is None
    assert identify({}, both, 5, "2", "q", None) == LayerKey("2", "q")
