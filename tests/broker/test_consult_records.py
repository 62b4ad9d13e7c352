"""`ConsultRecords` retention: closed consults are indexed by when they closed, found once past
the retention period (clock passed in), and erased with their note and snapshot records; an
ended ticket's TTL is the retention period plus a day. Memory and Redis stores."""

from __future__ import annotations

import msgspec
import pytest

from broker.consult_records import (
    ENDED_QUEUE,
    RETENTION_BACKSTOP_S,
    ConsultRecords,
    retention_cutoff,
    snapshots_map,
    ticket_key,
)
from broker.consult_state import ConsultEvent, ConsultState, ConsultTicket, Outcome
from broker.models import Urgency
from broker.store import Store

DAY = 86400.0
RETENTION_S = 10 * DAY
T0 = 1_800_000_000.0


def ticket(ticket_id: str, at: float) -> ConsultTicket:
    return ConsultTicket(id=ticket_id, clinic_site_id="c-1", specialty="内科",
                         urgency=Urgency.ROUTINE, language="zh", reason="cough",
                         requested_at=at, requested_by="c-1", route=("s-1",), level_since=at)


async def closed(records: ConsultRecords, ticket_id: str, at: float, note: str = "") -> None:
    await records.create(ticket(ticket_id, at - 60))
    await records.change(
        ticket_id, ConsultEvent.CANCEL,
        lambda t, _s: msgspec.structs.replace(t, ended_at=at, outcome=Outcome.CANCELLED,
                                              note=note))


@pytest.mark.parametrize(("now", "retention", "cutoff"),
                         [(100.0, 30.0, 70.0), (T0, RETENTION_S, T0 - RETENTION_S)])
def test_the_cutoff_is_now_minus_the_retention(now: float, retention: float,
                                               cutoff: float) -> None:
    assert retention_cutoff(now, retention) == cutoff


async def test_closed_consults_are_past_retention_only_after_the_period(store: Store) -> None:
    records = ConsultRecords(store, aging_per_minute=1.0, escalate_after_s=60.0,
                             retention_s=RETENTION_S)
    await closed(records, "old", T0)
    await closed(records, "new", T0 + 5 * DAY)
    await records.create(ticket("open", T0))
    assert await records.past_retention(T0 + RETENTION_S - 1, 10) == []
    assert await records.past_retention(T0 + RETENTION_S + 1, 10) == [("old", T0)]
    later = await records.past_retention(T0 + 20 * DAY, 10)
    assert [i for i, _ in later] == ["old", "new"]
    assert await records.past_retention(T0 + 20 * DAY, 1) == [("old", T0)]


async def test_an_ended_ticket_expires_a_day_after_its_retention(store: Store) -> None:
    records = ConsultRecords(store, aging_per_minute=1.0, escalate_after_s=60.0,
                             retention_s=RETENTION_S)
    await closed(records, "t-1", T0)
    left = await store.ttl(ticket_key("t-1"))
    assert left is not None
    assert RETENTION_S < left <= RETENTION_S + RETENTION_BACKSTOP_S


async def test_erase_removes_the_ticket_note_snapshot_records_and_index(store: Store) -> None:
    records = ConsultRecords(store, aging_per_minute=1.0, escalate_after_s=60.0,
                             retention_s=RETENTION_S)
    await closed(records, "t-1", T0, note="patient history")
    await closed(records, "t-2", T0)
    await store.map_set(snapshots_map("t-1"), "s1", b"{}")
    await store.map_set(snapshots_map("t-1"), "s2", b"{}")
    assert (await records.get("t-1")).state is ConsultState.CANCELLED
    assert await records.erase("t-1") == 2
    assert await records.find("t-1") is None
    assert await store.map_all(snapshots_map("t-1")) == {}
    assert [m for m, _ in await store.queue_items(ENDED_QUEUE)] == ["t-2"]
    assert (await records.get("t-2")).id == "t-2"  # the other consult is untouched
    assert await records.erase("t-1") == 0  # erasing twice (two nodes) is harmless
