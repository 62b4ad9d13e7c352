"""Who receives which published track, as a pure function of the room's kind, roles and state.

Class: the teacher goes to every classroom; every classroom goes to the teacher; the
spotlighted classroom goes to everyone (its audio too); observers receive like classrooms.
Consult: doctor <-> clinic; an observer or operator receives both. A muted participant's
microphone goes to no one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

ROOM_KINDS = ("class", "consult")
SOURCES = ("mic", "camera", "screen")
AUDIO_SOURCES = frozenset({"mic"})

# Role names as tokens carry them, reduced to what routing distinguishes.
_CLASS_ROLES = {
    "teacher": "teacher",
    "assistant": "classroom",
    "classroom": "classroom",
    "observer": "observer",
    "operator": "observer",
}
_CONSULT_ROLES = {
    "doctor": "doctor",
    "expert": "doctor",
    "clinic": "clinic",
    "observer": "observer",
    "operator": "observer",
}

Route = tuple[str, str]
"""(publisher id, source) of one forwarded track."""


def routing_role(kind: str, role: str) -> str:
    """The role routing uses for a token role; ValueError for a role the room kind lacks."""
    table = _CLASS_ROLES if kind == "class" else _CONSULT_ROLES if kind == "consult" else None
    if table is None:
        raise ValueError(f"unknown room kind {kind!r}")
    try:
        return table[role]
    except KeyError:
        raise ValueError(f"role {role!r} has no place in a {kind} room") from None


def _receives_from(kind: str, receiver: str, publisher: str, spotlight_role: bool) -> bool:
    """Whether a receiver of role `receiver` gets a publisher of role `publisher`'s tracks."""
    if kind == "class":
        if publisher == "teacher":
            return True
        if publisher == "classroom":
            return receiver == "teacher" or spotlight_role
        return False
    if publisher == "observer":
        return False
    if receiver == "observer":
        return True
    return publisher != receiver or publisher == "doctor"


def route(
    kind: str,
    roles: Mapping[str, str],
    published: Mapping[str, Iterable[str]],
    spotlight: str | None = None,
    muted: Iterable[str] = (),
) -> dict[str, frozenset[Route]]:
    """For every participant in `roles`, the (publisher, source) pairs it receives.

    `roles` maps participant id -> token role, `published` participant id -> sources it
    publishes now. Nobody receives their own tracks.
    """
    reduced = {pid: routing_role(kind, role) for pid, role in roles.items()}
    silenced = frozenset(muted)
    result: dict[str, frozenset[Route]] = {}
    for receiver, receiver_role in reduced.items():
        routes: set[Route] = set()
        for publisher, sources in published.items():
            publisher_role = reduced.get(publisher)
            if publisher == receiver or publisher_role is None:
                continue
            if not _receives_from(kind, receiver_role, publisher_role, publisher == spotlight):
                continue
            for source in sources:
                if source in AUDIO_SOURCES and publisher in silenced:
                    continue
                routes.add((publisher, source))
        result[receiver] = frozenset(routes)
    return result
