"""Events the broker publishes on store channels, so every signaling node can push them to its
WebSockets: their channel names and their JSON shapes (a `type` field names each).

Channels:
- `session:<id>`: a class or consult changed (state, presence, spotlight, hands).
- `expert:<id>`: something concerns this expert's own consults (claimed, handed over, ended).
- `queue:<specialty>:<site id>`: the waiting queue doctors of that specialty at that site see
  gained or lost a request (a doctor console subscribes to the queues of its specialties).
"""

from __future__ import annotations

import msgspec
from msgspec import Struct

from broker.class_state import ClassState
from broker.consult_state import ConsultState, Outcome
from broker.models import Role


def session_channel(session_id: str) -> str:
    return f"session:{session_id}"


def expert_channel(expert_id: str) -> str:
    return f"expert:{expert_id}"


def queue_channel(specialty: str, site_id: str) -> str:
    return f"queue:{specialty}:{site_id}"


class BrokerEvent(Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every published event."""

    at: float
    """When it happened, epoch seconds."""


class ClassStateChanged(BrokerEvent, tag="class_state", frozen=True):
    """A class was scheduled, went live or ended."""

    session: str
    """The class id."""
    state: ClassState
    """Its new state."""
    by: str
    """Who caused it (a participant id, or `system`)."""


class PresenceChanged(BrokerEvent, tag="presence", frozen=True):
    """A participant arrived in or left a class (heartbeats keep presence alive)."""

    session: str
    participant_id: str
    """A teacher id, a classroom site id or an observer id."""
    role: Role
    present: bool


class SpotlightChanged(BrokerEvent, tag="spotlight", frozen=True):
    """The teacher called on a classroom (everyone sees and hears it), or returned to none."""

    session: str
    participant_id: str | None
    """The classroom site id in the spotlight; None for nobody."""
    by: str


class HandsChanged(BrokerEvent, tag="hands", frozen=True):
    """The queue of raised hands changed; `queue` is the whole queue, first raised first."""

    session: str
    queue: list[str]
    """Participant ids (classroom site ids) with a raised hand, in the order they raised it."""


class ConsultStateChanged(BrokerEvent, tag="consult_state", frozen=True):
    """A consult moved: claimed, escalated, admitted, handed over, released, ended, cancelled."""

    session: str
    """The consult (ticket) id."""
    state: ConsultState
    expert_id: str | None
    """The expert now holding it, if any."""
    routed_site_id: str
    """The site whose doctors see it (changes on escalation)."""
    level: int
    """Its escalation level (0: the first site of its route)."""
    by: str
    """Who caused it (an expert, clinic or operator id, or `system`)."""
    outcome: Outcome | None = None
    """How it ended, once ended."""


class QueueChanged(BrokerEvent, tag="queue_changed", frozen=True):
    """A waiting queue gained or lost a request; consoles re-read their lists."""

    specialty: str
    site_id: str
    ticket_id: str
    change: str
    """`added` (new, escalated here, released) or `removed` (claimed, escalated away,
    cancelled)."""


class ExpertAssignment(BrokerEvent, tag="assignment", frozen=True):
    """One of this expert's consults changed hands or ended."""

    expert_id: str
    ticket_id: str
    state: ConsultState
    change: str
    """`claimed`, `handed_over_to_you`, `handed_over_away`, `released`, `admitted`, `ended`
    or `cancelled`."""


AnyEvent = (
    ClassStateChanged
    | PresenceChanged
    | SpotlightChanged
    | HandsChanged
    | ConsultStateChanged
    | QueueChanged
    | ExpertAssignment
)

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)


def encode_event(event: BrokerEvent) -> bytes:
    return _encoder.encode(event)


def decode_event(data: bytes) -> AnyEvent:
    """The event in `data` (raises msgspec.DecodeError/ValidationError on foreign bytes)."""
    return _decoder.decode(data)
