"""`ConsultRecords`: where consult tickets live in the store and the atomic steps on them.

Every ticket change is a compare-and-set on the ticket's key, so among concurrent actors on any
number of nodes exactly one wins (one doctor per ticket). Layout:

- `consult:ticket:<id>`: the ticket (JSON), with the doctor's note. Once ended or cancelled
  it is kept for the retention period (then erased by the retention sweep, audited; its TTL of
  a day more is only a backstop).
- `consult:ended` (queue): ended and cancelled tickets scored by when they closed, so the
  retention sweep finds the expired ones without scanning.
- `snapshots:<id>` (map): the consult's snapshot records (the images are files, see
  signaling/retention.py); erased with the ticket.
- `consult:waiting:<specialty>:<site>` (queue): claimable tickets routed to a site, scored by
  `matching.queue_score` (lowest first), so a doctor reads only the queues of their
  specialties at their site.
- `consult:escalation` (queue): claimable tickets below the top of their route, scored by when
  they become due for escalation.
- `consult:open` (map): ids of tickets not ended or cancelled (operator listings).
- `consult:assigned:<expert>` (map): ids of tickets an expert holds.
- `consult:gate:<id>:<level>:<round>`: the one doctor trying to claim a waiting ticket in this
  round (others wait for the outcome); expires after a few seconds.
- `consult:load:<expert>` (counter): consults an expert holds, checked against capacity under
  `consult:lock:<expert>` (a short-lived claim: one assignment to an expert at a time).
  `consult:loads:<site>` (map) mirrors the counters of a site's experts for matching (one
  read); it may lag a concurrent change by an instant, which affects ranking, never capacity.
- `consult:service_times:<specialty>` (log): recent consult durations for the estimate.

Events go out on the channels of `broker.events`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable

import msgspec

from broker.consult_state import (
    CLAIMABLE,
    TERMINAL,
    ConsultEvent,
    ConsultState,
    ConsultTicket,
    next_consult_state,
)
from broker.errors import Conflict, NotFound
from broker.events import (
    BrokerEvent,
    ConsultStateChanged,
    ExpertAssignment,
    QueueChanged,
    encode_event,
    expert_channel,
    queue_channel,
    session_channel,
)
from broker.matching import ticket_score
from broker.models import Expert, Urgency, decode_as, encode
from broker.store import Store

ESCALATION_QUEUE = "consult:escalation"
OPEN_MAP = "consult:open"
ENDED_QUEUE = "consult:ended"
DEFAULT_RETENTION_S = 365 * 24 * 3600.0
"""How long an ended consult's note and snapshots are kept (`--consult-retention-days`)."""
RETENTION_BACKSTOP_S = 24 * 3600.0
"""An ended ticket's TTL is the retention period plus this: the sweep erases it first."""
CAS_ATTEMPTS = 5
"""Tries of a ticket change that lost a compare-and-set to an unrelated concurrent change."""
LOCK_TTL_S = 10.0
"""Lifetime of an expert's assignment lock (a node dying while holding it blocks no longer)."""
LOCK_WAIT_S = 3.0
"""How long an assignment waits for the expert's lock before giving up."""

GATE_POLL_S = 0.01
"""First wait before a doctor waiting at a claim gate looks again (a claim takes a few ms)."""

TicketEdit = Callable[[ConsultTicket, ConsultState], ConsultTicket]
"""Builds the changed ticket from the current one and the state it moves to."""
TicketCheck = Callable[[ConsultTicket], None]
"""Raises to refuse a change, given the current ticket."""


def ticket_key(ticket_id: str) -> str:
    return f"consult:ticket:{ticket_id}"


def waiting_queue(specialty: str, site_id: str) -> str:
    return f"consult:waiting:{specialty}:{site_id}"


def claim_gate_key(ticket: ConsultTicket) -> str:
    """One gate per waiting round: a new level or a release opens a new round."""
    return f"consult:gate:{ticket.id}:{ticket.level}:{len(ticket.previous_expert_ids)}"


def snapshots_map(ticket_id: str) -> str:
    return f"snapshots:{ticket_id}"


def retention_cutoff(now: float, retention_s: float) -> float:
    """Consults that closed before this instant are past retention."""
    return now - retention_s


