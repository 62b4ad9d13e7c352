"""What the WebSocket frames do in classes and consults, and how session state is pushed.

Each handler checks the caller's role, calls the broker service, and lets the broker's events
(published on `session:<id>`, `expert:<id>`, `queue:…`) drive what every node pushes: a full
`session` frame to the members of a session, `queue` frames to doctor consoles and clinic
lobbies. Lobbies and consoles are also refreshed every few seconds, so a missed event (a store
outage, another node) heals by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from broker.class_state import ClassState
from broker.consult_state import ConsultState, Outcome
from broker.errors import BrokerError, Conflict, Forbidden, NotFound, StoreUnavailable
from broker.events import ClassStateChanged, ConsultStateChanged, decode_event
from broker.models import Actor, Role
from media.errors import MediaError
from signaling import messages as m
from signaling import recording_control, ws_media
from signaling.connection import Connection, Identity

if TYPE_CHECKING:
    from signaling.hub import SessionHub
    from signaling.services import Services

log = logging.getLogger("tongxin.session")

CONSOLE_REFRESH_S = 3.0
CLASS_ROLES = {"teacher", "assistant", "observer"}
HOSTS = {"teacher", "doctor"}
ACTIVE_CONSULT = {ConsultState.MATCHED, ConsultState.HANDED_OVER, ConsultState.ADMITTED}
CLOSED_CONSULT = {ConsultState.ENDED, ConsultState.CANCELLED}

Handler = Callable[[Connection, Any], Awaitable[None]]


def actor_of(conn: Connection) -> Actor:
    assert conn.identity is not None
    return Actor(conn.identity.participant_id, Role(conn.identity.role))


def require_role(conn: Connection, roles: set[str], what: str) -> Identity:
    identity = conn.identity
    assert identity is not None
    if identity.role not in roles:
        raise Forbidden(f"only {' or '.join(sorted(roles))} may {what}")
    return identity


def muted_map(session_id: str) -> str:
    return f"muted:{session_id}"


# --- session state -------------------------------------------------------------------------------
async def session_state(services: Services, hub: SessionHub, session_id: str) -> m.SessionState:
    """The full `session` frame of a class or consult."""
    muted = await services.store.map_all(muted_map(session_id))
    links = hub.links.get(session_id, {})
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
        present=_present(hub, ticket.clinic_site_id, session_id),
        muted=ticket.clinic_site_id in muted, link=links.get(ticket.clinic_site_id)))
    if ticket.expert_id:
        expert = await services.directory.find_expert(ticket.expert_id)
        people.append(m.ParticipantView(
            id=ticket.expert_id, role="doctor", name=expert.name if expert else ticket.expert_id,
            present=_present(hub, ticket.expert_id, session_id),
            muted=ticket.expert_id in muted, link=links.get(ticket.expert_id)))
    return m.SessionState(
        id=ticket.id, kind="consult", title=ticket.specialty, status=ticket.state.value,
        participants=people,
        recording=await services.recordings.active(session_id) is not None,
        detail={"urgency": ticket.urgency.value, "reason": ticket.reason,
                "language": ticket.language, "requested_at": ticket.requested_at,
                "clinic_site_id": ticket.clinic_site_id, "expert_id": ticket.expert_id},
    )


def _present(hub: SessionHub, participant_id: str, session_id: str) -> bool:
    conn = hub.by_participant.get(participant_id)
    return conn is not None and conn.media_session == session_id


async def push_state(services: Services, hub: SessionHub, session_id: str) -> None:
    if not hub.local_members(session_id):
        return
    hub.broadcast(session_id, await session_state(services, hub, session_id))


# --- entering and leaving media sessions -------------------------------------------------
async def enter_media(services: Services, hub: SessionHub, conn: Connection, session_id: str,
                      kind: str, *, fresh: bool = False) -> None:
    """Put `conn` in the media session; `fresh`: a client with new peer connections (not a
    resumed one), so whatever the relay kept for its seat is dropped first."""
    identity = conn.identity
    assert identity is not None
    conn.redirected = False
    if hub.placement is not None and hub.media is not None:
        home = await hub.placement.place(session_id)
        if home.id != hub.placement.node_id:
            conn.redirected = True
            conn.send(m.Redirect(url=home.url, session=session_id,
                                 reason="this session's media is on another node"))
            return
    conn.media_session = session_id
    hub.watch(f"session:{session_id}",
              lambda data: on_session_event(services, hub, session_id, data))
    if hub.media is not None:
        await hub.media.open_room(session_id, kind)
        if fresh:  # back within the seat's grace with new peer connections: the old ones
            with contextlib.suppress(MediaError):  # lead nowhere (and a pending offer with them)
                await hub.media.leave(session_id, identity.participant_id)
        await hub.media.join(session_id, identity.participant_id, identity.role)
        if identity.participant_id in await services.store.map_all(muted_map(session_id)):
            await hub.media.set_muted(session_id, identity.participant_id, True)
        if fresh and kind == "class":
            klass = await services.classes.find(session_id)
            if klass is not None and klass.spotlight == identity.participant_id:
                await hub.media.set_spotlight(session_id, identity.participant_id)
    await push_state(services, hub, session_id)


async def leave_media(services: Services, hub: SessionHub, participant_id: str,
                      session_id: str) -> None:
    if hub.media is not None:
        with contextlib.suppress(Exception):
            await hub.media.leave(session_id, participant_id)
    with contextlib.suppress(BrokerError):
        await push_state(services, hub, session_id)


async def on_connected(services: Services, hub: SessionHub, conn: Connection, *,
                       resumed: bool) -> None:
    identity = conn.identity
    assert identity is not None
    session = identity.session_id
    if identity.role in CLASS_ROLES and session is not None:
        if await services.classes.find(session) is not None:
            await services.classes.join(session, actor_of(conn))
            await enter_media(services, hub, conn, session, "class", fresh=not resumed)
            return
    if session is not None and identity.role in ("clinic", "doctor", "observer"):
        with contextlib.suppress(BrokerError):
            await _enter_consult(services, hub, conn, session, fresh=not resumed)
            return
    if identity.role in ("clinic", "doctor"):
        await push_console(services, hub, conn)


async def on_disconnected(services: Services, hub: SessionHub, identity: Identity,
                          session: str | None) -> None:
    if session is not None:
        with contextlib.suppress(BrokerError):
            await push_state(services, hub, session)


async def on_seat_expired(services: Services, hub: SessionHub, identity: Identity,
                          session: str | None) -> None:
    if session is None:
        return
    if await services.classes.find(session) is not None:
        with contextlib.suppress(BrokerError):
            await services.classes.leave(session, Actor(identity.participant_id,
                                                        Role(identity.role)))
    await leave_media(services, hub, identity.participant_id, session)


async def on_session_event(services: Services, hub: SessionHub, session_id: str,
                           data: bytes) -> None:
    try:
        event = decode_event(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        await push_state(services, hub, session_id)  # e.g. a mute change: just refresh
        return
    ended = (isinstance(event, ClassStateChanged) and event.state == ClassState.ENDED.value) or (
        isinstance(event, ConsultStateChanged) and event.state in {s.value for s in CLOSED_CONSULT}
    )
    if isinstance(event, ConsultStateChanged):
        await _notify_consult_parties(services, hub, session_id, event)
    if ended:
        outcome = getattr(event, "outcome", None)
        hub.broadcast(session_id, await session_state(services, hub, session_id))
        hub.broadcast(session_id, m.Ended(session=session_id, outcome=outcome))
        await recording_control.on_session_ended(services, hub, session_id)
        for conn in hub.local_members(session_id):
            conn.media_session = None
        if hub.media is not None:
            with contextlib.suppress(Exception):
                await hub.media.close_room(session_id)
        if hub.placement is not None:
            await hub.placement.release(session_id)
        hub.unwatch(f"session:{session_id}")
        return
    await push_state(services, hub, session_id)


async def _notify_consult_parties(services: Services, hub: SessionHub, session_id: str,
                                  event: ConsultStateChanged) -> None:
    ticket = await services.consults.find(session_id)
    if ticket is None:
        return
    clinic = hub.by_participant.get(ticket.clinic_site_id)
    if clinic is not None:
        if ticket.state is ConsultState.ADMITTED and clinic.media_session != session_id:
            clinic.send(m.Notice(level="info", code="admitted",
                                 message="the doctor is ready: joining the consult",
                                 detail={"consult": session_id}))
        if ticket.state in CLOSED_CONSULT and clinic.media_session != session_id:
            clinic.send(m.Ended(session=session_id,
                                outcome=ticket.outcome.value if ticket.outcome else None))
        await push_console(services, hub, clinic)
    for expert_id in {ticket.expert_id, *ticket.previous_expert_ids} - {None}:
        doctor = hub.by_participant.get(str(expert_id))
        if doctor is not None:
            await push_console(services, hub, doctor)


# --- consoles (doctor queue, clinic lobby) --------------------------------------------------------
def _ticket_item(ticket: Any, now: float, **extra: Any) -> dict[str, Any]:
    return {
        "consult": ticket.id, "state": ticket.state.value, "specialty": ticket.specialty,
        "urgency": ticket.urgency.value, "language": ticket.language, "reason": ticket.reason,
        "clinic_site_id": ticket.clinic_site_id, "expert_id": ticket.expert_id,
        "requested_at": ticket.requested_at, "waited_s": round(now - ticket.requested_at, 1),
        **extra,
    }


async def console_items(services: Services, identity: Identity) -> list[dict[str, Any]]:
    now = services.clock()
    if identity.role == "clinic":
        items = []
        for ticket in await services.consults.list_open(clinic_site_id=identity.participant_id):
            room = await services.consults.waiting_room(ticket.id)
            items.append(_ticket_item(ticket, now, position=room.position,
                                      estimated_wait_s=room.estimated_wait_s))
        return items
    mine = await services.consults.assigned_to(identity.participant_id)
    waiting = await services.consults.tickets_for_expert(identity.participant_id)
    sites = {t.clinic_site_id for t in [*mine, *waiting]}
    names = {}
    for site_id in sites:
        site = await services.directory.find_site(site_id)
        names[site_id] = site.name if site else site_id
    return ([_ticket_item(t, now, mine=True, clinic_name=names[t.clinic_site_id]) for t in mine]
            + [_ticket_item(t, now, mine=False, clinic_name=names[t.clinic_site_id])
               for t in waiting])


async def push_console(services: Services, hub: SessionHub, conn: Connection) -> None:
    identity = conn.identity
    if identity is None or conn.closed:
        return
    items = await console_items(services, identity)
    conn.send(m.Queue(items=items))
    if identity.role == "clinic":
        for item in items:
            sid = item["consult"]
            hub.watch(f"session:{sid}", lambda data, sid=sid: on_session_event(
                services, hub, sid, data))
    elif identity.role == "doctor":
        expert = await services.directory.find_expert(identity.participant_id)
        if expert is not None:
            for channel in services.consults.channels_for_expert(expert):
                # One watcher per channel serves every doctor of this node who follows it:
                # a watcher bound to the first doctor's connection would go silent when that
                # doctor left, and never reach a second doctor of the same specialty.
                hub.watch(channel, lambda data: push_doctor_consoles(services, hub))


async def push_doctor_consoles(services: Services, hub: SessionHub) -> None:
    """Resend the console of every doctor connected to this node."""
    for conn in list(hub.by_participant.values()):
        if conn.identity is not None and conn.identity.role == "doctor":
            await push_console(services, hub, conn)


async def refresh_consoles(services: Services, hub: SessionHub) -> None:
    """Every few seconds, resend lobbies and consoles (positions and waits move with time)."""
    while True:
        await asyncio.sleep(CONSOLE_REFRESH_S)
        for conn in list(hub.by_participant.values()):
            if conn.identity is not None and conn.identity.role in ("clinic", "doctor"):
                try:
                    await push_console(services, hub, conn)
                except StoreUnavailable:
                    break
                except Exception:
                    log.exception("console refresh failed")


# --- frame handlers ----------------------------------------------------------------------------
async def _enter_consult(services: Services, hub: SessionHub, conn: Connection,
                         consult_id: str, *, fresh: bool = True) -> None:
    identity = conn.identity
    assert identity is not None
    ticket = await services.consults.get(consult_id)
    if ticket.state in CLOSED_CONSULT:
        raise Conflict("this consult is over", code="session_over")
    if identity.role == "clinic":
        if identity.participant_id != ticket.clinic_site_id:
            raise Forbidden("this consult belongs to another clinic")
        if ticket.state is not ConsultState.ADMITTED:
            raise Conflict("the doctor has not admitted you yet; please wait",
                           code="not_admitted")
    elif identity.role == "doctor":
        if identity.participant_id != ticket.expert_id or ticket.state not in ACTIVE_CONSULT:
            raise Forbidden("claim this consult before entering it")
    elif identity.role not in ("operator", "observer"):
        raise Forbidden("this role cannot enter a consult")
    await enter_media(services, hub, conn, consult_id, "consult", fresh=fresh)


def frame_handlers(services: Services, hub: SessionHub) -> dict[type, Handler]:
    """The handler of each client frame type (join is handled by the hub itself)."""

    async def enter(conn: Connection, frame: m.Enter) -> None:
        if conn.media_session == frame.session:
            await push_state(services, hub, frame.session)
            return
        if conn.media_session is not None:
            raise Conflict("leave the current session first", code="in_session")
        await _enter_consult(services, hub, conn, frame.session)

    async def leave(conn: Connection, frame: m.Leave) -> None:
        session = conn.media_session
        if session is None:
            return
        conn.media_session = None
        assert conn.identity is not None
        await leave_media(services, hub, conn.identity.participant_id, session)
        await push_console(services, hub, conn)

    async def mute(conn: Connection, frame: m.Mute) -> None:
        session = ws_media.in_media_session(conn)
        identity = conn.identity
        assert identity is not None
        target = frame.participant or identity.participant_id
        if target != identity.participant_id:
            require_role(conn, HOSTS, "mute others")
        state = await session_state(services, hub, session)
        targets = ([p.id for p in state.participants if p.id != identity.participant_id]
                   if target == "*" else [target])
        if target != "*" and target not in {p.id for p in state.participants}:
            raise NotFound("no such participant in this session")
        for pid in targets:
            if frame.muted:
                await services.store.map_set(muted_map(session), pid, b"1")
            else:
                await services.store.map_delete(muted_map(session), pid)
            if hub.media is not None:
                await hub.media.set_muted(session, pid, frame.muted)
        await services.store.publish(f"session:{session}", b'{"type":"refresh"}')
        await push_state(services, hub, session)

    async def hand(conn: Connection, frame: m.Hand) -> None:
        session = ws_media.in_media_session(conn)
        require_role(conn, {"assistant"}, "raise a hand")
        if frame.raised:
            await services.classes.raise_hand(session, actor_of(conn))
        else:
            assert conn.identity is not None
            await services.classes.lower_hand(session, conn.identity.participant_id,
                                              actor_of(conn))

    async def spotlight(conn: Connection, frame: m.Spotlight) -> None:
        session = ws_media.in_media_session(conn)
        require_role(conn, {"teacher"}, "call on a classroom")
        await services.classes.set_spotlight(session, frame.participant, actor_of(conn))
        if hub.media is not None:
            await hub.media.set_spotlight(session, frame.participant)

    async def claim(conn: Connection, frame: m.Claim) -> None:
        require_role(conn, {"doctor"}, "claim a consult")
        await services.consults.claim(frame.consult, actor_of(conn))
        await push_console(services, hub, conn)

    async def admit(conn: Connection, frame: m.Admit) -> None:
        require_role(conn, {"doctor"}, "admit a clinic")
        await services.consults.admit(frame.consult, actor_of(conn))
        await push_console(services, hub, conn)

    async def hand_over(conn: Connection, frame: m.HandOver) -> None:
        require_role(conn, {"doctor"}, "hand over a consult")
        await services.consults.hand_over(frame.consult, frame.expert, actor_of(conn),
                                          note=frame.note)
        if conn.media_session == frame.consult:
            conn.media_session = None
            await leave_media(services, hub, actor_of(conn).id, frame.consult)
        await push_console(services, hub, conn)

    async def end(conn: Connection, frame: m.End) -> None:
        session = ws_media.in_media_session(conn)
        identity = require_role(conn, HOSTS, "end the session")
        if identity.role == "teacher":
            await services.classes.end(session, actor_of(conn))
        else:
            outcome = Outcome(frame.outcome) if frame.outcome else Outcome.RESOLVED
            await services.consults.end(session, actor_of(conn), outcome=outcome, note=frame.note)

    async def record(conn: Connection, frame: m.Record) -> None:
        session = ws_media.in_media_session(conn)
        identity = require_role(conn, HOSTS, "record")
        await recording_control.set_recording(services, hub, session, identity.participant_id,
                                              identity.role, frame.on)

    async def consent(conn: Connection, frame: m.Consent) -> None:
        identity = require_role(conn, {"clinic"}, "answer a consent request")
        consult = conn.media_session or identity.session_id
        if consult is None or await services.recordings.pending_consent(consult) is None:
            raise Conflict("no recording consent was requested", code="no_consent_request")
        await recording_control.answer_consent(services, hub, consult, identity.participant_id,
                                               frame.granted)

    async def link(conn: Connection, frame: m.LinkReport) -> None:
        session = ws_media.in_media_session(conn)
        identity = conn.identity
        assert identity is not None
        report = {k: v for k, v in msgspec.structs.asdict(frame).items() if v is not None}
        hub.links.setdefault(session, {})[identity.participant_id] = report
        if frame.loss_pct is not None:
            hub.metrics.subscriber_loss.observe(frame.loss_pct / 100.0)
        if frame.rtt_ms is not None:
            hub.metrics.subscriber_rtt.observe(frame.rtt_ms / 1000.0)
        for member in hub.local_members(session):
            if member.identity is not None and member.identity.role in HOSTS | {"operator"}:
                member.send(m.Link(participant=identity.participant_id,
                                   rung=str(report.get("rung", "full")),
                                   loss_pct=frame.loss_pct, rtt_ms=frame.rtt_ms,
                                   estimate_kbps=frame.down_kbps, reason="client report"))

    async def ping(conn: Connection, frame: m.Ping) -> None:
        conn.send(m.Pong(t=frame.t))
        identity = conn.identity
        if identity is not None and conn.media_session is not None and identity.role in CLASS_ROLES:
            with contextlib.suppress(BrokerError):
                await services.classes.mark_present(conn.media_session, identity.participant_id)

    def media(fn: Callable[[SessionHub, Connection, Any], Awaitable[None]]) -> Handler:
        async def run(conn: Connection, frame: Any) -> None:
            await fn(hub, conn, frame)
        return run

    return {
        m.Enter: enter, m.Leave: leave, m.Mute: mute, m.Hand: hand, m.Spotlight: spotlight,
        m.Claim: claim, m.Admit: admit, m.HandOver: hand_over, m.End: end, m.Record: record,
        m.Consent: consent, m.LinkReport: link, m.Ping: ping,
        m.Publish: media(ws_media.on_publish), m.Answer: media(ws_media.on_answer),
        m.RequestOffer: media(ws_media.on_request_offer),
    }


def on_media_event(services: Services, hub: SessionHub, room_id: str, participant_id: str,
                   event: dict[str, Any]) -> None:
    if event.get("type") == "link_stats":  # the relay's periodic link sample: metrics only
        metrics = hub.metrics
        metrics.subscriber_estimate.observe(float(event.get("estimate_bps") or 0))
        metrics.subscriber_loss.observe(float(event.get("loss") or 0))
        if event.get("rtt_s"):
            metrics.subscriber_rtt.observe(float(event["rtt_s"]))
        return
    frame = ws_media.media_event_frame(event)
    if event.get("type") == "room_lost":
        # `reconnect` goes out once the participant is in the room placed again: a client
        # publishing at once must find its place there
        hub.spawn(_replace_room(services, hub, room_id, participant_id, frame))
        return
    if event.get("type") == "link":
        rung = str(event.get("rung", "full"))
        hub.links.setdefault(room_id, {}).setdefault(participant_id, {})["rung"] = rung
        for member in hub.local_members(room_id):
            if (frame is not None and member.identity is not None
                    and member.identity.role in HOSTS | {"operator"}
                    and member.identity.participant_id != participant_id):
                member.send(frame)
    if frame is not None:
        hub.send_to(participant_id, frame)


async def _replace_room(services: Services, hub: SessionHub, room_id: str,
                        participant_id: str, reconnect: m.ServerFrame | None = None) -> None:
    """The worker holding `room_id` died: open it again, rejoin this participant, then tell
    it to rebuild its media (`reconnect`)."""
    try:
        conn = hub.by_participant.get(participant_id)
        if conn is None or conn.identity is None or conn.media_session != room_id:
            return
        kind = "class" if await services.classes.find(room_id) is not None else "consult"
        await hub.media.open_room(room_id, kind)
        await hub.media.join(room_id, participant_id, conn.identity.role)
    finally:
        if reconnect is not None:
            hub.send_to(participant_id, reconnect)
