"""The handler of each frame a client sends after `join`, and the table dispatching to them.

`SessionFrames` has one small method per session frame (enter, leave, mute, hand, spotlight,
claim, admit, hand_over, end, record, consent, link, ping); `signaling.ws_media.MediaFrames`
has those about media (publish, answer, request_offer, data_saver). Each checks the caller's
role, calls the broker service or the relay, and lets the broker's events drive what every
node pushes (signaling/ws_session.py). `frame_table` maps each frame type to its handler; the
hub looks a decoded frame up there (`join` it handles itself).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec

from broker.consult_state import Outcome
from broker.errors import BrokerError, Conflict, NotFound
from signaling import messages as m
from signaling import recording_control
from signaling.connection import Connection
from signaling.session_view import muted_map
from signaling.ws_media import MediaFrames, in_media_session, joined
from signaling.ws_session import (
    CLASS_ROLES,
    HOSTS,
    WATCHERS_OF_LINKS,
    SessionFlow,
    actor_of,
    require_role,
)

F = TypeVar("F", bound=m.ClientFrame)
FrameHandler = Callable[[Connection, m.ClientFrame], Awaitable[None]]
"""What the hub calls with a decoded frame of the type the handler was registered for."""
REFRESH_EVENT = b'{"type":"refresh"}'
"""Published on `session:<id>` so every node re-reads and pushes the session (a mute)."""


class FrameTable:
    """Frame type -> its handler; `on` checks that a handler takes the type it is set for."""

    def __init__(self) -> None:
        self._handlers: dict[type[m.ClientFrame], FrameHandler] = {}

    def on(self, kind: type[F], handler: Callable[[Connection, F], Awaitable[None]]) -> None:
        async def run(conn: Connection, frame: m.ClientFrame) -> None:
            assert isinstance(frame, kind)
            await handler(conn, frame)

        self._handlers[kind] = run

    def get(self, kind: type[m.ClientFrame]) -> FrameHandler | None:
        return self._handlers.get(kind)

    def kinds(self) -> set[type[m.ClientFrame]]:
        return set(self._handlers)


class SessionFrames:
    """Handlers of the frames about classes and consults, one method each."""

    def __init__(self, flow: SessionFlow) -> None:
        self.flow = flow
        self.services = flow.services
        self.hub = flow.hub

    async def enter(self, conn: Connection, frame: m.Enter) -> None:
        if conn.media_session == frame.session:
            await self.flow.view.push(frame.session)
            return
        if conn.media_session is not None:
            raise Conflict("leave the current session first", code="in_session")
        await self.flow.enter_consult(conn, frame.session)

    async def leave(self, conn: Connection, frame: m.Leave) -> None:
        session = conn.media_session
        if session is None:
            return
        conn.media_session = None
        await self.flow.leave_media(joined(conn).participant_id, session)
        await self.flow.push_console(conn)

    async def mute(self, conn: Connection, frame: m.Mute) -> None:
        session = in_media_session(conn)
        me = joined(conn).participant_id
        target = frame.participant or me
        if target != me:
            require_role(conn, HOSTS, "mute others")
        state = await self.flow.view.state(session)
        present = [p.id for p in state.participants]
        if target != "*" and target not in present:
            raise NotFound("no such participant in this session")
        store, media, serving = self.services.store, self.hub.media, self.hub.serving
        for pid in [p for p in present if p != me] if target == "*" else [target]:
            if frame.muted:
                await store.map_set(muted_map(session), pid, b"1")
            else:
                await store.map_delete(muted_map(session), pid)
            if media is not None and serving is None:
                await media.set_muted(session, pid, frame.muted)
        if serving is not None:  # the participant may be served by another node: each applies
            await serving.apply_controls(session)
        await store.publish(f"session:{session}", REFRESH_EVENT)
        await self.flow.view.push(session)

    async def hand(self, conn: Connection, frame: m.Hand) -> None:
        session = in_media_session(conn)
        require_role(conn, {"assistant"}, "raise a hand")
        if frame.raised:
            await self.services.classes.raise_hand(session, actor_of(conn))
        else:
            await self.services.classes.lower_hand(session, joined(conn).participant_id,
                                                   actor_of(conn))

    async def spotlight(self, conn: Connection, frame: m.Spotlight) -> None:
        session = in_media_session(conn)
        require_role(conn, {"teacher"}, "call on a classroom")
        await self.services.classes.set_spotlight(session, frame.participant, actor_of(conn))
        if self.hub.serving is not None:  # every serving node applies it (signaling/serving.py)
            await self.hub.serving.apply_controls(session)
        elif self.hub.media is not None:
            await self.hub.media.set_spotlight(session, frame.participant)

    async def claim(self, conn: Connection, frame: m.Claim) -> None:
        require_role(conn, {"doctor"}, "claim a consult")
        await self.services.consults.claim(frame.consult, actor_of(conn))
        await self.flow.push_console(conn)

    async def admit(self, conn: Connection, frame: m.Admit) -> None:
        require_role(conn, {"doctor"}, "admit a clinic")
        await self.services.consults.admit(frame.consult, actor_of(conn))
        await self.flow.push_console(conn)

    async def hand_over(self, conn: Connection, frame: m.HandOver) -> None:
        require_role(conn, {"doctor"}, "hand over a consult")
        await self.services.consults.hand_over(frame.consult, frame.expert, actor_of(conn),
                                               note=frame.note)
        if conn.media_session == frame.consult:
            conn.media_session = None
            await self.flow.leave_media(actor_of(conn).id, frame.consult)
        await self.flow.push_console(conn)

    async def end(self, conn: Connection, frame: m.End) -> None:
        session = in_media_session(conn)
        identity = require_role(conn, HOSTS, "end the session")
        if identity.role == "teacher":
            await self.services.classes.end(session, actor_of(conn))
        else:
            outcome = Outcome(frame.outcome) if frame.outcome else Outcome.RESOLVED
            await self.services.consults.end(session, actor_of(conn), outcome=outcome,
                                             note=frame.note)

    async def record(self, conn: Connection, frame: m.Record) -> None:
        session = in_media_session(conn)
        identity = require_role(conn, HOSTS, "record")
        await recording_control.set_recording(self.services, self.hub, session,
                                              identity.participant_id, identity.role, frame.on)

    async def consent(self, conn: Connection, frame: m.Consent) -> None:
        identity = require_role(conn, {"clinic"}, "answer a consent request")
        consult = conn.media_session or identity.session_id
        if consult is None or await self.services.recordings.pending_consent(consult) is None:
            raise Conflict("no recording consent was requested", code="no_consent_request")
        await recording_control.answer_consent(self.services, self.hub, consult,
                                               identity.participant_id, frame.granted)

    async def link(self, conn: Connection, frame: m.LinkReport) -> None:
        session = in_media_session(conn)
        me = joined(conn).participant_id
        report = {k: v for k, v in msgspec.structs.asdict(frame).items() if v is not None}
        self.hub.links.setdefault(session, {})[me] = report
        metrics = self.hub.metrics
        if frame.loss_pct is not None:
            metrics.subscriber_loss.observe(frame.loss_pct / 100.0)
        if frame.rtt_ms is not None:
            metrics.subscriber_rtt.observe(frame.rtt_ms / 1000.0)
        for member in self.hub.local_members(session):
            if member.identity is not None and member.identity.role in WATCHERS_OF_LINKS:
                member.send(m.Link(participant=me, rung=str(report.get("rung", "full")),
                                   loss_pct=frame.loss_pct, rtt_ms=frame.rtt_ms,
                                   estimate_kbps=frame.down_kbps, reason="client report"))

    async def ping(self, conn: Connection, frame: m.Ping) -> None:
        conn.send(m.Pong(t=frame.t))
        identity, session = conn.identity, conn.media_session
        if identity is not None and session is not None and identity.role in CLASS_ROLES:
            with contextlib.suppress(BrokerError):
                await self.services.classes.mark_present(session, identity.participant_id)


def frame_table(flow: SessionFlow) -> FrameTable:
    """The handler of each client frame type (`join` is handled by the hub itself)."""
    session, media = SessionFrames(flow), MediaFrames(flow.hub, flow.services)
    table = FrameTable()
    table.on(m.Enter, session.enter)
    table.on(m.Leave, session.leave)
    table.on(m.Mute, session.mute)
    table.on(m.Hand, session.hand)
    table.on(m.Spotlight, session.spotlight)
    table.on(m.Claim, session.claim)
    table.on(m.Admit, session.admit)
    table.on(m.HandOver, session.hand_over)
    table.on(m.End, session.end)
    table.on(m.Record, session.record)
    table.on(m.Consent, session.consent)
    table.on(m.LinkReport, session.link)
    table.on(m.Ping, session.ping)
    table.on(m.Publish, media.publish)
    table.on(m.Answer, media.answer)
    table.on(m.RequestOffer, media.request_offer)
    table.on(m.DataSaverFrame, media.data_saver)
    return table
