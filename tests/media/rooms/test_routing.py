"""Routing decides who receives which track in a class and in a consult."""

from __future__ import annotations

import pytest

from media.rooms.routing import route, routing_role

ALL = ("mic", "camera", "screen")
CLASS_ROLES = {
    "t": "teacher", "a": "assistant", "b": "assistant", "c": "assistant", "o": "observer"
}
CLASS_PUBLISHED = {
    "t": ALL, "a": ("mic", "camera"), "b": ("mic", "camera"), "c": ("mic", "camera")
}


def tracks(*specs: str) -> frozenset[tuple[str, str]]:
    """'t:mic' -> ('t', 'mic')."""
    return frozenset(tuple(s.split(":")) for s in specs)  # type: ignore[misc]


TEACHER = tracks("t:mic", "t:camera", "t:screen")


@pytest.mark.parametrize(
    ("spotlight", "muted", "expected"),
    [
        (
            None,
            (),
            {
                "t": tracks("a:mic", "a:camera", "b:mic", "b:camera", "c:mic", "c:camera"),
                "a": TEACHER,
                "b": TEACHER,
                "c": TEACHER,
                "o": TEACHER,
            },
        ),
        (
            "b",
            (),
            {
                "t": tracks("a:mic", "a:camera", "b:mic", "b:camera", "c:mic", "c:camera"),
                "a": TEACHER | tracks("b:mic", "b:camera"),
                "b": TEACHER,
                "c": TEACHER | tracks("b:mic", "b:camera"),
                "o": TEACHER | tracks("b:mic", "b:camera"),
            },
        ),
        (
            "b",
            ("b", "c"),
            {
                "t": tracks("a:mic", "a:camera", "b:camera", "c:camera"),
                "a": TEACHER | tracks("b:camera"),
                "b": TEACHER,
                "c": TEACHER | tracks("b:camera"),
                "o": TEACHER | tracks("b:camera"),
            },
        ),
    ],
)
def test_class_routing(spotlight: str | None, muted: tuple[str, ...], expected: dict) -> None:
    assert route("class", CLASS_ROLES, CLASS_PUBLISHED, spotlight, muted) == expected


@pytest.mark.parametrize(
    ("roles", "published", "expected"),
    [
        (
            {"d": "doctor", "k": "clinic"},
            {"d": ("mic", "camera"), "k": ("mic", "camera", "screen")},
            {"d": tracks("k:mic", "k:camera", "k:screen"), "k": tracks("d:mic", "d:camera")},
        ),
        (
            {"d": "doctor", "k": "clinic", "op": "operator"},
            {"d": ("mic", "camera"), "k": ("mic",), "op": ("mic", "camera")},
            {
                "d": tracks("k:mic"),
                "k": tracks("d:mic", "d:camera"),
                "op": tracks("d:mic", "d:camera", "k:mic"),
            },
        ),
        # a hand-over: the new doctor sees the clinic and the previous doctor
        (
            {"d": "doctor", "e": "doctor", "k": "clinic"},
            {"d": ("camera",), "e": ("camera",), "k": ("camera",)},
            {
                "d": tracks("e:camera", "k:camera"),
                "e": tracks("d:camera", "k:camera"),
                "k": tracks("d:camera", "e:camera"),
            },
        ),
        # nothing published yet: everyone receives nothing, and a publisher who left is ignored
        ({"d": "doctor", "k": "clinic"}, {"x": ("mic",)}, {"d": frozenset(), "k": frozenset()}),
    ],
)
def test_consult_routing(roles: dict, published: dict, expected: dict) -> None:
    assert route("consult", roles, published) == expected


@pytest.mark.parametrize(
    ("kind", "role", "reduced"),
    [
        ("class", "teacher", "teacher"),
        ("class", "assistant", "classroom"),
        ("class", "operator", "observer"),
        ("consult", "clinic", "clinic"),
        ("consult", "observer", "observer"),
    ],
)
def test_routing_role_reduces_token_roles(kind: str, role: str, reduced: str) -> None:
    assert routing_role(kind, role) == reduced


@pytest.mark.parametrize(
    ("kind", "role"), [("class", "doctor"), ("consult", "teacher"), ("party", "teacher")]
)
def test_routing_role_rejects_roles_foreign_to_the_room(kind: str, role: str) -> None:
    with pytest.raises(ValueError):
        routing_role(kind, role)
