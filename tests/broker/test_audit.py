"""The audit log: append-only entries, read in order, paged, filtered by session."""

from __future__ import annotations

import pytest

from broker.audit import AuditAction, AuditLog
from broker.clock import ManualClock
from broker.errors import InvalidInput
from broker.store import Store


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_700_000_000.0)


async def test_entries_come_back_in_append_order_with_their_facts(
    store: Store, clock: ManualClock
) -> None:
    audit = AuditLog(store, clock)
    first = await audit.append("t1", AuditAction.JOIN, session="cls-1", detail={"role": "teacher"})
    clock.advance(5)
    await audit.append("site-1", AuditAction.LEAVE, session="cls-1")
    page = await audit.read()
    assert [(e.actor, e.action, e.session, e.at) for e in page.entries] == [
        ("t1", AuditAction.JOIN, "cls-1", 1_700_000_000.0),
        ("site-1", AuditAction.LEAVE, "cls-1", 1_700_000_005.0),
    ]
    assert page.entries[0].id == first.id
    assert page.entries[0].detail == {"role": "teacher"}
    assert page.next_after == page.entries[-1].id


async def test_reading_after_a_cursor_pages_through_the_log(
    store: Store, clock: ManualClock
) -> None:
    audit = AuditLog(store, clock)
    for i in range(7):
        await audit.append(f"a{i}", AuditAction.ADMIT)
    first = await audit.read(limit=3)
    second = await audit.read(after=first.next_after, limit=3)
    third = await audit.read(after=second.next_after, limit=3)
    actors = [e.actor for p in (first, second, third) for e in p.entries]
    assert actors == [f"a{i}" for i in range(7)]
    empty = await audit.read(after=third.next_after)
    assert empty.entries == [] and empty.next_after == third.next_after


async def test_session_filter_returns_only_that_sessions_entries(
    store: Store, clock: ManualClock
) -> None:
    audit = AuditLog(store, clock)
    for i in range(30):
        await audit.append("x", AuditAction.JOIN, session=f"s{i % 3}", detail={"i": i})
    page = await audit.read(session="s1", limit=4)
    assert [e.detail["i"] for e in page.entries] == [1, 4, 7, 10]
    rest = await audit.read(after=page.next_after, session="s1", limit=100)
    assert [e.detail["i"] for e in rest.entries] == [13, 16, 19, 22, 25, 28]


@pytest.mark.parametrize("limit", [0, -1, 1001])
async def test_nonsense_limits_are_invalid_input(
    store: Store, clock: ManualClock, limit: int
) -> None:
    with pytest.raises(InvalidInput):
        await AuditLog(store, clock).read(limit=limit)
