"""What happens to a connection's session over its life, and how session state is pushed.

`SessionFlow` holds the node's broker services and the hub's fan-out (`signaling.fanout`), and
does what the hub asks of it: a joined connection enters its class or consult (or gets its
console), a dropped one's seat is freed after the grace, a session's store events become
`session` frames (and the end of the session), and the relay's events become client frames.
The broker's events (published on `session:<id>`, `expert:<id>`, `queue:…`) drive what every
node pushes: a full `session` frame to the members of a session, `queue` frames to doctor
consoles and clinic lobbies. Lobbies and consoles are also refreshed every few seconds, so a
missed event (a store outage, another node) heals by itself. The handlers of the frames a
client sends live in signaling/ws_frames.py. With several nodes, `enter_media` places the room
on its origin node and chooses the node serving this participant (signaling/spanning.py): a
class's receivers may be sent to an edge node, which serves the room too
(signaling/serving.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

import msgspec

from broker.class_state import ClassState
from broker.consult_state import ConsultState, ConsultTicket
from broker.errors import BrokerError, Conflict, Forbidden, StoreUnavailable
from broker.events import ClassStateChanged, ConsultStateChanged, decode_event
from broker.models import Actor, Role
from media.errors import MediaError
from signaling import messages as m
from signaling import recording_control
from signaling.connection import Connection, Identity
from signaling.fanout import Fanout
from signaling.placement import NodeLoad
from signaling.services import Services
from signaling.session_view import SessionView, muted_map
from signaling.spanning import choose_serving_node, may_span, spans
from signaling.ws_media import SITE_ROLES, apply_data_budget, joined, media_event_frame

log = logging.getLogger("tongxin.session")

CONSOLE_REFRESH_S = 3.0
CLASS_ROLES = {"teacher", "assistant", "observer"}
HOSTS = {"teacher", "doctor"}
"""Roles that run a session (mute others, end it, record it)."""
WATCHERS_OF_LINKS = HOSTS | {"operator"}
"""Roles shown the other members' link reports."""
ACTIVE_CONSULT = {ConsultState.MATCHED, ConsultState.HANDED_OVER, ConsultState.ADMITTED}
CLOSED_CONSULT = {ConsultState.ENDED, ConsultState.CANCELLED}


def actor_of(conn: Connection) -> Actor:
    identity = joined(conn)
    return Actor(identity.participant_id, Role(identity.role))


def require_role(conn: Connection, roles: set[str], what: str) -> Identity:
    identity = joined(conn)
    if identity.role not in roles:
        raise Forbidden(f"only {' or '.join(sorted(roles))} may {what}")
    return identity


