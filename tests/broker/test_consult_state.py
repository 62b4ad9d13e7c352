"""The consult state machine and the escalation decision, as tables."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from broker.consult_state import (
    CONSULT_TRANSITIONS,
    ConsultEvent,
    ConsultState,
    ConsultTicket,
    next_consult_state,
    should_escalate,
)
from broker.errors import Conflict
from broker.models import Urgency

S, E = ConsultState, ConsultEvent

ALLOWED = [
    (S.WAITING, E.CLAIM, S.MATCHED),
    (S.WAITING, E.ESCALATE, S.ESCALATED),
    (S.WAITING, E.CANCEL, S.CANCELLED),
    (S.ESCALATED, E.CLAIM, S.MATCHED),
    (S.ESCALATED, E.ESCALATE, S.ESCALATED),
    (S.ESCALATED, E.CANCEL, S.CANCELLED),
    (S.MATCHED, E.ADMIT, S.ADMITTED),
    (S.MATCHED, E.RELEASE, S.WAITING),
    (S.MATCHED, E.HAND_OVER, S.HANDED_OVER),
    (S.MATCHED, E.END, S.ENDED),
    (S.MATCHED, E.CANCEL, S.CANCELLED),
    (S.HANDED_OVER, E.ADMIT, S.ADMITTED),
    (S.HANDED_OVER, E.RELEASE, S.WAITING),
    (S.HANDED_OVER, E.HAND_OVER, S.HANDED_OVER),
    (S.HANDED_OVER, E.END, S.ENDED),
    (S.HANDED_OVER, E.CANCEL, S.CANCELLED),
    (S.ADMITTED, E.HAND_OVER, S.HANDED_OVER),
    (S.ADMITTED, E.END, S.ENDED),
]


@pytest.mark.parametrize(("state", "event", "after"), ALLOWED)
def test_allowed_transitions(state: ConsultState, event: ConsultEvent, after: ConsultState) -> None:
    assert next_consult_state(state, event) is after


REFUSED = [
    (s, e)
    for s, e in itertools.product(ConsultState, ConsultEvent)
    if (s, e) not in {(a, b) for a, b, _ in ALLOWED}
]


@pytest.mark.parametrize(("state", "event"), REFUSED)
def test_every_other_transition_is_a_conflict(state: ConsultState, event: ConsultEvent) -> None:
    with pytest.raises(Conflict, match=f"{state.value} cannot {event.value}"):
        next_consult_state(state, event)


def test_the_table_above_is_the_whole_machine() -> None:
    assert {(s, e): a for s, e, a in ALLOWED} == CONSULT_TRANSITIONS
    # Nothing leaves a terminal state; admitted consults cannot be cancelled, only ended.
    assert not [k for k in CONSULT_TRANSITIONS if k[0] in (S.ENDED, S.CANCELLED)]
    assert (S.ADMITTED, E.CANCEL) not in CONSULT_TRANSITIONS


T0 = 1_700_000_000.0


def ticket(**changes: object) -> ConsultTicket:
    base = ConsultTicket(
        id="c1",
        clinic_site_id="v1",
        specialty="内科",
        urgency=Urgency.ROUTINE,
        language="zh",
        reason="咳嗽",
        requested_at=T0,
        requested_by="v1",
        route=("th1", "county", "prov"),
        level_since=T0,
    )
    return msgspec.structs.replace(base, **changes)


@pytest.mark.parametrize(
    ("case", "t", "waited_s", "escalate"),
    [
        ("fresh", ticket(), 0, False),
        ("just before the limit", ticket(), 119.9, False),
        ("at the limit", ticket(), 120, True),
        ("long after", ticket(), 10_000, True),
        ("escalated, again at its new level", ticket(level=1, state=S.ESCALATED), 120, True),
        ("already at the top", ticket(level=2, state=S.ESCALATED), 10_000, False),
        ("single-level route", ticket(route=("prov",)), 10_000, False),
        ("claimed", ticket(state=S.MATCHED, expert_id="d"), 10_000, False),
        ("admitted", ticket(state=S.ADMITTED, expert_id="d"), 10_000, False),
        ("cancelled", ticket(state=S.CANCELLED), 10_000, False),
        ("emergency after a quarter", ticket(urgency=Urgency.EMERGENCY), 30, True),
        ("emergency just before", ticket(urgency=Urgency.EMERGENCY), 29, False),
        ("urgent waits the full time", ticket(urgency=Urgency.URGENT), 119, False),
    ],
)
def test_should_escalate(case: str, t: ConsultTicket, waited_s: float, escalate: bool) -> None:
    assert should_escalate(t, t.level_since + waited_s, 120.0) is escalate, case


def test_routed_site_follows_the_level() -> None:
    assert [ticket(level=i).routed_site_id for i in range(3)] == ["th1", "county", "prov"]
    assert ticket(level=2).top_level and not ticket(level=1).top_level
