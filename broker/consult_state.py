"""A consult ticket and its state machine (pure): waiting -> matched -> admitted -> ended, with
escalated, handed_over and cancelled along the way.

States and the events that move between them:

    waiting / escalated --claim--> matched --admit--> admitted --end--> ended
    waiting / escalated --escalate--> escalated      (one level up the medical network)
    matched / handed_over --release--> waiting       (the doctor gives it back to the queue)
    matched / handed_over / admitted --hand_over--> handed_over  (another expert takes over)
    handed_over --admit--> admitted                  (the new expert takes it up)
    waiting / escalated / matched / handed_over --cancel--> cancelled   (the clinic gives up)
    matched / handed_over --end--> ended             (settled without a video call)
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from msgspec import Meta, Struct

from broker.errors import Conflict
from broker.models import EntityId, Language, Skill, Urgency

MAX_REASON_CHARS = 500
MAX_NOTE_CHARS = 2000


class ConsultState(StrEnum):
    """Where a consult ticket is in its life."""

    WAITING = "waiting"
    ESCALATED = "escalated"
    MATCHED = "matched"
    HANDED_OVER = "handed_over"
    ADMITTED = "admitted"
    ENDED = "ended"
    CANCELLED = "cancelled"


class ConsultEvent(StrEnum):
    """What can happen to a consult ticket."""

    CLAIM = "claim"
    ESCALATE = "escalate"
    RELEASE = "release"
    HAND_OVER = "hand_over"
    ADMIT = "admit"
    END = "end"
    CANCEL = "cancel"


class Outcome(StrEnum):
    """How a consult ended (the doctor says)."""

    RESOLVED = "resolved"
    REFERRED = "referred"
    FOLLOW_UP = "follow_up"
    NO_SHOW = "no_show"
    CANCELLED = "cancelled"
    OTHER = "other"


CLAIMABLE = frozenset({ConsultState.WAITING, ConsultState.ESCALATED})
"""States in which the ticket sits in a waiting queue and any matching doctor may claim it."""

ASSIGNED = frozenset({ConsultState.MATCHED, ConsultState.HANDED_OVER, ConsultState.ADMITTED})
"""States in which one expert holds the ticket (and it counts towards that expert's load)."""

TERMINAL = frozenset({ConsultState.ENDED, ConsultState.CANCELLED})

_S, _E = ConsultState, ConsultEvent
CONSULT_TRANSITIONS: dict[tuple[ConsultState, ConsultEvent], ConsultState] = {
    (_S.WAITING, _E.CLAIM): _S.MATCHED,
    (_S.WAITING, _E.ESCALATE): _S.ESCALATED,
    (_S.WAITING, _E.CANCEL): _S.CANCELLED,
    (_S.ESCALATED, _E.CLAIM): _S.MATCHED,
    (_S.ESCALATED, _E.ESCALATE): _S.ESCALATED,
    (_S.ESCALATED, _E.CANCEL): _S.CANCELLED,
    (_S.MATCHED, _E.ADMIT): _S.ADMITTED,
    (_S.MATCHED, _E.RELEASE): _S.WAITING,
    (_S.MATCHED, _E.HAND_OVER): _S.HANDED_OVER,
    (_S.MATCHED, _E.END): _S.ENDED,
    (_S.MATCHED, _E.CANCEL): _S.CANCELLED,
    (_S.HANDED_OVER, _E.ADMIT): _S.ADMITTED,
    (_S.HANDED_OVER, _E.RELEASE): _S.WAITING,
    (_S.HANDED_OVER, _E.HAND_OVER): _S.HANDED_OVER,
    (_S.HANDED_OVER, _E.END): _S.ENDED,
    (_S.HANDED_OVER, _E.CANCEL): _S.CANCELLED,
    (_S.ADMITTED, _E.HAND_OVER): _S.HANDED_OVER,
    (_S.ADMITTED, _E.END): _S.ENDED,
}
"""Every allowed (state, event) and the state it leads to; anything else is a conflict."""


def next_consult_state(state: ConsultState, event: ConsultEvent) -> ConsultState:
    """The state after `event`; raises `Conflict` when `event` cannot happen in `state`."""
    try:
        return CONSULT_TRANSITIONS[(state, event)]
    except KeyError:
        raise Conflict(
            f"a consult that is {ConsultState(state).value} cannot {ConsultEvent(event).value}"
        ) from None


class ConsultTicket(Struct, frozen=True, kw_only=True):
    """A clinic's request for a consult, from waiting room to outcome."""

    id: EntityId
    """Ticket id; also the consult's session id."""
    clinic_site_id: EntityId
    """The clinic (or health center) asking."""
    specialty: Skill
    """The specialty needed (e.g. 儿科)."""
    urgency: Urgency
    """routine, urgent or emergency."""
    language: Language
    """The language the patient speaks (doctors who speak it are preferred)."""
    reason: Annotated[str, Meta(max_length=MAX_REASON_CHARS)]
    """Why, in a few words (at most 500 characters)."""
    requested_at: float
    """When the clinic asked, epoch seconds (its waiting time counts from here)."""
    requested_by: str
    """Token subject of the requester (usually the clinic site id)."""
    route: tuple[EntityId, ...]
    """Sites the ticket may be routed to, one per escalation level, nearest first."""
    level: int = 0
    """Index into `route` of the site whose doctors see the ticket now."""
    level_since: float
    """When the ticket reached its current level (escalation counts from here)."""
    state: ConsultState = ConsultState.WAITING
    """Where the ticket is in its life."""
    expert_id: str | None = None
    """The expert holding the ticket (matched, handed over, admitted, ended)."""
    previous_expert_ids: tuple[str, ...] = ()
    """Experts who held it before (hand-overs and releases), oldest first."""
    matched_at: float | None = None
    """When the current expert took it."""
    admitted_at: float | None = None
    """When the clinic was admitted to the call."""
    ended_at: float | None = None
    """When it ended or was cancelled."""
    outcome: Outcome | None = None
    """How it ended."""
    note: Annotated[str, Meta(max_length=MAX_NOTE_CHARS)] = ""
    """The doctor's short note (hand-over or end)."""

    @property
    def routed_site_id(self) -> str:
        """The site whose doctors see the ticket at its current level."""
        return self.route[self.level]

    @property
    def top_level(self) -> bool:
        """True when there is no level further up to escalate to."""
        return self.level >= len(self.route) - 1


def should_escalate(ticket: ConsultTicket, now: float, escalate_after_s: float) -> bool:
    """True when `ticket` has waited `escalate_after_s` at its level unclaimed and a level above
    exists. Emergencies escalate after a quarter of that time: a doctor anywhere beats none."""
    if ticket.state not in CLAIMABLE or ticket.top_level:
        return False
    wait = escalate_after_s / 4 if ticket.urgency is Urgency.EMERGENCY else escalate_after_s
    return now - ticket.level_since >= wait
