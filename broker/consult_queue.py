"""`ConsultQueue`: what the waiting room and the doctor console read: a request's position and
estimated wait, the requests a doctor may claim, the doctors who suit a request, open and held
consults."""

from __future__ import annotations

import asyncio
import heapq

from msgspec import Struct

from broker.consult_records import ConsultRecords
from broker.consult_state import ASSIGNED, CLAIMABLE, TERMINAL, ConsultState, ConsultTicket
from broker.directory import Directory
from broker.errors import InvalidInput
from broker.events import expert_channel, queue_channel
from broker.matching import match, tickets_for_expert
from broker.models import Expert, ExpertKind
from broker.wait_estimate import SERVICE_WINDOW, estimate_wait_s


class WaitingRoom(Struct, frozen=True, kw_only=True):
    """What the clinic's waiting room shows."""

    ticket_id: str
    """The consult."""
    state: ConsultState
    """Where it is in its life."""
    position: int | None
    """0-based place in the queue of its site and specialty; None once taken or closed."""
    estimated_wait_s: float | None
    """Seconds until a doctor likely takes it; None once taken or closed."""
    routed_site_id: str
    """The site whose doctors see it now."""
    level: int
    """Escalation level (0: the nearest site of its route)."""
    doctors_on_duty: int
    """On-duty doctors of the specialty at that site."""


def channels_for_expert(expert: Expert) -> list[str]:
    """Channels a doctor console subscribes to: its own and its waiting queues."""
    channels = [expert_channel(expert.id)]
    if expert.kind is ExpertKind.DOCTOR and expert.site_id is not None:
        channels += [queue_channel(s, expert.site_id) for s in expert.specialties]
    return channels


class ConsultQueue:
    """Reads over consult tickets; see the module docstring."""

    def __init__(
        self, records: ConsultRecords, directory: Directory, *, aging_per_minute: float
    ) -> None:
        self._records = records
        self._directory = directory
        self._aging = aging_per_minute

    async def position(self, ticket_id: str) -> int | None:
        """0-based place of a waiting ticket in its queue; None when it is not waiting."""
        ticket = await self._records.get(ticket_id)
        return await self._records.rank(ticket) if ticket.state in CLAIMABLE else None

    async def waiting_room(self, ticket_id: str) -> WaitingRoom:
        """Position, estimate and where the ticket is routed, for the clinic's waiting room."""
        ticket = await self._records.get(ticket_id)
        site = ticket.routed_site_id
        doctors, loads, rank, durations = await asyncio.gather(
            self._directory.on_duty_doctors(ticket.specialty, site),
            self._records.loads(site),
            self._records.rank(ticket),
            self._records.service_times(ticket.specialty, SERVICE_WINDOW),
        )
        position = rank if ticket.state in CLAIMABLE else None
        estimate = None
        if position is not None:
            free = sum(max(0, d.capacity - loads.get(d.id, 0)) for d in doctors)
            total = sum(d.capacity for d in doctors)
            estimate = estimate_wait_s(position, free, total, durations)
        return WaitingRoom(
            ticket_id=ticket.id,
            state=ticket.state,
            position=position,
            estimated_wait_s=estimate,
            routed_site_id=site,
            level=ticket.level,
            doctors_on_duty=len(doctors),
        )

    async def tickets_for_expert(self, expert_id: str, *, limit: int = 10) -> list[ConsultTicket]:
        """Waiting requests the expert may claim, most pressing first (the doctor console).
        Reads only the queues of the expert's specialties at the expert's site."""
        if not 1 <= limit <= 200:
            raise InvalidInput("limit must be between 1 and 200")
        expert = await self._directory.get_expert(expert_id)
        if not expert.on_duty or expert.kind is not ExpertKind.DOCTOR or expert.site_id is None:
            return []
        items = await self._records.waiting_ids(expert.specialties, expert.site_id, limit)
        best = heapq.nsmallest(limit, items, key=lambda item: item[1])
        tickets = await self._records.get_many([member for member, _score in best])
        return tickets_for_expert(expert, tickets, aging_per_minute=self._aging, limit=limit)

    async def match_experts(self, ticket_id: str, *, limit: int | None = None) -> list[Expert]:
        """Doctors who could take the ticket now, best first (suggestions, hand-over).
        Reads only the on-duty index of its specialty at its site and that site's loads."""
        ticket = await self._records.get(ticket_id)
        if ticket.state in TERMINAL:
            return []
        site = ticket.routed_site_id
        doctors, loads = await asyncio.gather(
            self._directory.on_duty_doctors(ticket.specialty, site), self._records.loads(site)
        )
        return match(ticket, doctors, loads, limit=limit)

    async def list_open(
        self,
        *,
        state: ConsultState | None = None,
        clinic_site_id: str | None = None,
        expert_id: str | None = None,
    ) -> list[ConsultTicket]:
        """Tickets not yet ended or cancelled, filtered, oldest request first (operators)."""
        tickets = await self._records.get_many(await self._records.open_ids())
        found = [
            t
            for t in tickets
            if t.state not in TERMINAL
            and (state is None or t.state is state)
            and (clinic_site_id is None or t.clinic_site_id == clinic_site_id)
            and (expert_id is None or t.expert_id == expert_id)
        ]
        return sorted(found, key=lambda t: (t.requested_at, t.id))

    async def assigned_to(self, expert_id: str) -> list[ConsultTicket]:
        """Tickets the expert holds now (matched, handed over to them, admitted)."""
        held = await self._records.get_many(await self._records.assigned_ids(expert_id))
        mine = [t for t in held if t.expert_id == expert_id and t.state in ASSIGNED]
        return sorted(mine, key=lambda t: (t.requested_at, t.id))
