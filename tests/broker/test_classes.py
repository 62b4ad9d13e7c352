"""Dual-teacher classes end to end on both stores: schedule with join links, go live when the
teacher joins, late joining, presence, spotlight, hands, end, and the events nodes push."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from broker.audit import AuditAction, AuditLog
from broker.class_state import ClassState
from broker.classes import ClassService
from broker.clock import ManualClock
from broker.directory import Directory
from broker.errors import Conflict, Forbidden, InvalidInput, NotFound
from broker.events import (
    ClassStateChanged,
    HandsChanged,
    PresenceChanged,
    SpotlightChanged,
    decode_event,
    session_channel,
)
from broker.models import Actor, Expert, ExpertKind, Role, Site, SiteKind
from broker.store import Store
from broker.tokens import Keyring, TokenService

T0 = 1_700_000_000.0
TEACHER = Actor("t-math", Role.TEACHER)
OPERATOR = Actor("op1", Role.OPERATOR)
ROOMS = ("room1", "room2", "room3", "room4")


def room(rid: str) -> Actor:
    return Actor(rid, Role.ASSISTANT)


@dataclass
class World:
    store: Store
    clock: ManualClock
    audit: AuditLog
    tokens: TokenService
    classes: ClassService


@pytest.fixture
async def world(store: Store) -> AsyncIterator[World]:
    clock = ManualClock(T0)
    audit = AuditLog(store, clock)
    directory = Directory(store)
    tokens = TokenService(store, Keyring({"k1": b"k" * 32}, active="k1"), clock)
    await directory.put_site(Site(id="school", name="城区小学", kind=SiteKind.SCHOOL))
    for i, rid in enumerate(ROOMS, start=1):
        await directory.put_site(
            Site(id=rid, name=f"教学点{i}", kind=SiteKind.CLASSROOM, parent_site_id="school")
        )
    await directory.put_site(Site(id="clinic", name="卫生室", kind=SiteKind.VILLAGE_CLINIC))
    await directory.put_expert(
        Expert(id="t-math", name="王老师", kind=ExpertKind.TEACHER, specialties=("数学",))
    )
    await directory.put_expert(
        Expert(id="d1", name="李医生", kind=ExpertKind.DOCTOR, specialties=("内科",))
    )
    classes = ClassService(store, directory, tokens, audit, clock, presence_ttl_s=30.0)
    yield World(store, clock, audit, tokens, classes)


async def schedule(w: World, **changes: Any) -> Any:
    fields: dict[str, Any] = {
        "title": "四年级数学：分数的初步认识",
        "subject": "数学",
        "teacher_id": "t-math",
        "starts_at": T0 + 600,
        "classroom_site_ids": ROOMS,
        "actor": TEACHER,
        "recording_allowed": True,
        "observers": 1,
    }
    fields.update(changes)
    return await w.classes.schedule(**fields)


async def sub_is_quiet(w: World, class_id: str) -> bool:
    """No stray event follows (a fresh subscription sees nothing without new actions)."""
    async with w.store.subscribe(session_channel(class_id)) as sub:
        return await sub.get(timeout=0.2) is None


async def events_of(sub: Any, count: int) -> list[Any]:
    found = []
    for _ in range(count):
        event = await sub.get(timeout=5.0)
        assert event is not None, f"only {len(found)} of {count} events arrived"
        found.append(decode_event(event.data))
    return found


@pytest.mark.timeout(60)
async def test_a_full_class_from_schedule_to_end(world: World) -> None:
    w = world
    scheduled = await schedule(w)
    klass = scheduled.klass
    assert klass.state is ClassState.SCHEDULED and klass.recording_allowed
    host = await w.tokens.verify(scheduled.host_token, required_role=Role.TEACHER)
    assert (host.sub, host.session, host.name) == ("t-math", klass.id, "王老师")
    assert set(scheduled.classroom_tokens) == set(ROOMS)
    for rid, token in scheduled.classroom_tokens.items():
        claims = await w.tokens.verify(token, required_role=Role.ASSISTANT)
        assert (claims.sub, claims.session) == (rid, klass.id)
    # Links live until an hour after the planned end.
    assert host.exp == klass.starts_at + klass.duration_s + 3600
    observer = await w.tokens.verify(scheduled.observer_tokens[0], required_role=Role.OBSERVER)

    async with w.store.subscribe(session_channel(klass.id)) as sub:
        # Two classrooms get ready before the teacher arrives.
        for rid in ROOMS[:2]:
            await w.classes.join(klass.id, room(rid))
        assert (await w.classes.get(klass.id)).state is ClassState.SCHEDULED
        joined = await w.classes.join(klass.id, TEACHER)
        assert joined.state is ClassState.LIVE and joined.started_at == T0
        # Late joiners are welcome while live.
        w.clock.advance(300)
        await w.classes.join(klass.id, room("room3"))
        await w.classes.join(klass.id, observer.actor)

        roster = {e.participant_id: e for e in await w.classes.roster(klass.id)}
        assert [p for p, e in roster.items() if e.present] == [
            "t-math",
            "room1",
            "room2",
            "room3",
            observer.sub,
        ]
        assert not roster["room4"].present and roster["room4"].name == "教学点4"
        assert roster["room3"].since == T0 + 300 and roster["t-math"].name == "王老师"

        await w.classes.raise_hand(klass.id, room("room2"))
        w.clock.advance(1)
        hands = await w.classes.raise_hand(klass.id, room("room1"))
        assert [h.participant_id for h in hands] == ["room2", "room1"]
        again = await w.classes.raise_hand(klass.id, room("room2"))  # keeps its place
        assert [h.participant_id for h in again] == ["room2", "room1"]

        called = await w.classes.set_spotlight(klass.id, "room2", TEACHER)
        assert called.spotlight == "room2"
        assert [h.participant_id for h in await w.classes.hands(klass.id)] == ["room1"]
        assert (await w.classes.set_spotlight(klass.id, None, TEACHER)).spotlight is None

        await w.classes.leave(klass.id, room("room3"))
        ended = await w.classes.end(klass.id, TEACHER)
        assert ended.state is ClassState.ENDED and ended.ended_at == T0 + 301
        assert await w.classes.hands(klass.id) == []

        events = await events_of(sub, 13)
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "PresenceChanged",  # room1
        "PresenceChanged",  # room2
        "ClassStateChanged",  # live
        "PresenceChanged",  # teacher
        "PresenceChanged",  # room3
        "PresenceChanged",  # observer
        "HandsChanged",
        "HandsChanged",
        "SpotlightChanged",
        "HandsChanged",  # room2's hand goes down when it is called on
        "SpotlightChanged",
        "PresenceChanged",  # room3 leaves
        "ClassStateChanged",  # ended
    ]
    assert await sub_is_quiet(w, klass.id)
    states = [e.state for e in events if isinstance(e, ClassStateChanged)]
    assert states == [ClassState.LIVE, ClassState.ENDED]
    assert [e.queue for e in events if isinstance(e, HandsChanged)] == [
        ["room2"],
        ["room2", "room1"],
        ["room1"],
    ]
    assert [e.participant_id for e in events if isinstance(e, SpotlightChanged)] == ["room2", None]
    assert [
        (e.participant_id, e.present) for e in events if isinstance(e, PresenceChanged)
    ][-1] == ("room3", False)

    with pytest.raises(Conflict, match="ended"):
        await w.classes.join(klass.id, room("room4"))
    actions = [e.action for e in (await w.audit.read(session=klass.id)).entries]
    assert actions[:2] == [AuditAction.CLASS_SCHEDULE, AuditAction.JOIN]
    assert AuditAction.CLASS_START in actions and actions[-1] is AuditAction.CLASS_END
    assert actions.count(AuditAction.JOIN) == 5 and AuditAction.SPOTLIGHT in actions


@pytest.mark.parametrize(
    ("case", "changes", "error", "message"),
    [
        ("unknown teacher", {"teacher_id": "t-x", "actor": OPERATOR}, InvalidInput, "teacher"),
        ("a doctor teaches", {"teacher_id": "d1", "actor": OPERATOR}, InvalidInput, "teacher"),
        ("someone else's class", {"actor": Actor("t-2", Role.TEACHER)}, Forbidden, "teacher"),
        ("a classroom schedules", {"actor": room("room1")}, Forbidden, "teacher"),
        ("no classrooms", {"classroom_site_ids": ()}, InvalidInput, "between 1"),
        ("classroom twice", {"classroom_site_ids": ("room1", "room1")}, InvalidInput, "twice"),
        ("not a classroom", {"classroom_site_ids": ("clinic",)}, InvalidInput, "not a classroom"),
        ("unknown classroom", {"classroom_site_ids": ("room9",)}, InvalidInput, "not a classroom"),
        ("too short", {"duration_s": 60.0}, InvalidInput, "5 minutes"),
        ("too long", {"duration_s": 9 * 3600.0}, InvalidInput, "8 hours"),
        ("in the past", {"starts_at": T0 - 86_400}, InvalidInput, "past"),
        ("far ahead", {"starts_at": T0 + 400 * 86_400}, InvalidInput, "far ahead"),
        ("empty title", {"title": "  "}, InvalidInput, "title"),
        ("too many observers", {"observers": 50}, InvalidInput, "observer"),
    ],
)
async def test_schedule_refusals(
    world: World, case: str, changes: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await schedule(world, **changes)


async def test_operator_schedules_with_long_lived_links(world: World) -> None:
    scheduled = await schedule(world, actor=OPERATOR, token_ttl_s=7 * 86_400)
    claims = await world.tokens.verify(scheduled.host_token)
    assert claims.exp == T0 + 7 * 86_400
    assert scheduled.klass.scheduled_by == "op1"
    assert [k.id for k in await world.classes.list_classes()] == [scheduled.klass.id]
    assert await world.classes.list_classes(state=ClassState.LIVE) == []


async def test_only_the_host_starts_ends_and_calls_on_classrooms(world: World) -> None:
    w = world
    klass = (await schedule(w)).klass
    for action in (
        w.classes.start(klass.id, room("room1")),
        w.classes.end(klass.id, Actor("t-2", Role.TEACHER)),
    ):
        with pytest.raises(Forbidden):
            await action
    with pytest.raises(Conflict, match="live"):
        await w.classes.set_spotlight(klass.id, "room1", TEACHER)
    with pytest.raises(Conflict, match="live"):
        await w.classes.raise_hand(klass.id, room("room1"))
    await w.classes.start(klass.id, OPERATOR)
    with pytest.raises(Conflict, match="live cannot start"):
        await w.classes.start(klass.id, TEACHER)
    with pytest.raises(Forbidden):
        await w.classes.set_spotlight(klass.id, "room1", room("room2"))
    with pytest.raises(InvalidInput, match="not a classroom"):
        await w.classes.set_spotlight(klass.id, "room9", TEACHER)
    with pytest.raises(Forbidden, match="classroom"):
        await w.classes.raise_hand(klass.id, TEACHER)
    await w.classes.raise_hand(klass.id, room("room1"))
    with pytest.raises(Forbidden):
        await w.classes.lower_hand(klass.id, "room1", room("room2"))
    assert await w.classes.lower_hand(klass.id, "room1", room("room1")) == []
    with pytest.raises(NotFound):
        await w.classes.start("k-none", TEACHER)


async def test_joining_needs_a_link_for_this_class(world: World) -> None:
    klass = (await schedule(world, classroom_site_ids=("room1",))).klass
    for stranger in (room("room2"), Actor("t-2", Role.TEACHER), Actor("d1", Role.DOCTOR)):
        with pytest.raises(Forbidden, match="not for this class"):
            await world.classes.join(klass.id, stranger)


async def test_scheduled_class_can_be_called_off(world: World) -> None:
    klass = (await schedule(world)).klass
    ended = await world.classes.end(klass.id, TEACHER)
    assert ended.state is ClassState.ENDED and ended.started_at is None
    with pytest.raises(Conflict):
        await world.classes.join(klass.id, TEACHER)


async def test_leaving_takes_a_classroom_out_of_the_spotlight(world: World) -> None:
    w = world
    klass = (await schedule(w)).klass
    await w.classes.join(klass.id, TEACHER)
    await w.classes.join(klass.id, room("room1"))
    await w.classes.set_spotlight(klass.id, "room1", TEACHER)
    await w.classes.leave(klass.id, room("room1"))
    assert (await w.classes.get(klass.id)).spotlight is None
    roster = {e.participant_id: e.present for e in await w.classes.roster(klass.id)}
    assert roster["room1"] is False and roster["t-math"] is True


async def test_heartbeats_infer_the_role_and_report_new_arrivals(world: World) -> None:
    w = world
    klass = (await schedule(w)).klass
    assert await w.classes.mark_present(klass.id, "room4") is True
    assert await w.classes.mark_present(klass.id, "room4") is False
    assert await w.classes.mark_present(klass.id, "visitor") is True  # an observer
    roster = {e.participant_id: e for e in await w.classes.roster(klass.id)}
    assert roster["room4"].role is Role.ASSISTANT and roster["room4"].present
    assert roster["visitor"].role is Role.OBSERVER
    assert await w.classes.mark_absent(klass.id, "visitor") is True
    assert "visitor" not in {e.participant_id for e in await w.classes.roster(klass.id)}
