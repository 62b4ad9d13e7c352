"""Queue order and matching (pure functions): which request is served first, which doctors suit
a request, which requests a doctor sees.

Queue order. A request's priority is its urgency's head start plus the minutes it has waited
times `aging_per_minute`. Routine starts at 0 and urgent at `URGENT_HEAD_START` points, so with
the default aging (1 point a minute) a routine request that has waited 20 minutes longer than an
urgent one goes first: a routine request is only ever behind requests that arrived less than 20
minutes after it, so it cannot starve. Emergencies form a tier of their own, always first: they
are rare, life-threatening, and a stream of them long enough to hold routine requests back means
the network is overloaded, which escalation and operators handle, not the queue order.

Because aging is linear, the order never changes as time passes; the store keeps each waiting
request under the time-free score `queue_score`, whose ascending order equals the descending
order of `queue_priority` at any moment.

Matching. A doctor suits a request when on duty, of the request's specialty, working at the site
the request is routed to (its escalation level), and below capacity. Language is preferred, not
required: the village doctor at the clinic can interpret, and a patient speaking only Tibetan is
better served by a Mandarin-speaking pediatrician now than by nobody; doctors who speak the
patient's language come first, then the least loaded (by share of capacity).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from broker.consult_state import CLAIMABLE, ConsultTicket
from broker.models import Expert, ExpertKind, Urgency

AGING_PER_MINUTE = 1.0
"""Default priority points a waiting request gains per minute."""

URGENT_HEAD_START = 20.0
"""Priority points an urgent request starts with (routine: 0)."""

EMERGENCY_TIER = 1e12
"""Added to emergencies: more than any waiting time can earn, so they are always first."""

URGENCY_POINTS: dict[Urgency, float] = {
    Urgency.ROUTINE: 0.0,
    Urgency.URGENT: URGENT_HEAD_START,
    Urgency.EMERGENCY: EMERGENCY_TIER,
}


def queue_priority(
    urgency: Urgency, requested_at: float, now: float, aging_per_minute: float = AGING_PER_MINUTE
) -> float:
    """Higher is served first: urgency's head start plus minutes waited times aging."""
    waited_min = max(0.0, now - requested_at) / 60.0
    return URGENCY_POINTS[urgency] + aging_per_minute * waited_min


def queue_score(
    urgency: Urgency, requested_at: float, aging_per_minute: float = AGING_PER_MINUTE
) -> float:
    """Lower is served first; the store's time-free sort key equivalent to `queue_priority`."""
    return aging_per_minute * requested_at / 60.0 - URGENCY_POINTS[urgency]


def ticket_score(ticket: ConsultTicket, aging_per_minute: float = AGING_PER_MINUTE) -> float:
    return queue_score(ticket.urgency, ticket.requested_at, aging_per_minute)


def can_serve(expert: Expert, ticket: ConsultTicket) -> bool:
    """Whether `expert` may take `ticket` at its current level (capacity aside)."""
    return (
        expert.on_duty
        and expert.kind is ExpertKind.DOCTOR
        and ticket.specialty in expert.specialties
        and expert.site_id == ticket.routed_site_id
    )


def match(
    ticket: ConsultTicket,
    experts: Iterable[Expert],
    loads: Mapping[str, int],
    *,
    limit: int | None = None,
) -> list[Expert]:
    """Doctors who can take `ticket` now, best first (see the module docstring).

    `loads` gives each expert's current number of consults (absent: 0). The ticket's current
    holder is left out, and experts who held it before come after the others.
    """
    ranked: list[tuple[tuple[int, int, float, int, str], Expert]] = []
    for expert in experts:
        load = loads.get(expert.id, 0)
        if load >= expert.capacity or expert.id == ticket.expert_id:
            continue
        if not can_serve(expert, ticket):
            continue
        key = (
            0 if ticket.language in expert.languages else 1,
            1 if expert.id in ticket.previous_expert_ids else 0,
            load / expert.capacity,
            load,
            expert.id,
        )
        ranked.append((key, expert))
    ranked.sort(key=lambda pair: pair[0])
    chosen = [expert for _key, expert in ranked]
    return chosen if limit is None else chosen[:limit]


def tickets_for_expert(
    expert: Expert,
    tickets: Iterable[ConsultTicket],
    *,
    aging_per_minute: float = AGING_PER_MINUTE,
    limit: int | None = 20,
) -> list[ConsultTicket]:
    """Waiting requests `expert` may claim, in queue order (the most pressing first).

    Empty when the expert is off duty or not a doctor. Capacity is not checked here: a doctor
    at capacity still sees the queue; claiming is what capacity refuses.
    """
    if not expert.on_duty or expert.kind is not ExpertKind.DOCTOR:
        return []
    eligible = [t for t in tickets if t.state in CLAIMABLE and can_serve(expert, t)]
    eligible.sort(key=lambda t: (ticket_score(t, aging_per_minute), t.requested_at, t.id))
    return eligible if limit is None else eligible[:limit]
