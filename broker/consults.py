"""`ConsultService`: consults from a clinic's request to the doctor's outcome: request, claim
(exactly one doctor, within capacity), admit, release, hand-over, end, cancel, escalation up the
medical network, session tokens; plus the waiting-room and console reads of `ConsultQueue`.

Storage and atomicity are `ConsultRecords`' (compare-and-set on each ticket); events go out on
`session:<consult id>`, `expert:<id>` and `queue:<specialty>:<site>` (see `broker.events`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from typing import Annotated

import msgspec
from msgspec import Meta, Struct

from broker.audit import AuditAction, AuditLog
from broker.clock import Clock
from broker.consult_queue import ConsultQueue, WaitingRoom, channels_for_expert
from broker.consult_records import DEFAULT_RETENTION_S, ConsultRecords, TicketCheck
from broker.consult_state import (
    CLAIMABLE,
    MAX_NOTE_CHARS,
    MAX_REASON_CHARS,
    TERMINAL,
    ConsultEvent,
    ConsultState,
    ConsultTicket,
    Outcome,
    should_escalate,
)
from broker.directory import Directory
from broker.errors import Conflict, Forbidden, InvalidInput, NotFound
from broker.matching import AGING_PER_MINUTE, can_serve
from broker.models import (
    MEDICAL_LEVEL,
    Actor,
    Expert,
    ExpertKind,
    Language,
    Role,
    Site,
    Skill,
    Urgency,
    validated,
)
from broker.store import Store
from broker.tokens import TokenService
from broker.wait_estimate import SERVICE_WINDOW

SWEEP_BATCH = 200
"""Tickets one sweep looks at (the rest wait for the next sweep)."""


class ConsultRequest(Struct, frozen=True, kw_only=True):
    """What a clinic sends to ask for a consult (the REST body)."""

    clinic_site_id: str
    """The clinic asking."""
    specialty: Skill
    """The specialty needed."""
    urgency: Urgency = Urgency.ROUTINE
    """routine, urgent or emergency."""
    language: Language = "zh"
    """The patient's language."""
    reason: Annotated[str, Meta(min_length=1, max_length=MAX_REASON_CHARS)]
    """Why, in a few words."""


class RequestedConsult(Struct, frozen=True):
    """A new ticket and the clinic's token for its session (waiting room, then the call)."""

    ticket: ConsultTicket
    token: str


class ClaimedConsult(Struct, frozen=True):
    """A claimed ticket and the doctor's token for its session."""

    ticket: ConsultTicket
    token: str


def _holder_check(actor: Actor, *, operator_too: bool) -> TicketCheck:
    def check(ticket: ConsultTicket) -> None:
        if operator_too and actor.role is Role.OPERATOR:
            return
        if actor.role is not Role.DOCTOR or ticket.expert_id != actor.id:
            raise Forbidden("only the doctor holding this consult may do that")

    return check


def _why_not(expert: Expert, ticket: ConsultTicket) -> str:
    if not expert.on_duty:
        return "go on duty to take consult requests"
    if ticket.specialty not in expert.specialties:
        return f"this request is for {ticket.specialty}"
    return "this request is routed to another site of the network"


