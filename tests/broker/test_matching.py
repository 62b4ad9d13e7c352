"""Queue order with aging (no starvation, emergencies first) and matching, as tables."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.consult_state import ConsultState, ConsultTicket
from broker.matching import (
    AGING_PER_MINUTE,
    URGENT_HEAD_START,
    match,
    queue_priority,
    queue_score,
    tickets_for_expert,
)
from broker.models import Expert, ExpertKind, Urgency

T0 = 1_700_000_000.0
R, U, E = Urgency.ROUTINE, Urgency.URGENT, Urgency.EMERGENCY


def ticket(tid: str = "t1", **changes: Any) -> ConsultTicket:
    base = ConsultTicket(
        id=tid,
        clinic_site_id="v1",
        specialty="儿科",
        urgency=R,
        language="zh",
        reason="发烧",
        requested_at=T0,
        requested_by="v1",
        route=("th1", "county", "prov"),
        level=0,
        level_since=T0,
    )
    return msgspec.structs.replace(base, **changes)


def doctor(eid: str, **changes: Any) -> Expert:
    base = Expert(
        id=eid,
        name=eid,
        kind=ExpertKind.DOCTOR,
        specialties=("儿科",),
        languages=("zh",),
        capacity=2,
        on_duty=True,
        site_id="th1",
    )
    return msgspec.structs.replace(base, **changes)


# --- queue order ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "now", "a_first"),
    [
        # (urgency, minutes after T0 requested), (…), now in minutes after T0, a served first?
        ((U, 0), (R, 0), 0, True),  # same time: urgency decides
        ((E, 5), (U, 0), 5, True),  # emergency beats an older urgent
        ((R, 0), (R, 3), 3, True),  # same urgency: the longer wait goes first
        ((U, 5), (R, 0), 10, True),  # urgent arriving 5 min later still goes first
        ((U, 19), (R, 0), 30, True),  # 19 min later: still within the head start
        ((R, 0), (U, 21), 30, True),  # routine waited 21 min longer: it overtakes urgent
        ((R, 0), (U, 21), 1000, True),  # and stays ahead whatever the time
        ((E, 0), (R, -10_000), 0, True),  # emergency beats a routine waiting for a week
        ((E, 0), (U, -100_000), 0, True),  # and an urgent waiting for months
        ((E, 0), (E, 1), 1, True),  # among emergencies: the longer wait
    ],
)
def test_queue_priority_orders_by_urgency_then_wait_with_aging(
    a: tuple[Urgency, float], b: tuple[Urgency, float], now: float, a_first: bool
) -> None:
    pa = queue_priority(a[0], T0 + 60 * a[1], T0 + 60 * now)
    pb = queue_priority(b[0], T0 + 60 * b[1], T0 + 60 * now)
    assert (pa > pb) is a_first
    # The store's time-free score gives the same order.
    sa = queue_score(a[0], T0 + 60 * a[1])
    sb = queue_score(b[0], T0 + 60 * b[1])
    assert (sa < sb) is a_first


@pytest.mark.parametrize(
    ("aging", "overtake_after_min"),
    [(1.0, URGENT_HEAD_START), (2.0, URGENT_HEAD_START / 2), (0.5, URGENT_HEAD_START * 2)],
)
def test_aging_rate_sets_how_much_longer_routine_waits_before_overtaking_urgent(
    aging: float, overtake_after_min: float
) -> None:
    now = T0 + 3600
    routine = queue_priority(R, T0, now, aging)
    just_before = queue_priority(U, T0 + 60 * (overtake_after_min - 0.5), now, aging)
    just_after = queue_priority(U, T0 + 60 * (overtake_after_min + 0.5), now, aging)
    assert just_before > routine > just_after


def minutes_until_routine_served(aging: float, horizon_min: int = 300) -> int | None:
    """One doctor serves one request a minute while two urgent ones arrive every minute (an
    overloaded queue); the minute the one routine request, there from the start, is served."""
    waiting: list[tuple[Urgency, float, str]] = [(R, T0, "routine")]
    for minute in range(1, horizon_min):
        now = T0 + 60 * minute
        waiting += [(U, now, f"u{minute}a"), (U, now, f"u{minute}b")]
        waiting.sort(key=lambda w: -queue_priority(w[0], w[1], now, aging))
        if waiting.pop(0)[2] == "routine":
            return minute
    return None


def test_routine_request_never_starves_under_a_steady_stream_of_urgent_ones() -> None:
    served = minutes_until_routine_served(AGING_PER_MINUTE)
    # Only urgent requests that arrived within the head start go before it: 2 a minute.
    assert served is not None
    assert served <= 2 * URGENT_HEAD_START / AGING_PER_MINUTE + 1
    # Without aging the same routine request waits forever.
    assert minutes_until_routine_served(0.0) is None


@given(
    st.lists(
        st.tuples(st.sampled_from(list(Urgency)), st.floats(0, 7 * 24 * 3600)),
        min_size=2,
        max_size=30,
    ),
    st.floats(7 * 24 * 3600, 14 * 24 * 3600),
    st.floats(0.1, 10),
)
def test_store_score_order_equals_priority_order_at_any_time(
    requests: list[tuple[Urgency, float]], now_offset: float, aging: float
) -> None:
    now = T0 + now_offset
    for ua, ta in requests:
        for ub, tb in requests:
            pa = queue_priority(ua, T0 + ta, now, aging)
            pb = queue_priority(ub, T0 + tb, now, aging)
            if pa - pb > 1e-3:  # clearly higher priority (beyond float rounding of the tiers)
                assert queue_score(ua, T0 + ta, aging) < queue_score(ub, T0 + tb, aging)


# --- matching a request against doctors ----------------------------------------------------


@pytest.mark.parametrize(
    ("case", "experts", "loads", "expected"),
    [
        ("one fitting doctor", [doctor("a")], {}, ["a"]),
        ("off duty is left out", [doctor("a", on_duty=False), doctor("b")], {}, ["b"]),
        ("wrong specialty", [doctor("a", specialties=("骨科",)), doctor("b")], {}, ["b"]),
        ("a teacher is no doctor", [doctor("a", kind=ExpertKind.TEACHER), doctor("b")], {}, ["b"]),
        ("other site (level)", [doctor("a", site_id="county"), doctor("b")], {}, ["b"]),
        ("at capacity", [doctor("a", capacity=1), doctor("b")], {"a": 1}, ["b"]),
        ("over capacity", [doctor("a", capacity=1)], {"a": 3}, []),
        ("nobody", [], {}, []),
        (
            "lower share of capacity first",
            [doctor("a"), doctor("b", capacity=4)],
            {"a": 1, "b": 1},
            ["b", "a"],
        ),
        ("idle before busy", [doctor("a"), doctor("b")], {"a": 1}, ["b", "a"]),
        ("ties by id", [doctor("b"), doctor("a")], {}, ["a", "b"]),
        ("several specialties", [doctor("a", specialties=("内科", "儿科"))], {}, ["a"]),
    ],
)
def test_match_filters_and_ranks_doctors(
    case: str, experts: list[Expert], loads: dict[str, int], expected: list[str]
) -> None:
    assert [e.id for e in match(ticket(), experts, loads)] == expected, case


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        # The patient's language first even when busier; others still match (preferred, not
        # required): the village doctor interprets.
        ("bo", ["tib", "zh1", "zh2"]),
        ("zh", ["zh1", "zh2", "tib"]),
        ("ug", ["zh1", "zh2", "tib"]),
    ],
)
def test_match_prefers_doctors_speaking_the_patients_language(
    language: str, expected: list[str]
) -> None:
    experts = [
        doctor("zh1"),
        doctor("zh2"),
        doctor("tib", languages=("zh", "bo"), capacity=2),
    ]
    loads = {"tib": 1}
    assert [e.id for e in match(ticket(language=language), experts, loads)] == expected


def test_match_follows_the_tickets_escalation_level() -> None:
    experts = [doctor("th"), doctor("cty", site_id="county"), doctor("pv", site_id="prov")]
    assert [e.id for e in match(ticket(level=0), experts, {})] == ["th"]
    assert [e.id for e in match(ticket(level=1), experts, {})] == ["cty"]
    assert [e.id for e in match(ticket(level=2), experts, {})] == ["pv"]


def test_match_leaves_out_the_holder_and_puts_previous_holders_last() -> None:
    experts = [doctor("a"), doctor("b"), doctor("c")]
    t = ticket(expert_id="a", previous_expert_ids=("b",), state=ConsultState.ADMITTED)
    assert [e.id for e in match(t, experts, {})] == ["c", "b"]


def test_match_limit_keeps_the_best() -> None:
    experts = [doctor(f"d{i}") for i in range(10)]
    assert [e.id for e in match(ticket(), experts, {}, limit=3)] == ["d0", "d1", "d2"]


# --- requests a doctor sees ----------------------------------------------------------------


def test_tickets_for_expert_lists_claimable_requests_in_queue_order() -> None:
    tickets = [
        ticket("old-routine", requested_at=T0 - 60 * 30),
        ticket("new-urgent", urgency=U, requested_at=T0),
        ticket("older-urgent", urgency=U, requested_at=T0 - 60),
        ticket("emergency", urgency=E, requested_at=T0 + 60),
        ticket("fresh-routine", requested_at=T0 + 60),
    ]
    seen = tickets_for_expert(doctor("a"), tickets)
    assert [t.id for t in seen] == [
        "emergency",
        "old-routine",
        "older-urgent",
        "new-urgent",
        "fresh-routine",
    ]


@pytest.mark.parametrize(
    ("case", "t", "visible"),
    [
        ("waiting", ticket(), True),
        ("escalated to my level", ticket(state=ConsultState.ESCALATED), True),
        ("matched already", ticket(state=ConsultState.MATCHED, expert_id="z"), False),
        ("ended", ticket(state=ConsultState.ENDED), False),
        ("cancelled", ticket(state=ConsultState.CANCELLED), False),
        ("other specialty", ticket(specialty="骨科"), False),
        ("escalated above me", ticket(level=1, state=ConsultState.ESCALATED), False),
    ],
)
def test_tickets_for_expert_shows_only_what_the_expert_may_claim(
    case: str, t: ConsultTicket, visible: bool
) -> None:
    assert (tickets_for_expert(doctor("a"), [t]) == [t]) is visible, case


@pytest.mark.parametrize(
    ("expert", "visible"),
    [
        (doctor("a"), True),
        (doctor("a", on_duty=False), False),
        (doctor("a", kind=ExpertKind.TEACHER), False),
        (doctor("a", capacity=1), True),  # at capacity still sees the queue (claim refuses)
    ],
)
def test_tickets_for_expert_needs_an_on_duty_doctor(expert: Expert, visible: bool) -> None:
    assert bool(tickets_for_expert(expert, [ticket()])) is visible


def test_tickets_for_expert_limit() -> None:
    tickets = [ticket(f"t{i}", requested_at=T0 + i) for i in range(50)]
    assert [t.id for t in tickets_for_expert(doctor("a"), tickets, limit=3)] == ["t0", "t1", "t2"]
