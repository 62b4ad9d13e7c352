"""The `session` frame: a class or consult as its members see it, and pushing it to them.

`SessionView` reads the broker (roster, hands, spotlight, the consult's parties, recording)
and the hub (who is present on this node, their last link report, who is muted) into one
`m.SessionState`, and broadcasts it to the session's members on this node. The WebSocket
session flow, the frame handlers, recording control and `GET /api/v1/live` all use it.
"""

from __future__ import annotations

from broker.errors import NotFound
from signaling import messages as m
from signaling.fanout import Fanout
from signaling.services import Services


def muted_map(session_id: str) -> str:
    """Store map of the session's muted participants (participant id -> b"1")."""
    return f"muted:{session_id}"


class SessionView:
    """The `session` frame of any session; see the module docstring."""

    def __init__(self, services: Services, hub: Fanout) -> None:
        self.services = services
        self.hub = hub

    async def state(self, session_id: str) -> m.SessionState:
        """The full `session` frame of a class or consult (NotFound when neither)."""
        services = self.services
        muted = await services.store.map_all(muted_map(session_id))
        links = self.hub.links.get(session_id, {})
        klass = await services.classes.find(session_id)
        if klass is not None:
            roster = await services.classes.roster(session_id)
            hands = await services.classes.hands(session_id)
            people = [
                m.ParticipantView(id=r.participant_id, role=r.role.value, name=r.name,
                                  present=r.present, muted=r.participant_id in muted,
                                  hand=r.hand_raised, link=links.get(r.participant_id))
                for r in roster
            ]
            return m.SessionState(
                id=klass.id, kind="class", title=klass.title, status=klass.state.value,
                participants=people, spotlight=klass.spotlight,
                hands=[h.participant_id for h in hands],
                recording=await services.recordings.active(session_id) is not None,
                detail={"subject": klass.subject, "teacher_id": klass.teacher_id,
                        "recording_allowed": klass.recording_allowed},
            )
        ticket = await services.consults.find(session_id)
        if ticket is None:
            raise NotFound("no such session")
        people = []
        clinic = await services.directory.find_site(ticket.clinic_site_id)
        people.append(m.ParticipantView(
            id=ticket.clinic_site_id, role="clinic",
            name=clinic.name if clinic else ticket.clinic_site_id,
            present=self.present(ticket.clinic_site_id, session_id),
            muted=ticket.clinic_site_id in muted, link=links.get(ticket.clinic_site_id)))
        if ticket.expert_id:
            expert = await services.directory.find_expert(ticket.expert_id)
            people.append(m.ParticipantView(
                id=ticket.expert_id, role="doctor",
                name=expert.name if expert else ticket.expert_id,
                present=self.present(ticket.expert_id, session_id),
                muted=ticket.expert_id in muted, link=links.get(ticket.expert_id)))
        return m.SessionState(
            id=ticket.id, kind="consult", title=ticket.specialty, status=ticket.state.value,
            participants=people,
            recording=await services.recordings.active(session_id) is not None,
            detail={"urgency": ticket.urgency.value, "reason": ticket.reason,
                    "language": ticket.language, "requested_at": ticket.requested_at,
                    "clinic_site_id": ticket.clinic_site_id, "expert_id": ticket.expert_id},
        )

    def present(self, participant_id: str, session_id: str) -> bool:
        """True when the participant's connection on this node is in the media session."""
        conn = self.hub.by_participant.get(participant_id)
        return conn is not None and conn.media_session == session_id

    async def push(self, session_id: str) -> None:
        """Send the `session` frame to the session's members on this node (if any)."""
        if not self.hub.local_members(session_id):
            return
        self.hub.broadcast(session_id, await self.state(session_id))
