"""The WebSocket hub: accepts connections on `/ws`, dispatches their frames, pushes state.

The hub is thin: it authenticates the `join` frame, routes each later frame to its handler
(the table of signaling/ws_frames.py), tells the session flow (signaling/ws_session.py) when a
connection joins, drops or loses its seat, and fans out what they produce. Handlers see the
hub only as a `signaling.fanout.Fanout`, so none of them imports this module.
Session changes travel through the store's pub/sub (`session:<id>`), so a change made through
any node reaches the connections of every node. A frame that fails gets an error frame and
affects nothing else.

A connection lives no longer than its credential: it is closed (error `revoked`, close 4003)
when the credential or the join link it came from is revoked on any node (`tokens:revoked`,
re-checked in the store every `CREDENTIAL_RECHECK_S` in case an event was missed), and (error
`expired`, close 4004) when the credential expires.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Coroutine
from typing import Any

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from broker.errors import BrokerError, StoreUnavailable
from broker.tokens import REVOKED_CHANNEL
from media.backend import MediaBackend
from media.errors import MediaError, MediaUserError
from signaling import messages as m
from signaling.cancellation import cancel_and_wait
from signaling.connection import Connection, Identity
from signaling.fanout import EventHandler, LinkReports
from signaling.metrics import NodeMetrics
from signaling.middleware import client_address
from signaling.placement import Placement
from signaling.services import Services
from signaling.serving import ServingRooms
from signaling.ws_frames import frame_table
from signaling.ws_session import SessionFlow

log = logging.getLogger("tongxin.ws")

JOIN_TIMEOUT_S = 10.0
HEARTBEAT_S = 15.0
SILENCE_LIMIT_S = 3 * HEARTBEAT_S
RESUME_GRACE_S = 30.0
CLOSE_JOIN_REFUSED = 4001
CLOSE_REPLACED = 4000
CLOSE_SILENT = 4008
CLOSE_REVOKED = 4003
CLOSE_EXPIRED = 4004
CREDENTIAL_RECHECK_S = 30.0
"""How often open connections' credentials are looked up again in the store (a revocation
whose event was lost in a store outage still ends the connection within this time)."""
MAX_CONNECTIONS_PER_ADDRESS = 64

MISSED_EVENTS = b'{"type":"refresh"}'
"""Handed to a watcher's handler after its subscription came back: not an event it knows,
so it re-reads and pushes the state (a spotlight set during a store outage, for instance)."""


class SessionHub:
    """Every WebSocket of this node; see the module docstring. It is the `Fanout` its
    handlers see."""

    def __init__(self, services: Services, media: MediaBackend | None,
                 metrics: NodeMetrics) -> None:
        self.services = services
        self.media = media
        self.metrics = metrics
        self.connections: set[Connection] = set()
        self.by_participant: dict[str, Connection] = {}
        self._per_address: dict[str, int] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._pending_leave: dict[str, asyncio.TimerHandle] = {}
        self._resume_tokens: dict[str, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self.links: LinkReports = {}
        """Session -> participant -> last link report or adaptation decision."""
        self.flow = SessionFlow(services, self)
        self.frames = frame_table(self.flow)
        self.placement: Placement | None = None
        """Where rooms live when several nodes share the store (None: every room is here)."""
        self.serving: ServingRooms | None = None
        """The rooms this node serves, with the other nodes serving them (with `placement`)."""
        self.revocations_heard = asyncio.Event()
        """Set while this node is subscribed to `tokens:revoked` (tests wait for it)."""

    def media_load(self) -> tuple[int, int]:
        """(rooms, participants) whose media this node carries, for placement."""
        sessions = [c.media_session for c in self.connections if c.media_session is not None]
        return len(set(sessions)), len(sessions)

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweeper = loop.create_task(self._sweep_silent())
        self._refresher = loop.create_task(self.flow.refresh_consoles())
        self._watchers[REVOKED_CHANNEL] = loop.create_task(self._watch_revocations())
        if self.media is not None:
            self.media.on_event(self.on_media_event)

    async def close_all(self) -> None:
        """Going-away close for every connection (server shutdown)."""
        for task in (self._sweeper, self._refresher):
            if task is not None:
                task.cancel()
        for handle in self._pending_leave.values():
            handle.cancel()
        closing = [c.close(WSCloseCode.GOING_AWAY, b"server shutting down")
                   for c in list(self.connections)]
        await asyncio.gather(*closing, return_exceptions=True)
        await asyncio.gather(*(cancel_and_wait(t) for t in
                               [*self._watchers.values(), *self._tasks]))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run `coro` in the background, logging (not raising) its failure."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background task failed: %r", task.exception())

    # --- the WebSocket endpoint ------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=m.MAX_FRAME_BYTES, heartbeat=None,
                                   receive_timeout=None)
        address = client_address(request)
        if self._per_address.get(address, 0) >= MAX_CONNECTIONS_PER_ADDRESS:
            await ws.prepare(request)
            await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too many connections")
            return ws
        await ws.prepare(request)
        conn = Connection(ws=ws, address=address)
        conn.start()
        self._per_address[address] = self._per_address.get(address, 0) + 1
        self.connections.add(conn)
        self.metrics.websockets_open.inc()
        try:
            if await self._await_join(conn):
                await self._read_loop(conn)
        finally:
            self.metrics.websockets_open.dec()
            self.connections.discard(conn)
            left = self._per_address.get(address, 1) - 1
            if left <= 0:
                self._per_address.pop(address, None)
            else:
                self._per_address[address] = left
            await self._on_disconnect(conn)
            await conn.close()
        return ws

    async def _await_join(self, conn: Connection) -> bool:
        try:
            msg = await conn.ws.receive(timeout=JOIN_TIMEOUT_S)
        except TimeoutError:
            await conn.close(CLOSE_JOIN_REFUSED, b"join expected")
            return False
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return False
        try:
            frame = m.client_decoder.decode(msg.data)
            if not isinstance(frame, m.Join):
                return await self._refuse(conn, "join_required", "send join before anything else",
                                          m.frame_type(msg.data))
            await self._join(conn, frame)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            return await self._refuse(conn, "invalid_frame", f"first frame must be join: {exc}",
                                      m.frame_type(msg.data))
        except BrokerError as exc:
            return await self._refuse(conn, exc.code, exc.message, "join")
        return True

    async def _refuse(self, conn: Connection, code: str, message: str, ref: str | None) -> bool:
        """Tell the client why, then close with 4001; always False (not joined)."""
        self.error(conn, code, message, ref)
        await conn.drain_and_stop()
        await conn.close(CLOSE_JOIN_REFUSED, b"join refused")
        return False

    async def _join(self, conn: Connection, frame: m.Join) -> None:
        identity = await self.services.identify(frame.credential)
        conn.identity = identity
        left_s = max(0.0, identity.expires_at - self.services.clock())
        conn.expiry = asyncio.get_running_loop().call_later(
            left_s, lambda: self.spawn(self.cut_off(conn, "expired")))
        pid = identity.participant_id
        resumed = frame.resume is not None and self._resume_tokens.get(frame.resume) == pid
        previous = self.by_participant.get(pid)
        if previous is not None and previous is not conn:
            previous.media_session = None  # the seat moves to the new connection
            self.spawn(previous.close(CLOSE_REPLACED, b"replaced by a newer connection"))
        self.by_participant[pid] = conn
        pending = self._pending_leave.pop(pid, None)
        if pending is not None:
            pending.cancel()
        resume = secrets.token_urlsafe(24)
        self._resume_tokens = {k: v for k, v in self._resume_tokens.items() if v != pid}
        self._resume_tokens[resume] = pid
        welcome = await self.services.welcome(identity, resume, HEARTBEAT_S)
        conn.send(welcome)
        self.metrics.participants.labels(identity.role).inc()
        await self.flow.on_connected(conn, resumed=resumed)

    async def _read_loop(self, conn: Connection) -> None:
        async for msg in conn.ws:
            conn.last_seen = time.monotonic()
            if msg.type == WSMsgType.ERROR:
                return
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            if conn.closed:
                return  # being cut off or too slow: its frames are not acted on
            if conn.identity is not None and conn.identity.lapsed(self.services.clock()):
                await self.cut_off(conn, "expired")
                return
            await self.dispatch(conn, msg.data)

    async def dispatch(self, conn: Connection, raw: str | bytes) -> None:
        """Decode one frame and run its handler; every failure becomes an error frame."""
        try:
            frame = m.client_decoder.decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            self.error(conn, "invalid_frame", str(exc), m.frame_type(raw))
            return
        kind = type(frame)
        ref = kind.__struct_config__.tag
        handler = self.frames.get(kind)
        if handler is None:
            self.error(conn, "unexpected_frame", f"{ref} is not expected now", str(ref))
            return
        try:
            await handler(conn, frame)
        except BrokerError as exc:
            self.error(conn, exc.code, exc.message, str(ref))
        except MediaUserError as exc:
            self.error(conn, "media_rejected", str(exc) or "the relay refused this", str(ref))
        except MediaError as exc:
            self.error(conn, "media_unavailable",
                       f"the media relay is unavailable ({type(exc).__name__}); retry", str(ref))
        except Exception:
            log.exception("frame handler failed", extra={"frame": ref, "conn": conn.id})
            self.error(conn, "internal_error", "the server failed on this frame", str(ref))

    def error(self, conn: Connection, code: str, message: str, ref: str | None) -> None:
        self.metrics.ws_errors.labels(code).inc()
        conn.send(m.ErrorFrame(code=code, message=message[:500], ref=ref))

    # --- revoked and expired credentials ----------------------------------------------------
    async def cut_off(self, conn: Connection, why: str) -> None:
        """End a connection whose credential stopped being valid (`revoked` or `expired`):
        an error frame saying so, then close 4003 or 4004. A resume needs a valid credential,
        so the seat is not kept for it beyond the usual grace."""
        if conn.closed:
            return
        if why == "revoked":
            code, message = CLOSE_REVOKED, "this link or credential was revoked"
        else:
            code, message = CLOSE_EXPIRED, "this credential has expired; open your link again"
        self.error(conn, why, message, None)
        conn.closed = True  # nothing more is sent or done for it (the error frame still goes)
        await conn.drain_and_stop()
        await conn.close(code, f"credential {why}".encode())

    def revoke_local(self, jti: str) -> int:
        """Cut off this node's connections whose credential token `jti` revokes; how many."""
        hit = [c for c in self.connections
               if c.identity is not None and c.identity.revoked_by(jti) and not c.closed]
        for conn in hit:
            self.spawn(self.cut_off(conn, "revoked"))
        return len(hit)

    async def _watch_revocations(self) -> None:
        """Follow `tokens:revoked`; after a lost subscription, look every credential up again
        (revocations published meanwhile were missed)."""
        missed = False
        while True:
            try:
                async with self.services.store.subscribe(REVOKED_CHANNEL) as sub:
                    self.revocations_heard.set()
                    if missed:
                        await self.recheck_credentials()
                    async for event in sub:
                        self.revoke_local(event.data.decode(errors="replace"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # store outage: retry, connections carry on meanwhile
                self.revocations_heard.clear()
                missed = True
                log.warning("revocation subscription lost, retrying", extra={"error": str(exc)})
                await asyncio.sleep(1.0)

    async def recheck_credentials(self) -> None:
        """Look up every open connection's credential: cut off the revoked and the expired."""
        now = self.services.clock()
        for conn in list(self.connections):
            identity = conn.identity
            if identity is None or conn.closed:
                continue
            if identity.lapsed(now):
                self.spawn(self.cut_off(conn, "expired"))
                continue
            jtis = [identity.jti] + ([identity.link_jti] if identity.link_jti else [])
            for jti in jtis:
                if await self.services.tokens.is_revoked(jti):
                    self.spawn(self.cut_off(conn, "revoked"))
                    break

    # --- disconnects and heartbeats --------------------------------------------------------
    async def _on_disconnect(self, conn: Connection) -> None:
        identity = conn.identity
        if identity is None:
            return
        self.metrics.participants.labels(identity.role).dec()
        pid = identity.participant_id
        if self.by_participant.get(pid) is not conn:
            return  # replaced by a newer connection: the seat lives on there
        del self.by_participant[pid]
        if conn.redirected:
            return  # sent to the node holding its session: the seat lives on there
        session = conn.media_session
        loop = asyncio.get_running_loop()
        self._pending_leave[pid] = loop.call_later(
            RESUME_GRACE_S, lambda: self.spawn(self._expire_seat(pid, session, identity))
        )
        self.spawn(self.flow.on_disconnected(identity, session))

    async def _expire_seat(self, pid: str, session: str | None, identity: Identity) -> None:
        self._pending_leave.pop(pid, None)
        self._resume_tokens = {k: v for k, v in self._resume_tokens.items() if v != pid}
        if pid in self.by_participant:
            return
        await self.flow.on_seat_expired(identity, session)

    async def _sweep_silent(self) -> None:
        next_recheck = time.monotonic() + CREDENTIAL_RECHECK_S
        while True:
            await asyncio.sleep(HEARTBEAT_S / 2)
            limit = time.monotonic() - SILENCE_LIMIT_S
            for conn in list(self.connections):
                if conn.last_seen < limit and conn.identity is not None:
                    self.spawn(conn.close(CLOSE_SILENT, b"no heartbeat"))
            if time.monotonic() >= next_recheck:
                next_recheck = time.monotonic() + CREDENTIAL_RECHECK_S
                try:
                    await self.recheck_credentials()
                except StoreUnavailable:
                    pass
                except Exception:
                    log.exception("credential recheck failed")

    # --- fan-out ----------------------------------------------------------------------------
    def local_members(self, session_id: str) -> list[Connection]:
        return [c for c in self.connections if c.media_session == session_id and not c.closed]

    def broadcast(self, session_id: str, frame: m.ServerFrame) -> None:
        for conn in self.local_members(session_id):
            conn.send(frame)

    def send_to(self, participant_id: str, frame: m.ServerFrame) -> bool:
        conn = self.by_participant.get(participant_id)
        if conn is None:
            return False
        conn.send(frame)
        return True

    def watch(self, channel: str, on_event: EventHandler) -> None:
        """Follow a store channel while this node has someone interested in it."""
        if channel in self._watchers:
            return
        task = asyncio.get_running_loop().create_task(self._watch(channel, on_event))
        self._watchers[channel] = task

    def unwatch(self, channel: str) -> None:
        task = self._watchers.pop(channel, None)
        if task is not None:
            task.cancel()

    async def _watch(self, channel: str, on_event: EventHandler) -> None:
        missed = False
        while True:
            try:
                async with self.services.store.subscribe(channel) as sub:
                    if missed:  # events published while the subscription was lost are gone
                        try:
                            await on_event(MISSED_EVENTS)
                        except StoreUnavailable:
                            raise  # the store is still coming back: subscribe and catch up again
                        except Exception:
                            log.exception("catch-up failed", extra={"channel": channel})
                        missed = False
                    async for event in sub:
                        try:
                            await on_event(event.data)
                        except Exception:
                            log.exception("event handler failed", extra={"channel": channel})
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # store outage: retry, the sessions carry on
                missed = True
                log.warning("subscription lost, retrying", extra={"channel": channel,
                                                                  "error": str(exc)})
                await asyncio.sleep(1.0)

    def on_media_event(self, room_id: str, participant_id: str, event: dict[str, Any]) -> None:
        """Called by the media backend on this loop; translate to a frame for the client."""
        try:
            self.flow.on_media_event(room_id, participant_id, event)
        except Exception:
            log.exception("media event handling failed", extra={"room": room_id})
