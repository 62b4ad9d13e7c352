"""Who serves a participant of a room that may span nodes (signaling/spanning.py), and which
node may hold a room (`choose_origin`): decisions stated as tables."""

from __future__ import annotations

import pytest

from signaling.placement import NodeLoad, choose_origin
from signaling.spanning import choose_serving_node, region_matches, spans

ORIGIN = NodeLoad("o", "http://o", rooms=1, participants=1, role="origin")
E1 = NodeLoad("e1", "http://e1", rooms=1, participants=5, role="edge", region="甘肃省/定西市")
E2 = NodeLoad("e2", "http://e2", rooms=1, participants=2, role="edge", region="兰州市")
ANY = NodeLoad("x", "http://x", rooms=0, participants=3, role="any")
ORIGIN_ROLE = NodeLoad("p", "http://p", rooms=0, participants=0, role="origin")
WEIYUAN = ("甘肃省", "定西市", "渭源县", "会川镇")
LANZHOU = ("甘肃省", "兰州市", "城关区")


@pytest.mark.parametrize(("nodes", "role", "region", "load", "span_after", "kind", "here",
                          "served_by"), [
    # hosts and publishers stay on the origin, however large the room
    ([ORIGIN, E1, E2], "teacher", (), 500, 100, "class", None, "o"),
    ([ORIGIN, E1, E2], "operator", (), 500, 0, "class", "e1", "o"),
    # consults never span
    ([ORIGIN, E1, E2], "observer", (), 500, 0, "consult", None, "o"),
    ([ORIGIN, E1, E2], "clinic", WEIYUAN, 500, 0, "consult", "e1", "o"),
    ([ORIGIN, E1, E2], "doctor", (), 500, 0, "consult", None, "o"),
    # a small class stays on its origin
    ([ORIGIN, E1, E2], "assistant", WEIYUAN, 99, 100, "class", None, "o"),
    ([ORIGIN, E1, E2], "observer", (), 0, 1, "class", "e2", "o"),
    # a large one sends its receivers to an edge: the participant's region first
    ([ORIGIN, E1, E2], "assistant", WEIYUAN, 100, 100, "class", None, "e1"),
    ([ORIGIN, E1, E2], "assistant", LANZHOU, 100, 100, "class", None, "e2"),
    ([ORIGIN, E1, E2], "assistant", WEIYUAN, 0, 0, "class", None, "e1"),
    # ...else the least loaded edge (participants, then rooms, then id)
    ([ORIGIN, E1, E2], "observer", (), 0, 0, "class", None, "e2"),
    ([ORIGIN, E1, E2], "assistant", ("北京市",), 0, 0, "class", None, "e2"),
    ([ORIGIN, E1, ANY], "assistant", (), 0, 0, "class", None, "x"),
    # the deciding edge keeps the participant, unless an edge of its region is alive
    ([ORIGIN, E1, E2], "observer", (), 0, 0, "class", "e1", "e1"),
    ([ORIGIN, E1, E2], "assistant", WEIYUAN, 0, 0, "class", "e2", "e1"),
    ([ORIGIN, E1, E2], "assistant", WEIYUAN, 0, 0, "class", "o", "e1"),
    # an origin-role node never serves receivers; the origin is the last resort
    ([ORIGIN, ORIGIN_ROLE], "assistant", (), 0, 0, "class", None, "o"),
    ([ORIGIN], "assistant", WEIYUAN, 1000, 0, "class", None, "o"),
    ([], "assistant", WEIYUAN, 1000, 0, "class", None, "o"),
])
def test_choose_serving_node(nodes, role, region, load, span_after, kind, here, served_by):
    chosen = choose_serving_node(nodes, ORIGIN, role, region, load, span_after, kind=kind,
                                 here=here)
    assert chosen.id == served_by


def test_an_any_node_holding_the_room_does_not_serve_its_receivers_while_an_edge_lives():
    origin = NodeLoad("a", "http://a", role="any")
    other = NodeLoad("b", "http://b", participants=50, role="any")
    assert choose_serving_node([origin, other], origin, "assistant", (), 5, 0).id == "b"
    assert choose_serving_node([origin], origin, "assistant", (), 5, 0).id == "a"


def test_the_decision_is_deterministic_whatever_the_order_of_the_nodes():
    a = NodeLoad("a", "http://a", participants=2, role="edge")
    b = NodeLoad("b", "http://b", participants=2, role="edge")
    assert {choose_serving_node(order, ORIGIN, "observer", (), 0, 0).id
            for order in ([ORIGIN, a, b], [b, ORIGIN, a], [a, b])} == {"a"}


@pytest.mark.parametrize(("node_region", "participant_region", "matches"), [
    ("甘肃省/定西市", WEIYUAN, True),
    ("甘肃省", WEIYUAN, True),
    ("渭源县", WEIYUAN, True),
    ("甘肃省/兰州市", WEIYUAN, False),
    ("定西市/渭源县", WEIYUAN, False),  # a path is read from the province down
    ("兰州市", WEIYUAN, False),
    (None, WEIYUAN, False),
    ("甘肃省", (), False),
    ("/", WEIYUAN, False),
])
def test_region_matches(node_region, participant_region, matches):
    assert region_matches(node_region, participant_region) is matches


@pytest.mark.parametrize(("kind", "role", "load", "span_after", "expected"), [
    ("class", "assistant", 99, 100, False),
    ("class", "assistant", 100, 100, True),
    ("class", "observer", 0, 0, True),
    ("class", "teacher", 1000, 0, False),
    ("consult", "observer", 1000, 0, False),
])
def test_spans(kind, role, load, span_after, expected):
    assert spans(kind, role, load, span_after) is expected


@pytest.mark.parametrize(("nodes", "prefer", "chosen"), [
    ([E1, E2], None, "e2"),  # only edges alive: the least loaded of them
    ([E1, E2, ANY], None, "x"),
    ([E2, ANY, ORIGIN], None, "o"),
    ([E2, ANY, ORIGIN], "x", "o"),
    ([ANY, ORIGIN_ROLE], "x", "p"),
    ([NodeLoad("x", "u", role="any"), NodeLoad("p", "u", role="origin")], "x", "x"),
    ([], None, None),
])
def test_choose_origin_never_takes_an_edge_while_another_node_lives(nodes, prefer, chosen):
    found = choose_origin(nodes, prefer=prefer)
    assert (found.id if found else None) == chosen