def lock_key(expert_id: str) -> str:
    return f"consult:lock:{expert_id}"


def load_key(expert_id: str) -> str:
    return f"consult:load:{expert_id}"


def loads_map(site_id: str) -> str:
    return f"consult:loads:{site_id}"


def assigned_map(expert_id: str) -> str:
    return f"consult:assigned:{expert_id}"


def service_log(specialty: str) -> str:
    return f"consult:service_times:{specialty}"


class ConsultRecords:
    """Store access for consults; see the module docstring."""

    def __init__(self, store: Store, *, aging_per_minute: float, escalate_after_s: float,
                 retention_s: float = DEFAULT_RETENTION_S) -> None:
        self.store = store
        self.aging_per_minute = aging_per_minute
        self.escalate_after_s = escalate_after_s
        self.retention_s = retention_s

    # --- tickets ------------------------------------------------------------------------
    async def find(self, ticket_id: str) -> ConsultTicket | None:
        raw = await self.store.get(ticket_key(ticket_id))
        return None if raw is None else decode_as(raw, ConsultTicket)

    async def get(self, ticket_id: str) -> ConsultTicket:
        ticket = await self.find(ticket_id)
        if ticket is None:
            raise NotFound(f"no consult {ticket_id!r}")
        return ticket

    async def get_many(self, ids: list[str]) -> list[ConsultTicket]:
        """The tickets that exist among `ids`, in that order."""
        raws = await asyncio.gather(*(self.store.get(ticket_key(i)) for i in ids))
        return [decode_as(raw, ConsultTicket) for raw in raws if raw is not None]

    async def create(self, ticket: ConsultTicket) -> None:
        """Store a new claimable ticket and queue it."""
        await self.store.set(ticket_key(ticket.id), encode(ticket))
        await asyncio.gather(self.enqueue(ticket), self.store.map_set(OPEN_MAP, ticket.id, b""))

    async def change(
        self,
        ticket_id: str,
        event: ConsultEvent,
        edit: TicketEdit,
        check: TicketCheck | None = None,
    ) -> tuple[ConsultTicket, ConsultTicket]:
        """Apply `event` by compare-and-set: (before, after). Raises `Conflict` when the state
        machine refuses, or whatever `check` raises."""
        key = ticket_key(ticket_id)
        for _attempt in range(CAS_ATTEMPTS):
            raw = await self.store.get(key)
            if raw is None:
                raise NotFound(f"no consult {ticket_id!r}")
            before = decode_as(raw, ConsultTicket)
            state = next_consult_state(before.state, event)
            if check is not None:
                check(before)
            after = msgspec.structs.replace(edit(before, state), state=state)
            ttl = self.retention_s + RETENTION_BACKSTOP_S if state in TERMINAL else None
            if await self.store.compare_and_set(key, raw, encode(after), ttl=ttl):
                if state in TERMINAL:
                    closed_at = after.ended_at if after.ended_at is not None else \
                        after.requested_at
                    await asyncio.gather(
                        self.store.map_delete(OPEN_MAP, ticket_id),
                        self.store.queue_push(ENDED_QUEUE, ticket_id, closed_at),
                    )
                return before, after
        raise Conflict("the consult changed while this was being done; try again")

    async def open_ids(self) -> list[str]:
        return list(await self.store.map_all(OPEN_MAP))

    async def assigned_ids(self, expert_id: str) -> list[str]:
        return list(await self.store.map_all(assigned_map(expert_id)))

    # --- retention ----------------------------------------------------------------------
    async def past_retention(self, now: float, limit: int) -> list[tuple[str, float]]:
        """(ticket id, closed at) of up to `limit` consults closed longer than the retention
        period ago, longest ago first."""
        cutoff = retention_cutoff(now, self.retention_s)
        items = await self.store.queue_items(ENDED_QUEUE, limit=limit)
        return [(ticket_id, closed) for ticket_id, closed in items if closed < cutoff]

    async def erase(self, ticket_id: str) -> int:
        """Delete a closed consult's ticket (and note) and snapshot records; how many snapshot
        records there were. The snapshot files are the caller's."""
        snapshots = await self.store.map_all(snapshots_map(ticket_id))
        for snap_id in snapshots:
            await self.store.map_delete(snapshots_map(ticket_id), snap_id)
        await self.store.delete(ticket_key(ticket_id))
        await self.store.queue_remove(ENDED_QUEUE, ticket_id)
        return len(snapshots)

    # --- queues -------------------------------------------------------------------------
    async def enqueue(self, ticket: ConsultTicket) -> None:
        """Put a claimable ticket in its site's waiting queue and, unless it is at the top of
        its route, in the escalation queue (scored by when it becomes due)."""
        score = ticket_score(ticket, self.aging_per_minute)
        jobs = [
            self.store.queue_push(
                waiting_queue(ticket.specialty, ticket.routed_site_id), ticket.id, score
            )
        ]
        if not ticket.top_level:
            jobs.append(
                self.store.queue_push(ESCALATION_QUEUE, ticket.id, self.escalation_due(ticket))
            )
        await asyncio.gather(*jobs)

    async def dequeue(self, ticket: ConsultTicket) -> None:
        await asyncio.gather(
            self.store.queue_remove(
                waiting_queue(ticket.specialty, ticket.routed_site_id), ticket.id
            ),
            self.store.queue_remove(ESCALATION_QUEUE, ticket.id),
        )

    def escalation_due(self, ticket: ConsultTicket) -> float:
        """When `ticket` becomes due for escalation (see `consult_state.should_escalate`)."""
        wait = self.escalate_after_s
        if ticket.urgency is Urgency.EMERGENCY:
            wait /= 4
        return ticket.level_since + wait

    async def escalation_candidates(self, limit: int) -> list[tuple[str, float]]:
        """(ticket id, due time) of the tickets soonest due for escalation."""
        return await self.store.queue_items(ESCALATION_QUEUE, limit=limit)

    async def reschedule_escalation(self, ticket: ConsultTicket | None, ticket_id: str) -> None:
        """Put a ticket back in the escalation queue at its due time, or drop it from the
        queue when it cannot escalate any more (gone, taken or at the top)."""
        if ticket is None or ticket.state not in CLAIMABLE or ticket.top_level:
            await self.store.queue_remove(ESCALATION_QUEUE, ticket_id)
        else:
            await self.store.queue_push(ESCALATION_QUEUE, ticket_id, self.escalation_due(ticket))

    async def rank(self, ticket: ConsultTicket) -> int | None:
        return await self.store.queue_rank(
            waiting_queue(ticket.specialty, ticket.routed_site_id), ticket.id
        )

    async def waiting_ids(
        self, specialties: tuple[str, ...], site_id: str, limit: int
    ) -> list[tuple[str, float]]:
        """Up to `limit` (id, score) per specialty queue at `site_id`."""
        queues = await asyncio.gather(
            *(self.store.queue_items(waiting_queue(s, site_id), limit=limit) for s in specialties)
        )
        return [item for queue in queues for item in queue]

    # --- claim gates ---------------------------------------------------------------------
    async def wait_for_claim_gate(self, ticket_id: str, expert_id: str, check: TicketCheck) -> str:
        """Become the one doctor trying to claim the ticket in its current waiting round (a
        level, a release); returns the gate's key. While another doctor holds the gate, wait
        for the outcome: `Conflict` once the ticket is taken or closed (or after
        `LOCK_WAIT_S`), the gate when that doctor gave up. `check` may refuse the ticket."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOCK_WAIT_S
        delay = GATE_POLL_S
        while True:
            ticket = await self.get(ticket_id)
            if ticket.state not in CLAIMABLE:
                raise Conflict("this request has already been taken or closed")
            check(ticket)
            key = claim_gate_key(ticket)
            if await self.store.claim(key, expert_id, ttl=LOCK_TTL_S):
                return key
            if loop.time() > deadline:
                raise Conflict("another doctor is taking this request")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10 * GATE_POLL_S)

    async def close_claim_gate(self, key: str, expert_id: str) -> None:
        """Let a waiting doctor try (the gate's holder did not take the ticket)."""
        await self.store.release(key, expert_id)

    # --- loads --------------------------------------------------------------------------
    async def loads(self, site_id: str) -> dict[str, int]:
        """Consults held by each expert of a site (the mirror map; see the module docstring)."""
        raw = await self.store.map_all(loads_map(site_id))
        return {expert_id: int(value) for expert_id, value in raw.items()}

    async def load(self, expert_id: str) -> int:
        return int(await self.store.get(load_key(expert_id)) or b"0")

    async def assign(
        self,
        expert: Expert,
        ticket_id: str,
        event: ConsultEvent,
        edit: TicketEdit,
        check: TicketCheck,
    ) -> tuple[ConsultTicket, ConsultTicket]:
        """Give the ticket to `expert` within capacity. Under the expert's lock (one assignment
        to an expert at a time, across nodes) the load is checked, the ticket changes by
        compare-and-set, and only then the load counts it, so a lost race never holds a place.
        """
        async with self._expert_lock(expert.id):
            load = await self.load(expert.id)
            if load >= expert.capacity:
                raise Conflict(
                    f"{expert.name} already holds {load} consult(s), the most they take at once"
                )
            before, after = await self.change(ticket_id, event, edit, check)
            load = await self.store.incr(load_key(expert.id), 1)
        await asyncio.gather(
            self.store.map_set(assigned_map(expert.id), ticket_id, b""),
            self._mirror_load(expert.id, expert.site_id, load),
        )
        return before, after

    async def unassign(self, expert_id: str, site_id: str | None, ticket_id: str) -> None:
        """The expert no longer holds the ticket: one place freed."""
        load = await self.store.incr(load_key(expert_id), -1)
        if load < 0:  # a count lost to a crash between assignment steps; never go negative
            load = await self.store.incr(load_key(expert_id), -load)
        await asyncio.gather(
            self.store.map_delete(assigned_map(expert_id), ticket_id),
            self._mirror_load(expert_id, site_id, load),
        )

    async def _mirror_load(self, expert_id: str, site_id: str | None, load: int) -> None:
        if site_id is not None:
            await self.store.map_set(loads_map(site_id), expert_id, str(load).encode())

    @contextlib.asynccontextmanager
    async def _expert_lock(self, expert_id: str) -> AsyncIterator[None]:
        key, owner = lock_key(expert_id), uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOCK_WAIT_S
        delay = 0.002
        while not await self.store.claim(key, owner, ttl=LOCK_TTL_S):
            if loop.time() > deadline:
                raise Conflict("another assignment to this doctor is in progress; try again")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        try:
            yield
        finally:
            await self.store.release(key, owner)

    # --- service times ------------------------------------------------------------------
    async def record_service_time(self, specialty: str, seconds: float, window: int) -> None:
        await self.store.log_append(
            service_log(specialty), str(max(0.0, seconds)).encode(), max_len=window
        )

    async def service_times(self, specialty: str, window: int) -> list[float]:
        entries = await self.store.log_read(service_log(specialty), limit=window)
        return [float(e.data) for e in entries]

    # --- events -------------------------------------------------------------------------
    async def _publish(self, channel: str, event: BrokerEvent) -> None:
        await self.store.publish(channel, encode_event(event))

    async def publish_change(self, ticket: ConsultTicket, by: str, now: float) -> None:
        """`consult_state` on the consult's session channel."""
        await self._publish(
            session_channel(ticket.id),
            ConsultStateChanged(
                at=now,
                session=ticket.id,
                state=ticket.state,
                expert_id=ticket.expert_id,
                routed_site_id=ticket.routed_site_id,
                level=ticket.level,
                by=by,
                outcome=ticket.outcome,
            ),
        )

    async def publish_queue(self, ticket: ConsultTicket, change: str, now: float) -> None:
        """`queue_changed` on the channel of the queue the ticket is (or was) in."""
        await self._publish(
            queue_channel(ticket.specialty, ticket.routed_site_id),
            QueueChanged(
                at=now,
                specialty=ticket.specialty,
                site_id=ticket.routed_site_id,
                ticket_id=ticket.id,
                change=change,
            ),
        )

    async def publish_assignment(
        self, ticket: ConsultTicket, expert_id: str | None, change: str, now: float
    ) -> None:
        """`assignment` on the expert's channel."""
        if not expert_id:
            return
        await self._publish(
            expert_channel(expert_id),
            ExpertAssignment(
                at=now, expert_id=expert_id, ticket_id=ticket.id, state=ticket.state, change=change
            ),
        )
