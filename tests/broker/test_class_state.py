"""The class state machine, as a table."""

from __future__ import annotations

import itertools

import pytest

from broker.class_state import (
    CLASS_TRANSITIONS,
    ClassEvent,
    ClassState,
    check_may_join,
    next_class_state,
)
from broker.errors import Conflict

S, E = ClassState, ClassEvent
ALLOWED = [
    (S.SCHEDULED, E.START, S.LIVE),
    (S.SCHEDULED, E.END, S.ENDED),
    (S.LIVE, E.END, S.ENDED),
]


@pytest.mark.parametrize(("state", "event", "after"), ALLOWED)
def test_allowed_transitions(state: ClassState, event: ClassEvent, after: ClassState) -> None:
    assert next_class_state(state, event) is after


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (s, e)
        for s, e in itertools.product(ClassState, ClassEvent)
        if (s, e) not in {(a, b) for a, b, _ in ALLOWED}
    ],
)
def test_every_other_transition_is_a_conflict(state: ClassState, event: ClassEvent) -> None:
    with pytest.raises(Conflict, match=f"{state.value} cannot {event.value}"):
        next_class_state(state, event)


def test_the_table_above_is_the_whole_machine() -> None:
    assert {(s, e): a for s, e, a in ALLOWED} == CLASS_TRANSITIONS


@pytest.mark.parametrize(
    ("state", "may_join"),
    [(S.SCHEDULED, True), (S.LIVE, True), (S.ENDED, False)],
)
def test_joining_is_allowed_until_the_class_ends(state: ClassState, may_join: bool) -> None:
    if may_join:
        check_may_join(state)
    else:
        with pytest.raises(Conflict, match="ended"):
            check_may_join(state)