class ConsultService:
    """Consult tickets from request to outcome; see the module docstring."""

    def __init__(
        self,
        store: Store,
        directory: Directory,
        tokens: TokenService,
        audit: AuditLog,
        clock: Clock,
        *,
        escalate_after_s: float = 180.0,
        aging_per_minute: float = AGING_PER_MINUTE,
        session_token_ttl_s: float = 4 * 3600.0,
        retention_s: float = DEFAULT_RETENTION_S,
    ) -> None:
        if escalate_after_s <= 0 or aging_per_minute <= 0:
            raise InvalidInput("escalate_after_s and aging_per_minute must be positive")
        self._records = ConsultRecords(
            store, aging_per_minute=aging_per_minute, escalate_after_s=escalate_after_s,
            retention_s=retention_s,
        )
        self.queue = ConsultQueue(self._records, directory, aging_per_minute=aging_per_minute)
        self._directory = directory
        self._tokens = tokens
        self._audit = audit
        self._clock = clock
        self.escalate_after_s = escalate_after_s
        self.session_token_ttl_s = session_token_ttl_s

    @property
    def records(self) -> ConsultRecords:
        """Where the tickets live (the retention sweep erases through it)."""
        return self._records

    # --- reads (see ConsultQueue) -------------------------------------------------------------
    async def find(self, ticket_id: str) -> ConsultTicket | None:
        return await self._records.find(ticket_id)

    async def get(self, ticket_id: str) -> ConsultTicket:
        """The ticket; `NotFound` when there is none."""
        return await self._records.get(ticket_id)

    async def position(self, ticket_id: str) -> int | None:
        return await self.queue.position(ticket_id)

    async def estimated_wait_s(self, ticket_id: str) -> float | None:
        return (await self.queue.waiting_room(ticket_id)).estimated_wait_s

    async def waiting_room(self, ticket_id: str) -> WaitingRoom:
        return await self.queue.waiting_room(ticket_id)

    async def tickets_for_expert(self, expert_id: str, *, limit: int = 10) -> list[ConsultTicket]:
        return await self.queue.tickets_for_expert(expert_id, limit=limit)

    async def match_experts(self, ticket_id: str, *, limit: int | None = None) -> list[Expert]:
        return await self.queue.match_experts(ticket_id, limit=limit)

    async def list_open(
        self,
        *,
        state: ConsultState | None = None,
        clinic_site_id: str | None = None,
        expert_id: str | None = None,
    ) -> list[ConsultTicket]:
        return await self.queue.list_open(
            state=state, clinic_site_id=clinic_site_id, expert_id=expert_id
        )

    async def assigned_to(self, expert_id: str) -> list[ConsultTicket]:
        return await self.queue.assigned_to(expert_id)

    @staticmethod
    def channels_for_expert(expert: Expert) -> list[str]:
        return channels_for_expert(expert)

    # --- request ------------------------------------------------------------------------------
    async def request(self, request: ConsultRequest, actor: Actor) -> RequestedConsult:
        """Queue a clinic's request at the nearest level of its network with a doctor of the
        specialty on duty (the first level when there is none yet)."""
        try:
            request = msgspec.convert(msgspec.to_builtins(request), ConsultRequest)
        except msgspec.ValidationError as exc:
            raise InvalidInput(f"invalid consult request: {exc}") from None
        reason = request.reason.strip()
        if not reason:
            raise InvalidInput("say in a few words why the consult is needed")
        if actor.role is not Role.OPERATOR and not (
            actor.role is Role.CLINIC and actor.id == request.clinic_site_id
        ):
            raise Forbidden("only the clinic itself (or an operator) may request its consults")
        clinic, route, level = await self.route(request.clinic_site_id, request.specialty)
        now = self._clock()
        ticket = ConsultTicket(
            id=f"c{uuid.uuid4().hex[:16]}",
            clinic_site_id=clinic.id,
            specialty=request.specialty,
            urgency=request.urgency,
            language=request.language,
            reason=reason,
            requested_at=now,
            requested_by=actor.id,
            route=route,
            level=level,
            level_since=now,
        )
        await self._records.create(ticket)
        await self._audit.append(
            actor.id,
            AuditAction.CONSULT_REQUEST,
            session=ticket.id,
            detail={
                "specialty": ticket.specialty,
                "urgency": ticket.urgency.value,
                "routed_site_id": ticket.routed_site_id,
            },
        )
        await self._records.publish_queue(ticket, "added", now)
        token = self._session_token(ticket, Actor(clinic.id, Role.CLINIC), clinic.name)
        return RequestedConsult(ticket, token)

    async def route(self, clinic_site_id: str, specialty: str) -> tuple[Site, tuple[str, ...], int]:
        """(clinic, route, level) for a request: the sites up the clinic's network (the clinic
        itself when it has no parent) and the nearest level with a doctor of `specialty` on
        duty (0 when there is none yet)."""
        try:
            chain = await self._directory.escalation_chain(clinic_site_id)
        except NotFound:
            raise InvalidInput(f"clinic {clinic_site_id!r} does not exist") from None
        clinic = chain[0]
        if clinic.kind not in MEDICAL_LEVEL:
            raise InvalidInput(f"a {clinic.kind.value} cannot request consults")
        route = tuple(s.id for s in chain[1:]) or (clinic.id,)
        for level, site in enumerate(route):
            if await self._directory.has_on_duty_doctor(specialty, site):
                return clinic, route, level
        return clinic, route, 0

    async def import_tickets(self, tickets: Iterable[ConsultTicket]) -> int:
        """Store and queue waiting tickets made elsewhere (benchmarks, migrations): what
        `request` stores, without its audit entry, event or token. Returns how many."""
        count = 0
        for ticket in tickets:
            if ticket.state not in CLAIMABLE:
                raise InvalidInput("only waiting tickets can be imported")
            await self._records.create(validated(ticket))
            count += 1
        return count

    # --- the doctor's side --------------------------------------------------------------------
    async def claim(self, ticket_id: str, actor: Actor) -> ClaimedConsult:
        """The doctor `actor` takes a waiting ticket: exactly one claimer wins, within the
        doctor's capacity. Raises Conflict when taken or full, Forbidden when not eligible."""
        if actor.role is not Role.DOCTOR:
            raise Forbidden("only a doctor may claim a consult request")
        ticket = await self._records.get(ticket_id)
        if ticket.state not in CLAIMABLE:
            raise Conflict("this request has already been taken or closed")
        expert = await self._directory.get_expert(actor.id)

        def check(current: ConsultTicket) -> None:
            if not can_serve(expert, current):
                raise Forbidden(_why_not(expert, current))

        check(ticket)
        # One doctor at a time tries (the others wait for the outcome instead of all racing
        # through the lock and the compare-and-set, which stays what guarantees one holder).
        gate = await self._records.wait_for_claim_gate(ticket_id, expert.id, check)
        try:
            now = self._clock()

            def edit(current: ConsultTicket, _state: ConsultState) -> ConsultTicket:
                return msgspec.structs.replace(current, expert_id=expert.id, matched_at=now)

            before, after = await self._records.assign(
                expert, ticket_id, ConsultEvent.CLAIM, edit, check
            )
        except BaseException:
            await self._records.close_claim_gate(gate, actor.id)
            raise
        await asyncio.gather(
            self._records.dequeue(before),
            self._audit.append(expert.id, AuditAction.CONSULT_CLAIM, session=ticket_id),
        )
        await self._records.publish_change(after, expert.id, now)
        await self._records.publish_queue(before, "removed", now)
        await self._records.publish_assignment(after, expert.id, "claimed", now)
        return ClaimedConsult(after, self._session_token(after, actor, expert.name))

    async def admit(self, ticket_id: str, actor: Actor) -> ConsultTicket:
        """The holding doctor lets the clinic in from the waiting room (or takes up a consult
        handed over to them)."""
        now = self._clock()

        def edit(current: ConsultTicket, _state: ConsultState) -> ConsultTicket:
            return msgspec.structs.replace(current, admitted_at=current.admitted_at or now)

        _before, after = await self._records.change(
            ticket_id, ConsultEvent.ADMIT, edit, _holder_check(actor, operator_too=False)
        )
        await self._audit.append(actor.id, AuditAction.ADMIT, session=ticket_id)
        await self._records.publish_change(after, actor.id, now)
        await self._records.publish_assignment(after, actor.id, "admitted", now)
        return after

    async def release(self, ticket_id: str, actor: Actor) -> ConsultTicket:
        """The holding doctor (or an operator) gives a not-yet-admitted ticket back to the
        queue; it keeps its place (its request time) and gets a full period at its level."""
        now = self._clock()

        def edit(current: ConsultTicket, _state: ConsultState) -> ConsultTicket:
            return msgspec.structs.replace(
                current,
                expert_id=None,
                matched_at=None,
                previous_expert_ids=(*current.previous_expert_ids, current.expert_id or ""),
                level_since=now,
            )

        before, after = await self._records.change(
            ticket_id, ConsultEvent.RELEASE, edit, _holder_check(actor, operator_too=True)
        )
        await asyncio.gather(
            self._unassign(before),
            self._records.enqueue(after),
            self._audit.append(actor.id, AuditAction.CONSULT_RELEASE, session=ticket_id),
        )
        await self._records.publish_change(after, actor.id, now)
        await self._records.publish_queue(after, "added", now)
        await self._records.publish_assignment(after, before.expert_id, "released", now)
        return after

    async def _unassign(self, before: ConsultTicket) -> None:
        if before.expert_id is None:
            return
        expert = await self._directory.find_expert(before.expert_id)
        site = None if expert is None else expert.site_id
        await self._records.unassign(before.expert_id, site, before.id)

    async def hand_over(
        self, ticket_id: str, to_expert_id: str, actor: Actor, *, note: str = ""
    ) -> ConsultTicket:
        """The holding doctor (or an operator) passes the consult to another on-duty doctor
        (any specialty: a referral), who must have room; the clinic stays in the session and
        the new doctor admits. Raises Conflict when the target cannot take it."""
        if len(note) > MAX_NOTE_CHARS:
            raise InvalidInput(f"the note is longer than {MAX_NOTE_CHARS} characters")
        target = await self._directory.get_expert(to_expert_id)
        if target.kind is not ExpertKind.DOCTOR or not target.on_duty:
            raise Conflict(f"{target.name} is not a doctor on duty")
        holder_check = _holder_check(actor, operator_too=True)

        def check(current: ConsultTicket) -> None:
            holder_check(current)
            if current.expert_id == target.id:
                raise Conflict("the consult is already with that doctor")

        current = await self._records.get(ticket_id)
        if current.state not in TERMINAL:
            check(current)
        now = self._clock()

        def edit(current: ConsultTicket, _state: ConsultState) -> ConsultTicket:
            return msgspec.structs.replace(
                current,
                expert_id=target.id,
                matched_at=now,
                previous_expert_ids=(*current.previous_expert_ids, current.expert_id or ""),
                note=note or current.note,
            )

        before, after = await self._records.assign(
            target, ticket_id, ConsultEvent.HAND_OVER, edit, check
        )
        holder = before.expert_id or ""
        await asyncio.gather(
            self._unassign(before),
            self._audit.append(
                actor.id,
                AuditAction.HAND_OVER,
                session=ticket_id,
                detail={"from": holder, "to": target.id},
            ),
        )
        await self._records.publish_change(after, actor.id, now)
        await self._records.publish_assignment(after, holder, "handed_over_away", now)
        await self._records.publish_assignment(after, target.id, "handed_over_to_you", now)
        return after

    async def end(
        self, ticket_id: str, actor: Actor, *, outcome: Outcome, note: str = ""
    ) -> ConsultTicket:
        """The holding doctor (or an operator) ends the consult with an outcome and a note."""
        outcome = Outcome(outcome)
        if len(note) > MAX_NOTE_CHARS:
            raise InvalidInput(f"the note is longer than {MAX_NOTE_CHARS} characters")
        now = self._clock()

        def edit(current: ConsultTicket, _state: ConsultState) -> ConsultTicket:
            return msgspec.structs.replace(
                current, ended_at=now, outcome=outcome, note=note or current.note
            )

        before, after = await self._records.change(
            ticket_id, ConsultEvent.END, edit, _holder_check(actor, operator_too=True)
        )
        jobs = [
            self._unassign(before),
            self._audit.append(
                actor.id,
                AuditAction.CONSULT_END,
                session=ticket_id,
                detail={"outcome": outcome.value, "expert": before.expert_id},
            ),
        ]
        if after.admitted_at is not None:
            duration = now - after.admitted_at
            jobs.append(
                self._records.record_service_time(after.specialty, duration, SERVICE_WINDOW)
            )
        await asyncio.gather(*jobs)
        await self._records.publish_change(after, actor.id, now)
        await self._records.publish_assignment(after, before.expert_id, "ended", now)
        return after

    # --- the clinic's side --------------------------------------------------------------------
    async def cancel(self, ticket_id: str, actor: Actor) -> ConsultTicket:
        """The clinic (or an operator) withdraws a request not yet admitted."""

        def check(ticket: ConsultTicket) -> None:
            if actor.role is Role.OPERATOR:
                return
            if actor.id not in (ticket.clinic_site_id, ticket.requested_by):
                raise Forbidden("only the clinic that asked (or an operator) may cancel")

        now = self._clock()

        def edit(current: ConsultTicket, _state: ConsultState) -> ConsultTicket:
            return msgspec.structs.replace(current, ended_at=now, outcome=Outcome.CANCELLED)

        before, after = await self._records.change(ticket_id, ConsultEvent.CANCEL, edit, check)
        was_waiting = before.state in CLAIMABLE
        await asyncio.gather(
            self._records.dequeue(before) if was_waiting else self._unassign(before),
            self._audit.append(actor.id, AuditAction.CONSULT_CANCEL, session=ticket_id),
        )
        await self._records.publish_change(after, actor.id, now)
        if was_waiting:
            await self._records.publish_queue(before, "removed", now)
        else:
            await self._records.publish_assignment(after, before.expert_id, "cancelled", now)
        return after

    # --- escalation ---------------------------------------------------------------------------
    async def sweep(self, now: float | None = None) -> list[ConsultTicket]:
        """Escalate every ticket unclaimed for `escalate_after_s` at its level one level up the
        network; the server calls this every few seconds, on any number of nodes (each ticket
        escalates once). Returns the tickets escalated by this call."""
        now = self._clock() if now is None else now
        escalated = []
        for ticket_id, due_at in await self._records.escalation_candidates(SWEEP_BATCH):
            if due_at > now:
                break
            ticket = await self._records.find(ticket_id)
            if ticket is None or not should_escalate(ticket, now, self.escalate_after_s):
                await self._records.reschedule_escalation(ticket, ticket_id)
                continue
            moved = await self._escalate(ticket, now)
            if moved is not None:
                escalated.append(moved)
        return escalated

    async def _escalate(self, ticket: ConsultTicket, now: float) -> ConsultTicket | None:
        def check(current: ConsultTicket) -> None:
            if not should_escalate(current, now, self.escalate_after_s):
                raise Conflict("no longer due")

        def edit(current: ConsultTicket, _state: ConsultState) -> ConsultTicket:
            return msgspec.structs.replace(current, level=current.level + 1, level_since=now)

        try:
            before, after = await self._records.change(
                ticket.id, ConsultEvent.ESCALATE, edit, check
            )
        except Conflict:
            return None  # another node escalated it, or a doctor claimed it meanwhile
        await self._records.dequeue(before)
        await asyncio.gather(
            self._records.enqueue(after),
            self._audit.append(
                "system",
                AuditAction.CONSULT_ESCALATE,
                session=after.id,
                detail={"from": before.routed_site_id, "to": after.routed_site_id},
            ),
        )
        await self._records.publish_change(after, "system", now)
        await self._records.publish_queue(before, "removed", now)
        await self._records.publish_queue(after, "added", now)
        return after

    # --- tokens -------------------------------------------------------------------------------
    async def session_token(self, ticket_id: str, actor: Actor) -> str:
        """A token for the consult's session: for its clinic, its current doctor, or an
        operator (who joins as an observer). Raises Forbidden for anyone else."""
        ticket = await self._records.get(ticket_id)
        if ticket.state in TERMINAL:
            raise Conflict("this consult is over")
        if actor.role is Role.OPERATOR:
            return self._tokens.issue(
                sub=actor.id, role=Role.OBSERVER, session=ticket.id, ttl_s=self.session_token_ttl_s
            )
        if actor.role is Role.CLINIC and actor.id == ticket.clinic_site_id:
            site = await self._directory.find_site(actor.id)
            return self._session_token(ticket, actor, "" if site is None else site.name)
        if actor.role is Role.DOCTOR and actor.id == ticket.expert_id:
            expert = await self._directory.find_expert(actor.id)
            return self._session_token(ticket, actor, "" if expert is None else expert.name)
        raise Forbidden("only the clinic and the doctor holding a consult may join it")

    def _session_token(self, ticket: ConsultTicket, actor: Actor, name: str) -> str:
        return self._tokens.issue(
            sub=actor.id,
            role=actor.role,
            session=ticket.id,
            ttl_s=self.session_token_ttl_s,
            name=name,
        )
