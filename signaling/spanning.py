"""Which node serves one participant of a room that may span nodes (a pure decision).

A room's origin node (signaling/placement.py) holds its publishers; once a class is large, its
receivers are served by edge nodes, which get the origin's publications over the media trunk
(media.backend: `open_trunk`, `set_trunk_peers`) and send their own participants' publications
back the same way. Who goes where:

- the hosts and publishers (teacher, doctor, clinic, operator: every role not below) go to the
  origin, and a consult never spans (its two or three parties meet on one node);
- a class's receivers (classrooms, whose role is `assistant`, and observers) go to the origin
  while it is the only node or the room is small (fewer than `span_after` participants on the
  origin; `span_after` 0 spans at once), else to a live `edge` or `any` node other than the
  origin: one in the participant's region if there is one, the deciding node itself when it is
  such a node (no extra hop, and two edges never send a participant back and forth), else the
  least loaded (participants, then rooms, then id). The origin is the last resort.

Classrooms publish too (the teacher calls on them): an edge sends their publications to the
origin and to the other edges, so they are seen everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from signaling.placement import NodeLoad

RECEIVER_ROLES = frozenset({"assistant", "observer"})
"""Roles that may be served by an edge node in a class (a classroom's role is `assistant`)."""
SERVING_ROLES = frozenset({"edge", "any"})
"""Node media roles that serve a spanned room's receivers."""


def region_matches(node_region: str | None, participant_region: Sequence[str]) -> bool:
    """True when a node of `node_region` stands in the participant's region: the node's
    region is a prefix of the participant's (`甘肃省/定西市` for a site in 甘肃省, 定西市,
    渭源县) or one of its names (`渭源县`)."""
    if not node_region or not participant_region:
        return False
    parts = tuple(p for p in node_region.split("/") if p)
    if not parts:
        return False
    if tuple(participant_region[: len(parts)]) == parts:
        return True
    return len(parts) == 1 and parts[0] in participant_region


def may_span(kind: str, role: str) -> bool:
    """True for a participant an edge node may serve once the room is large: a class's
    receiver."""
    return kind == "class" and role in RECEIVER_ROLES


def spans(kind: str, role: str, room_load_on_origin: int, span_after: int) -> bool:
    """True when this participant goes to an edge node, if one is alive (else: the origin)."""
    if not may_span(kind, role):
        return False
    return span_after == 0 or room_load_on_origin >= span_after


def choose_serving_node(
    nodes: Iterable[NodeLoad],
    origin: NodeLoad,
    role_of_joiner: str,
    region: Sequence[str],
    room_load_on_origin: int,
    span_after: int,
    *,
    kind: str = "class",
    here: str | None = None,
) -> NodeLoad:
    """The node that serves a participant of role `role_of_joiner` from `region` (its site's
    region path; empty when unknown) in a `kind` room held by `origin`; `nodes` are the live
    nodes, `here` the deciding node's id. See the module docstring."""
    if not spans(kind, role_of_joiner, room_load_on_origin, span_after):
        return origin
    candidates = [n for n in nodes if n.role in SERVING_ROLES and n.id != origin.id]
    if not candidates:
        return origin
    near = [n for n in candidates if region_matches(n.region, region)]
    pool = near or candidates
    for node in pool:
        if node.id == here:
            return node
    return min(pool, key=lambda n: (n.participants, n.rooms, n.id))
