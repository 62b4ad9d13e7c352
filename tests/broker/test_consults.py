"""Consults end to end on both stores: request, waiting room, matching, atomic claims, admit,
hand-over, end, cancel, release, escalation and the events consoles follow."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from broker.audit import AuditAction, AuditLog
from broker.clock import ManualClock
from broker.consult_state import ConsultState, Outcome
from broker.consults import ConsultRequest, ConsultService
from broker.directory import Directory
from broker.errors import Conflict, Forbidden, InvalidInput, NotFound
from broker.events import (
    ConsultStateChanged,
    ExpertAssignment,
    QueueChanged,
    decode_event,
    expert_channel,
    queue_channel,
    session_channel,
)
from broker.models import Actor, Expert, ExpertKind, Role, Site, SiteKind, Urgency
from broker.store import Store
from broker.tokens import Keyring, TokenService
from broker.wait_estimate import DEFAULT_SERVICE_S, PICKUP_S
from tests.helpers.stores import StoreHandleFactory

T0 = 1_700_000_000.0
ESCALATE_AFTER = 120.0
CLINIC = Actor("v1", Role.CLINIC)
OPERATOR = Actor("op1", Role.OPERATOR)


def doc(eid: str) -> Actor:
    return Actor(eid, Role.DOCTOR)


SITES = [
    Site(id="prov", name="省医院", kind=SiteKind.PROVINCIAL_HOSPITAL),
    Site(id="county", name="县医院", kind=SiteKind.COUNTY_HOSPITAL, parent_site_id="prov"),
    Site(id="th1", name="卫生院", kind=SiteKind.TOWNSHIP_HEALTH_CENTER, parent_site_id="county"),
    Site(id="v1", name="一村卫生室", kind=SiteKind.VILLAGE_CLINIC, parent_site_id="th1"),
    Site(id="v2", name="二村卫生室", kind=SiteKind.VILLAGE_CLINIC, parent_site_id="th1"),
    Site(id="school", name="学校", kind=SiteKind.SCHOOL),
]


def doctor(eid: str, site: str, specialty: str, **extra: object) -> Expert:
    fields: dict[str, object] = {
        "id": eid,
        "name": f"医生{eid}",
        "kind": ExpertKind.DOCTOR,
        "specialties": (specialty,),
        "on_duty": True,
        "site_id": site,
        "capacity": 1,
    }
    fields.update(extra)
    return Expert(**fields)  # type: ignore[arg-type]


DOCTORS = [
    doctor("d-th", "th1", "内科"),
    doctor("d-county", "county", "内科"),
    doctor("d-prov-im", "prov", "内科"),
    doctor("d-ped1", "prov", "儿科", capacity=2),
    doctor("d-ped2", "prov", "儿科", languages=("zh", "bo"), capacity=2),
]


@dataclass
class World:
    store: Store
    clock: ManualClock
    directory: Directory
    audit: AuditLog
    tokens: TokenService
    consults: ConsultService


async def build_world(store: Store, clock: ManualClock, keyring: Keyring) -> World:
    audit = AuditLog(store, clock)
    directory = Directory(store, audit)
    tokens = TokenService(store, keyring, clock, audit)
    consults = ConsultService(
        store, directory, tokens, audit, clock, escalate_after_s=ESCALATE_AFTER
    )
    return World(store, clock, directory, audit, tokens, consults)


KEYRING = Keyring({"k1": b"k" * 32}, active="k1")


@pytest.fixture
async def world(store: Store) -> AsyncIterator[World]:
    w = await build_world(store, ManualClock(T0), KEYRING)
    for site in SITES:
        await w.directory.put_site(site)
    for expert in DOCTORS:
        await w.directory.put_expert(expert)
    yield w


def ask(
    specialty: str = "儿科",
    urgency: Urgency = Urgency.ROUTINE,
    language: str = "zh",
    clinic: str = "v1",
    reason: str = "孩子发烧三天",
) -> ConsultRequest:
    return ConsultRequest(
        clinic_site_id=clinic,
        specialty=specialty,
        urgency=urgency,
        language=language,
        reason=reason,
    )


async def loads(w: World, *expert_ids: str) -> list[int]:
    return [int(await w.store.get(f"consult:load:{e}") or b"0") for e in expert_ids]


async def drain(sub: object, count: int) -> list[object]:
    events = []
    for _ in range(count):
        event = await sub.get(timeout=5.0)  # type: ignore[attr-defined]
        assert event is not None, f"only {len(events)} of {count} events arrived"
        events.append(decode_event(event.data))
    return events


@pytest.mark.timeout(60)
async def test_a_full_consult_from_request_to_outcome(world: World) -> None:
    w = world
    requested = await w.consults.request(ask(language="bo"), CLINIC)
    ticket = requested.ticket
    # Neither the township nor the county has a pediatrician: it goes straight to the province.
    assert ticket.route == ("th1", "county", "prov")
    assert (ticket.level, ticket.routed_site_id, ticket.state) == (2, "prov", ConsultState.WAITING)
    clinic_claims = await w.tokens.verify(requested.token, required_role=Role.CLINIC)
    assert (clinic_claims.sub, clinic_claims.session) == ("v1", ticket.id)

    room = await w.consults.waiting_room(ticket.id)
    assert (room.position, room.doctors_on_duty, room.estimated_wait_s) == (0, 2, PICKUP_S)

    # The Tibetan-speaking pediatrician comes first; both see the request.
    assert [e.id for e in await w.consults.match_experts(ticket.id)] == ["d-ped2", "d-ped1"]
    for eid in ("d-ped1", "d-ped2"):
        assert [t.id for t in await w.consults.tickets_for_expert(eid)] == [ticket.id]
    assert await w.consults.tickets_for_expert("d-th") == []

    async with w.store.subscribe(
        session_channel(ticket.id),
        expert_channel("d-ped1"),
        expert_channel("d-ped2"),
        queue_channel("儿科", "prov"),
    ) as sub:
        claimed = await w.consults.claim(ticket.id, doc("d-ped2"))
        assert claimed.ticket.state is ConsultState.MATCHED
        assert claimed.ticket.expert_id == "d-ped2"
        doctor_claims = await w.tokens.verify(claimed.token, required_role=Role.DOCTOR)
        assert doctor_claims.session == ticket.id
        assert await w.consults.tickets_for_expert("d-ped1") == []
        assert await w.consults.position(ticket.id) is None
        assert await loads(w, "d-ped2") == [1]

        w.clock.advance(30)
        admitted = await w.consults.admit(ticket.id, doc("d-ped2"))
        assert admitted.state is ConsultState.ADMITTED and admitted.admitted_at == T0 + 30

        handed = await w.consults.hand_over(ticket.id, "d-ped1", doc("d-ped2"), note="请会诊")
        assert (handed.state, handed.expert_id) == (ConsultState.HANDED_OVER, "d-ped1")
        assert handed.previous_expert_ids == ("d-ped2",)
        assert await loads(w, "d-ped1", "d-ped2") == [1, 0]
        assert [t.id for t in await w.consults.assigned_to("d-ped1")] == [ticket.id]
        assert await w.consults.assigned_to("d-ped2") == []
        await w.consults.admit(ticket.id, doc("d-ped1"))

        w.clock.advance(600)
        ended = await w.consults.end(
            ticket.id, doc("d-ped1"), outcome=Outcome.RESOLVED, note="建议多喝水"
        )
        assert (ended.state, ended.outcome, ended.note) == (
            ConsultState.ENDED,
            Outcome.RESOLVED,
            "建议多喝水",
        )
        assert await loads(w, "d-ped1", "d-ped2") == [0, 0]
        assert await w.consults.list_open() == []

        events = await drain(sub, 12)
    states = [e.state for e in events if isinstance(e, ConsultStateChanged)]
    assert states == [
        ConsultState.MATCHED,
        ConsultState.ADMITTED,
        ConsultState.HANDED_OVER,
        ConsultState.ADMITTED,
        ConsultState.ENDED,
    ]
    assert [e.change for e in events if isinstance(e, QueueChanged)] == ["removed"]
    assignments = [(e.expert_id, e.change) for e in events if isinstance(e, ExpertAssignment)]
    assert assignments == [
        ("d-ped2", "claimed"),
        ("d-ped2", "admitted"),
        ("d-ped2", "handed_over_away"),
        ("d-ped1", "handed_over_to_you"),
        ("d-ped1", "admitted"),
        ("d-ped1", "ended"),
    ]

    audit = await w.audit.read(session=ticket.id)
    assert [e.action for e in audit.entries] == [
        AuditAction.CONSULT_REQUEST,
        AuditAction.CONSULT_CLAIM,
        AuditAction.ADMIT,
        AuditAction.HAND_OVER,
        AuditAction.ADMIT,
        AuditAction.CONSULT_END,
    ]
    assert audit.entries[3].detail == {"from": "d-ped2", "to": "d-ped1"}

    # The 600 s consult now feeds the next estimate, once both pediatricians are busy.
    busy = [await w.consults.request(ask(), CLINIC) for _ in range(5)]
    await w.consults.claim(busy[0].ticket.id, doc("d-ped1"))
    await w.consults.claim(busy[1].ticket.id, doc("d-ped1"))
    await w.consults.claim(busy[2].ticket.id, doc("d-ped2"))
    await w.consults.claim(busy[3].ticket.id, doc("d-ped2"))
    room = await w.consults.waiting_room(busy[4].ticket.id)
    assert room.position == 0 and room.estimated_wait_s == PICKUP_S + 600


async def test_waiting_room_orders_by_urgency_and_estimates_without_history(
    world: World,
) -> None:
    w = world
    await w.directory.set_on_duty("d-ped2", False)
    routine = (await w.consults.request(ask(), CLINIC)).ticket
    w.clock.advance(60)
    urgent = (await w.consults.request(ask(urgency=Urgency.URGENT), CLINIC)).ticket
    w.clock.advance(60)
    emergency = (await w.consults.request(ask(urgency=Urgency.EMERGENCY), CLINIC)).ticket
    positions = [await w.consults.position(t.id) for t in (emergency, urgent, routine)]
    assert positions == [0, 1, 2]
    # One doctor of capacity 2, idle: the first two get a pickup estimate, the third a consult.
    estimates = [await w.consults.estimated_wait_s(t.id) for t in (emergency, urgent, routine)]
    assert estimates == [PICKUP_S, PICKUP_S, PICKUP_S + DEFAULT_SERVICE_S]
    seen = await w.consults.tickets_for_expert("d-ped1")
    assert [t.id for t in seen] == [emergency.id, urgent.id, routine.id]
    # Long enough waiting lets the routine request overtake a newer urgent one.
    w.clock.advance(60 * 30)
    late_urgent = (await w.consults.request(ask(urgency=Urgency.URGENT), CLINIC)).ticket
    assert await w.consults.position(late_urgent.id) == 3


@pytest.mark.parametrize(
    ("case", "request_", "actor", "error", "message"),
    [
        ("reason too long", ask(reason="病" * 501), CLINIC, InvalidInput, "reason"),
        ("reason blank", ask(reason="   "), CLINIC, InvalidInput, "few words"),
        ("reason empty", ask(reason=""), CLINIC, InvalidInput, "reason"),
        ("bad specialty", ask(specialty="a:b"), CLINIC, InvalidInput, "specialty"),
        ("bad language", ask(language="Chinese"), CLINIC, InvalidInput, "language"),
        ("unknown clinic", ask(clinic="v9"), Actor("v9", Role.CLINIC), InvalidInput, "exist"),
        ("a school", ask(clinic="school"), Actor("school", Role.CLINIC), InvalidInput, "school"),
        ("another clinic", ask(clinic="v2"), CLINIC, Forbidden, "clinic itself"),
        ("a doctor", ask(), doc("d-th"), Forbidden, "clinic itself"),
    ],
)
async def test_request_validation(
    world: World,
    case: str,
    request_: ConsultRequest,
    actor: Actor,
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        await world.consults.request(request_, actor)


async def test_request_reason_of_exactly_500_characters_is_fine(world: World) -> None:
    ticket = (await world.consults.request(ask(reason="病" * 500), CLINIC)).ticket
    assert len(ticket.reason) == 500
    made = await world.consults.request(ask(clinic="v2"), OPERATOR)  # operators may ask too
    assert made.ticket.requested_by == "op1"


@pytest.mark.timeout(60)
async def test_exactly_one_of_many_concurrent_claimers_wins_across_nodes(
    store: Store, store_handles: StoreHandleFactory
) -> None:
    clock = ManualClock(T0)
    nodes = [await build_world(await store_handles(), clock, KEYRING) for _ in range(3)]
    first = nodes[0]
    for site in SITES:
        await first.directory.put_site(site)
    team = [doctor(f"p{i}", "prov", "骨科", capacity=3) for i in range(12)]
    for expert in team:
        await first.directory.put_expert(expert)
    tickets = [(await first.consults.request(ask("骨科"), CLINIC)).ticket for _ in range(6)]

    async def attempt(node: World, ticket_id: str, expert_id: str) -> tuple[str, str] | None:
        try:
            await node.consults.claim(ticket_id, doc(expert_id))
        except Conflict:
            return None
        return ticket_id, expert_id

    attempts = [
        attempt(nodes[(i + j) % 3], t.id, e.id)
        for i, t in enumerate(tickets)
        for j, e in enumerate(team)
    ]
    wins = [w for w in await asyncio.gather(*attempts) if w is not None]
    assert sorted(t for t, _e in wins) == sorted(t.id for t in tickets)  # one win per ticket
    for ticket_id, expert_id in wins:
        assert (await first.consults.get(ticket_id)).expert_id == expert_id
    per_expert = {e.id: sum(1 for _t, x in wins if x == e.id) for e in team}
    assert per_expert == dict(zip(per_expert, await loads(first, *per_expert), strict=True))
    assert await first.store.queue_len("consult:waiting:骨科:prov") == 0


async def test_capacity_is_respected_even_under_concurrent_claims(world: World) -> None:
    w = world
    tickets = [(await w.consults.request(ask(), CLINIC)).ticket for _ in range(5)]

    async def attempt(ticket_id: str) -> bool:
        try:
            await w.consults.claim(ticket_id, doc("d-ped1"))
        except Conflict:
            return False
        return True

    results = await asyncio.gather(*(attempt(t.id) for t in tickets))
    assert results.count(True) == 2  # capacity 2
    assert await loads(w, "d-ped1") == [2]
    with pytest.raises(Conflict, match="at once"):
        await w.consults.claim(tickets[results.index(False)].id, doc("d-ped1"))
    # A doctor at capacity does not keep others from the request.
    taken = await w.consults.claim(tickets[results.index(False)].id, doc("d-ped2"))
    await w.consults.release(taken.ticket.id, doc("d-ped2"))
    # Ending one frees a place.
    held = await w.consults.assigned_to("d-ped1")
    await w.consults.end(held[0].id, doc("d-ped1"), outcome=Outcome.NO_SHOW)
    await w.consults.claim(tickets[results.index(False)].id, doc("d-ped1"))
    assert await loads(w, "d-ped1") == [2]


@pytest.mark.parametrize(
    ("case", "actor", "error", "message"),
    [
        ("wrong specialty", doc("d-prov-im"), Forbidden, "儿科"),
        ("other site", doc("d-th"), Forbidden, "儿科"),
        ("a clinic", CLINIC, Forbidden, "doctor"),
        ("an operator", OPERATOR, Forbidden, "doctor"),
        ("unknown doctor", doc("nobody"), NotFound, "nobody"),
    ],
)
async def test_claim_refusals(
    world: World, case: str, actor: Actor, error: type[Exception], message: str
) -> None:
    ticket = (await world.consults.request(ask(), CLINIC)).ticket
    with pytest.raises(error, match=message):
        await world.consults.claim(ticket.id, actor)
    assert await world.consults.position(ticket.id) == 0
    # The refused attempt does not block the doctors who may take it.
    claimed = await world.consults.claim(ticket.id, doc("d-ped1"))
    assert claimed.ticket.expert_id == "d-ped1"


async def test_off_duty_doctor_cannot_claim(world: World) -> None:
    ticket = (await world.consults.request(ask(), CLINIC)).ticket
    await world.directory.set_on_duty("d-ped1", False)
    with pytest.raises(Forbidden, match="on duty"):
        await world.consults.claim(ticket.id, doc("d-ped1"))
    assert await world.consults.tickets_for_expert("d-ped1") == []


async def test_only_the_holder_admits_ends_or_releases(world: World) -> None:
    w = world
    ticket = (await w.consults.request(ask(), CLINIC)).ticket
    with pytest.raises(Conflict, match="waiting cannot admit"):
        await w.consults.admit(ticket.id, doc("d-ped1"))
    await w.consults.claim(ticket.id, doc("d-ped1"))
    for action in (
        w.consults.admit(ticket.id, doc("d-ped2")),
        w.consults.release(ticket.id, doc("d-ped2")),
        w.consults.end(ticket.id, doc("d-ped2"), outcome=Outcome.RESOLVED),
        w.consults.end(ticket.id, CLINIC, outcome=Outcome.RESOLVED),
        w.consults.hand_over(ticket.id, "d-ped2", doc("d-th")),
    ):
        with pytest.raises(Forbidden):
            await action
    with pytest.raises(Conflict, match="already"):
        await w.consults.claim(ticket.id, doc("d-ped2"))
    ended = await w.consults.end(ticket.id, OPERATOR, outcome=Outcome.OTHER)
    assert ended.state is ConsultState.ENDED
    with pytest.raises(Conflict, match="ended cannot"):
        await w.consults.end(ticket.id, OPERATOR, outcome=Outcome.OTHER)
    with pytest.raises(NotFound):
        await w.consults.admit("c-none", doc("d-ped1"))


async def test_hand_over_needs_an_on_duty_doctor_with_room(world: World) -> None:
    w = world
    ticket = (await w.consults.request(ask(), CLINIC)).ticket
    await w.consults.claim(ticket.id, doc("d-ped1"))
    await w.directory.set_on_duty("d-ped2", False)
    with pytest.raises(Conflict, match="not a doctor on duty"):
        await w.consults.hand_over(ticket.id, "d-ped2", doc("d-ped1"))
    with pytest.raises(Conflict, match="already with"):
        await w.consults.hand_over(ticket.id, "d-ped1", doc("d-ped1"))
    # d-th has capacity 1: fill it, then a hand-over to it is refused and nothing moves.
    other = (await w.consults.request(ask("内科"), CLINIC)).ticket
    await w.consults.claim(other.id, doc("d-th"))
    with pytest.raises(Conflict, match="at once"):
        await w.consults.hand_over(ticket.id, "d-th", doc("d-ped1"))
    assert (await w.consults.get(ticket.id)).expert_id == "d-ped1"
    assert await loads(w, "d-ped1", "d-th") == [1, 1]
    # A hand-over to another specialty (a referral) is allowed.
    referred = await w.consults.hand_over(ticket.id, "d-prov-im", doc("d-ped1"))
    assert referred.expert_id == "d-prov-im"
    with pytest.raises(InvalidInput, match="note"):
        await w.consults.hand_over(ticket.id, "d-ped1", doc("d-prov-im"), note="x" * 2001)


async def test_release_puts_the_request_back_in_its_place(world: World) -> None:
    w = world
    first = (await w.consults.request(ask(), CLINIC)).ticket
    w.clock.advance(10)
    second = (await w.consults.request(ask(), CLINIC)).ticket
    await w.consults.claim(first.id, doc("d-ped1"))
    assert await w.consults.position(second.id) == 0
    released = await w.consults.release(first.id, doc("d-ped1"))
    assert released.state is ConsultState.WAITING
    assert released.previous_expert_ids == ("d-ped1",) and released.expert_id is None
    assert [await w.consults.position(t.id) for t in (first, second)] == [0, 1]
    assert await loads(w, "d-ped1") == [0]
    # The doctor who gave it back comes after the others when matching.
    assert [e.id for e in await w.consults.match_experts(first.id)] == ["d-ped2", "d-ped1"]


async def test_cancel_by_the_clinic(world: World) -> None:
    w = world
    waiting = (await w.consults.request(ask(), CLINIC)).ticket
    with pytest.raises(Forbidden, match="clinic that asked"):
        await w.consults.cancel(waiting.id, Actor("v2", Role.CLINIC))
    cancelled = await w.consults.cancel(waiting.id, CLINIC)
    assert (cancelled.state, cancelled.outcome) == (ConsultState.CANCELLED, Outcome.CANCELLED)
    assert await w.consults.position(waiting.id) is None
    assert await w.consults.tickets_for_expert("d-ped1") == []
    matched = (await w.consults.request(ask(), CLINIC)).ticket
    await w.consults.claim(matched.id, doc("d-ped1"))
    await w.consults.cancel(matched.id, CLINIC)
    assert await loads(w, "d-ped1") == [0]
    admitted = (await w.consults.request(ask(), CLINIC)).ticket
    await w.consults.claim(admitted.id, doc("d-ped1"))
    await w.consults.admit(admitted.id, doc("d-ped1"))
    with pytest.raises(Conflict, match="admitted cannot cancel"):
        await w.consults.cancel(admitted.id, CLINIC)


@pytest.mark.timeout(60)
async def test_unclaimed_request_escalates_one_level_at_a_time(world: World) -> None:
    w = world
    ticket = (await w.consults.request(ask("内科"), CLINIC)).ticket
    assert (ticket.level, ticket.routed_site_id) == (0, "th1")
    assert [t.id for t in await w.consults.tickets_for_expert("d-th")] == [ticket.id]
    assert await w.consults.tickets_for_expert("d-county") == []

    assert await w.consults.sweep(T0 + ESCALATE_AFTER - 1) == []
    async with w.store.subscribe(session_channel(ticket.id)) as sub:
        moved = await w.consults.sweep(T0 + ESCALATE_AFTER)
        event = (await drain(sub, 1))[0]
    assert [(t.id, t.level, t.routed_site_id, t.state) for t in moved] == [
        (ticket.id, 1, "county", ConsultState.ESCALATED)
    ]
    assert isinstance(event, ConsultStateChanged) and event.routed_site_id == "county"
    assert await w.consults.tickets_for_expert("d-th") == []
    assert [t.id for t in await w.consults.tickets_for_expert("d-county")] == [ticket.id]
    assert (await w.consults.waiting_room(ticket.id)).routed_site_id == "county"
    with pytest.raises(Forbidden):
        await w.consults.claim(ticket.id, doc("d-th"))

    assert await w.consults.sweep(T0 + 2 * ESCALATE_AFTER - 1) == []
    top = await w.consults.sweep(T0 + 2 * ESCALATE_AFTER)
    assert [(t.level, t.routed_site_id) for t in top] == [(2, "prov")]
    assert await w.consults.sweep(T0 + 100 * ESCALATE_AFTER) == []  # nowhere further
    claimed = await w.consults.claim(ticket.id, doc("d-prov-im"))
    assert claimed.ticket.state is ConsultState.MATCHED
    entries = (await w.audit.read(session=ticket.id)).entries
    assert [e.detail for e in entries if e.action is AuditAction.CONSULT_ESCALATE] == [
        {"from": "th1", "to": "county"},
        {"from": "county", "to": "prov"},
    ]


async def test_emergencies_escalate_sooner_and_claimed_requests_never(world: World) -> None:
    w = world
    emergency = (await w.consults.request(ask("内科", Urgency.EMERGENCY), CLINIC)).ticket
    claimed = (await w.consults.request(ask("内科", clinic="v2"), Actor("v2", Role.CLINIC))).ticket
    await w.consults.claim(claimed.id, doc("d-th"))
    moved = await w.consults.sweep(T0 + ESCALATE_AFTER / 4)
    assert [t.id for t in moved] == [emergency.id]
    assert await w.consults.sweep(T0 + 10 * ESCALATE_AFTER) != []  # the emergency again
    assert (await w.consults.get(claimed.id)).level == 0


@pytest.mark.timeout(60)
async def test_concurrent_sweeps_on_several_nodes_escalate_each_request_once(
    store: Store, store_handles: StoreHandleFactory
) -> None:
    clock = ManualClock(T0)
    nodes = [await build_world(await store_handles(), clock, KEYRING) for _ in range(3)]
    for site in SITES:
        await nodes[0].directory.put_site(site)
    await nodes[0].directory.put_expert(DOCTORS[0])
    tickets = [(await nodes[0].consults.request(ask("内科"), CLINIC)).ticket for _ in range(8)]
    results = await asyncio.gather(*(n.consults.sweep(T0 + ESCALATE_AFTER) for n in nodes))
    escalated = sorted(t.id for batch in results for t in batch)
    assert escalated == sorted(t.id for t in tickets)
    for t in tickets:
        assert (await nodes[1].consults.get(t.id)).level == 1


async def test_session_tokens_only_for_the_clinic_holder_and_operators(world: World) -> None:
    w = world
    ticket = (await w.consults.request(ask(), CLINIC)).ticket
    await w.consults.claim(ticket.id, doc("d-ped1"))
    for actor, role in ((CLINIC, Role.CLINIC), (doc("d-ped1"), Role.DOCTOR)):
        claims = await w.tokens.verify(await w.consults.session_token(ticket.id, actor))
        assert (claims.role, claims.session) == (role, ticket.id)
    observer = await w.tokens.verify(await w.consults.session_token(ticket.id, OPERATOR))
    assert observer.role is Role.OBSERVER
    for stranger in (doc("d-ped2"), Actor("v2", Role.CLINIC)):
        with pytest.raises(Forbidden):
            await w.consults.session_token(ticket.id, stranger)


async def test_list_open_filters(world: World) -> None:
    w = world
    a = (await w.consults.request(ask(), CLINIC)).ticket
    w.clock.advance(1)
    b = (await w.consults.request(ask(clinic="v2"), Actor("v2", Role.CLINIC))).ticket
    await w.consults.claim(b.id, doc("d-ped1"))
    assert [t.id for t in await w.consults.list_open()] == [a.id, b.id]
    assert [t.id for t in await w.consults.list_open(state=ConsultState.MATCHED)] == [b.id]
    assert [t.id for t in await w.consults.list_open(clinic_site_id="v1")] == [a.id]
    assert [t.id for t in await w.consults.list_open(expert_id="d-ped1")] == [b.id]


def test_channels_a_doctor_console_follows() -> None:
    expert = doctor("d", "prov", "儿科", specialties=("儿科", "内科"))
    assert ConsultService.channels_for_expert(expert) == [
        "expert:d",
        "queue:儿科:prov",
        "queue:内科:prov",
    ]