class SessionFlow:
    """A node's sessions as its connections live them; see the module docstring."""

    def __init__(self, services: Services, hub: Fanout) -> None:
        self.services = services
        self.hub = hub
        self.view = SessionView(services, hub)

    # --- entering and leaving media sessions ----------------------------------------------
    async def enter_media(self, conn: Connection, session_id: str, kind: str, *,
                          fresh: bool = False) -> None:
        """Put `conn` in the media session; `fresh`: a client with new peer connections (not
        a resumed one), so whatever the relay kept for its seat is dropped first."""
        identity = joined(conn)
        hub, media = self.hub, self.hub.media
        conn.redirected = False
        if hub.placement is not None and media is not None:
            home = await hub.placement.place(session_id)
            server = await self._serving_node(identity, session_id, kind, home)
            if server.id != hub.placement.node_id:
                conn.redirected = True
                conn.send(m.Redirect(url=server.url, session=session_id,
                                     reason="this session's media is on another node"))
                return
        conn.media_session = session_id
        self.follow_session(session_id)
        if media is not None:
            pid = identity.participant_id
            await media.open_room(session_id, kind)
            if hub.serving is not None:
                await hub.serving.serve(session_id, kind, pid)
            if fresh:  # back within the seat's grace with new peer connections: the old ones
                with contextlib.suppress(MediaError):  # lead nowhere (nor a pending offer)
                    await media.leave(session_id, pid)
            await media.join(session_id, pid, identity.role)
            if pid in await self.services.store.map_all(muted_map(session_id)):
                await media.set_muted(session_id, pid, True)
            try:  # the participant's own data budget, or its site's (a new downlink has none)
                await apply_data_budget(self.services, media, session_id, pid, identity.role)
            except BrokerError as exc:
                log.warning("data budget not applied participant=%s: %s", pid, exc)
            if hub.serving is not None:
                await hub.serving.apply_controls(session_id)
            elif fresh and kind == "class":
                klass = await self.services.classes.find(session_id)
                if klass is not None and klass.spotlight == pid:
                    await media.set_spotlight(session_id, pid)
        await self.view.push(session_id)

    async def _serving_node(self, identity: Identity, session_id: str, kind: str,
                            origin: NodeLoad) -> NodeLoad:
        """The node that serves this participant (signaling/spanning.py), unless a live node
        carries its seat already (this one, or another it comes back through): the seat
        stays put."""
        placement, serving = self.hub.placement, self.hub.serving
        assert placement is not None
        if serving is None or not may_span(kind, identity.role):
            return origin
        pid = identity.participant_id
        served = serving.rooms.get(session_id)
        if served is not None and pid in served.members:
            return placement.me
        nodes = [n for n in await placement.live_nodes(beating=True)
                 if n.id != placement.node_id]
        seat = await serving.server_of(session_id, pid)
        for node in nodes:
            if node.id == seat:
                return node
        load = await serving.participants_on(session_id, origin.id)
        # the origin's threshold, so that nodes configured differently agree (each applying
        # its own, an origin at 0 and an edge at 100 sent a viewer back and forth 300 times)
        span_after = origin.span_after
        if span_after is None:
            span_after = self.services.config.span_after
        if not spans(kind, identity.role, load, span_after):
            return origin
        region: tuple[str, ...] = ()
        if identity.role in SITE_ROLES:
            site = await self.services.directory.find_site(pid)
            region = tuple(site.region) if site is not None else ()
        return choose_serving_node([*nodes, placement.me], origin, identity.role, region, load,
                                   span_after, kind=kind, here=placement.node_id)

    async def enter_consult(self, conn: Connection, consult_id: str, *,
                            fresh: bool = True) -> None:
        """Enter the consult's media session if the caller is one of its parties, now."""
        identity = joined(conn)
        ticket = await self.services.consults.get(consult_id)
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
        await self.enter_media(conn, consult_id, "consult", fresh=fresh)

    async def leave_media(self, participant_id: str, session_id: str) -> None:
        media = self.hub.media
        if media is not None:
            with contextlib.suppress(Exception):
                await media.leave(session_id, participant_id)
        if self.hub.serving is not None:
            with contextlib.suppress(StoreUnavailable):
                await self.hub.serving.release(session_id, participant_id)
        with contextlib.suppress(BrokerError):
            await self.view.push(session_id)

    # --- a connection's life ------------------------------------------------------------------
    async def on_connected(self, conn: Connection, *, resumed: bool) -> None:
        """A connection has joined: into its class or consult, else its console."""
        identity = joined(conn)
        session = identity.session_id
        if identity.role in CLASS_ROLES and session is not None:
            if await self.services.classes.find(session) is not None:
                await self.services.classes.join(session, actor_of(conn))
                await self.enter_media(conn, session, "class", fresh=not resumed)
                return
        if session is not None and identity.role in ("clinic", "doctor", "observer"):
            with contextlib.suppress(BrokerError):
                await self.enter_consult(conn, session, fresh=not resumed)
                return
        if identity.role in ("clinic", "doctor"):
            await self.push_console(conn)

    async def on_disconnected(self, identity: Identity, session: str | None) -> None:
        """A connection dropped (its seat is kept for the grace): the others see it absent."""
        if session is not None:
            with contextlib.suppress(BrokerError):
                await self.view.push(session)

    async def on_seat_expired(self, identity: Identity, session: str | None) -> None:
        """No reconnection within the grace: the participant leaves its session."""
        if session is None:
            return
        if await self.services.classes.find(session) is not None:
            with contextlib.suppress(BrokerError):
                await self.services.classes.leave(session, Actor(identity.participant_id,
                                                                 Role(identity.role)))
        await self.leave_media(identity.participant_id, session)

    # --- session events ---------------------------------------------------------------------
    def follow_session(self, session_id: str) -> None:
        """Follow `session:<id>` while someone on this node is interested in it."""
        self.hub.watch(f"session:{session_id}",
                       functools.partial(self.on_session_event, session_id))

    async def on_session_event(self, session_id: str, data: bytes) -> None:
        try:
            event = decode_event(data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            await self.view.push(session_id)  # e.g. a mute change: just refresh
            await self._apply_controls(session_id)
            return
        ended = (isinstance(event, ClassStateChanged)
                 and event.state == ClassState.ENDED.value) or (
            isinstance(event, ConsultStateChanged)
            and event.state in {s.value for s in CLOSED_CONSULT}
        )
        if isinstance(event, ConsultStateChanged):
            await self._notify_consult_parties(session_id)
        if ended:
            await self._end(session_id, getattr(event, "outcome", None))
            return
        await self.view.push(session_id)
        await self._apply_controls(session_id)

    async def _apply_controls(self, session_id: str) -> None:
        """The class's spotlight and mutes, as the store has them, on this node's relay (every
        node serving the room does this: signaling/serving.py)."""
        if self.hub.serving is None:
            return
        try:
            await self.hub.serving.apply_controls(session_id)
        except MediaError as exc:
            log.warning("controls not applied room=%s: %r", session_id, exc)

    async def _end(self, session_id: str, outcome: str | None) -> None:
        """The session is over: last frames, recording stopped, room closed, unfollowed."""
        hub = self.hub
        hub.broadcast(session_id, await self.view.state(session_id))
        hub.broadcast(session_id, m.Ended(session=session_id, outcome=outcome))
        if hub.placement is None or session_id in hub.placement.held:
            # the recording is on the room's origin: an edge serving the class too must not
            # win the race to stop it (it has neither the recorder nor the tracks)
            await recording_control.on_session_ended(self.services, hub, session_id)
        for conn in hub.local_members(session_id):
            conn.media_session = None
        if hub.serving is not None:
            await hub.serving.forget(session_id)
        if hub.media is not None:
            with contextlib.suppress(Exception):
                await hub.media.close_room(session_id)
        if hub.placement is not None:
            await hub.placement.release(session_id)
        hub.unwatch(f"session:{session_id}")

    async def _notify_consult_parties(self, session_id: str) -> None:
        ticket = await self.services.consults.find(session_id)
        if ticket is None:
            return
        clinic = self.hub.by_participant.get(ticket.clinic_site_id)
        if clinic is not None:
            if ticket.state is ConsultState.ADMITTED and clinic.media_session != session_id:
                clinic.send(m.Notice(level="info", code="admitted",
                                     message="the doctor is ready: joining the consult",
                                     detail={"consult": session_id}))
            if ticket.state in CLOSED_CONSULT and clinic.media_session != session_id:
                clinic.send(m.Ended(session=session_id,
                                    outcome=ticket.outcome.value if ticket.outcome else None))
            await self.push_console(clinic)
        for expert_id in {ticket.expert_id, *ticket.previous_expert_ids} - {None}:
            doctor = self.hub.by_participant.get(str(expert_id))
            if doctor is not None:
                await self.push_console(doctor)

    # --- consoles (doctor queue, clinic lobby) ----------------------------------------------
    async def console_items(self, identity: Identity) -> list[dict[str, Any]]:
        services = self.services
        now = services.clock()
        if identity.role == "clinic":
            items = []
            for ticket in await services.consults.list_open(
                    clinic_site_id=identity.participant_id):
                room = await services.consults.waiting_room(ticket.id)
                items.append(_ticket_item(ticket, now, position=room.position,
                                          estimated_wait_s=room.estimated_wait_s))
            return items
        mine = await services.consults.assigned_to(identity.participant_id)
        waiting = await services.consults.tickets_for_expert(identity.participant_id)
        names: dict[str, str] = {}
        for site_id in {t.clinic_site_id for t in [*mine, *waiting]}:
            site = await services.directory.find_site(site_id)
            names[site_id] = site.name if site else site_id
        return ([_ticket_item(t, now, mine=True, clinic_name=names[t.clinic_site_id])
                 for t in mine]
                + [_ticket_item(t, now, mine=False, clinic_name=names[t.clinic_site_id])
                   for t in waiting])

    async def push_console(self, conn: Connection) -> None:
        identity = conn.identity
        if identity is None or conn.closed:
            return
        items = await self.console_items(identity)
        conn.send(m.Queue(items=items))
        if identity.role == "clinic":
            for item in items:
                self.follow_session(item["consult"])
        elif identity.role == "doctor":
            expert = await self.services.directory.find_expert(identity.participant_id)
            if expert is not None:
                for channel in self.services.consults.channels_for_expert(expert):
                    # One watcher per channel serves every doctor of this node who follows
                    # it: a watcher bound to the first doctor's connection would go silent
                    # when that doctor left, and never reach a second doctor of the same
                    # specialty.
                    self.hub.watch(channel, self._on_queue_event)

    async def _on_queue_event(self, data: bytes) -> None:
        await self.push_doctor_consoles()

    async def push_doctor_consoles(self) -> None:
        """Resend the console of every doctor connected to this node."""
        for conn in list(self.hub.by_participant.values()):
            if conn.identity is not None and conn.identity.role == "doctor":
                await self.push_console(conn)

    async def refresh_consoles(self) -> None:
        """Every few seconds, resend lobbies and consoles (positions and waits move with
        time)."""
        while True:
            await asyncio.sleep(CONSOLE_REFRESH_S)
            for conn in list(self.hub.by_participant.values()):
                if conn.identity is not None and conn.identity.role in ("clinic", "doctor"):
                    try:
                        await self.push_console(conn)
                    except StoreUnavailable:
                        break
                    except Exception:
                        log.exception("console refresh failed")

    # --- the media relay's events ---------------------------------------------------------------
    def on_media_event(self, room_id: str, participant_id: str, event: dict[str, Any]) -> None:
        """One event of the relay (see media/backend.py) for one participant of a room."""
        hub = self.hub
        if event.get("type") == "link_stats":  # the relay's periodic link sample: metrics only
            metrics = hub.metrics
            metrics.subscriber_estimate.observe(float(event.get("estimate_bps") or 0))
            metrics.subscriber_loss.observe(float(event.get("loss") or 0))
            if event.get("rtt_s"):
                metrics.subscriber_rtt.observe(float(event["rtt_s"]))
            return
        frame = media_event_frame(event)
        if event.get("type") == "room_lost":
            # `reconnect` goes out once the participant is in the room placed again: a client
            # publishing at once must find its place there
            hub.spawn(self._replace_room(room_id, participant_id, frame))
            return
        if event.get("type") == "link":
            rung = str(event.get("rung", "full"))
            hub.links.setdefault(room_id, {}).setdefault(participant_id, {})["rung"] = rung
            for member in hub.local_members(room_id):
                if (frame is not None and member.identity is not None
                        and member.identity.role in WATCHERS_OF_LINKS
                        and member.identity.participant_id != participant_id):
                    member.send(frame)
        if frame is not None:
            hub.send_to(participant_id, frame)

    async def _replace_room(self, room_id: str, participant_id: str,
                            reconnect: m.ServerFrame | None = None) -> None:
        """The worker holding `room_id` died: open it again, rejoin this participant, then
        tell it to rebuild its media (`reconnect`)."""
        try:
            conn = self.hub.by_participant.get(participant_id)
            media = self.hub.media
            if (media is None or conn is None or conn.identity is None
                    or conn.media_session != room_id):
                return
            klass = await self.services.classes.find(room_id)
            await media.open_room(room_id, "class" if klass is not None else "consult")
            if self.hub.serving is not None:
                await self.hub.serving.reopen(room_id)
            await media.join(room_id, participant_id, conn.identity.role)
        finally:
            if reconnect is not None:
                self.hub.send_to(participant_id, reconnect)


def _ticket_item(ticket: ConsultTicket, now: float, **extra: Any) -> dict[str, Any]:
    return {
        "consult": ticket.id, "state": ticket.state.value, "specialty": ticket.specialty,
        "urgency": ticket.urgency.value, "language": ticket.language, "reason": ticket.reason,
        "clinic_site_id": ticket.clinic_site_id, "expert_id": ticket.expert_id,
        "requested_at": ticket.requested_at, "waited_s": round(now - ticket.requested_at, 1),
        **extra,
    }
