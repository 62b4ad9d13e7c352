"""The broker services of one node, built once and shared by REST routes and the WebSocket hub.

`Services` owns the domain objects (tokens, directory, classes, consults, audit), the session
credential exchange, and the node's background chores (consult escalation sweep, retention
sweep of ended consults' notes and snapshots).
What happens on the WebSocket lives in signaling/hub.py, ws_session.py, ws_frames.py and
ws_media.py.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

import msgspec

from broker.audit import AuditLog
from broker.classes import ClassService
from broker.clock import Clock, system_clock
from broker.consults import ConsultService
from broker.demo import load_demo
from broker.directory import Directory
from broker.errors import StoreUnavailable, Unauthorized
from broker.models import Role
from broker.recording_storage import LocalDiskStorage
from broker.recording_tokens import RecordingTokens
from broker.recordings import RecordingService
from broker.store import Store
from broker.tokens import JoinClaims, Keyring, TokenService
from media.backend import MediaBackend
from signaling import messages as m
from signaling.cancellation import cancel_and_wait
from signaling.config import ServeConfig
from signaling.connection import Identity
from signaling.retention import RetentionSweeper
from signaling.turn import ice_servers

log = logging.getLogger("tongxin.services")

CREDENTIAL_TTL_S = 12 * 3600.0
"""Longest life of a session credential (never beyond its join link's expiry)."""
SWEEP_INTERVAL_S = 5.0
SHARED_SECRET_KEY = "tokens:shared-secret"
"""Store key of the generated signing secret shared by the nodes (when none is configured)."""

HOME_OF_ROLE = {
    Role.TEACHER: "teacher",
    Role.ASSISTANT: "classroom",
    Role.DOCTOR: "doctor",
    Role.CLINIC: "clinic",
    Role.OPERATOR: "operator",
    Role.OBSERVER: "observer",
}


async def shared_secret(store: Store) -> str:
    """The generated secret every node on this store agrees on (the first to ask claims it)."""
    await store.claim(SHARED_SECRET_KEY, secrets.token_urlsafe(32))
    shared = await store.get(SHARED_SECRET_KEY)
    if shared is None:
        raise StoreUnavailable("the shared signing key vanished; retry")
    return shared.decode()


class SessionGrant(msgspec.Struct, frozen=True):
    """Answer of POST /api/v1/session: the credential that replaces the join link."""

    credential: str
    expires_at: float
    participant: dict[str, str]
    permissions: list[str]
    session: dict[str, str] | None
    home: str


class Services:
    """See the module docstring."""

    def __init__(self, config: ServeConfig, store: Store, media: MediaBackend | None,
                 clock: Clock = system_clock, keyring: Keyring | None = None) -> None:
        self.config = config
        self.store = store
        self.media = media
        self.clock = clock
        self.audit = AuditLog(store, clock)
        if keyring is None:
            keyring = (Keyring.from_spec(f"k1:{config.token_secret}") if config.token_secret
                       else Keyring.generate())
        self.tokens = TokenService(store, keyring, clock, audit=self.audit)
        self.directory = Directory(store, audit=self.audit)
        self.classes = ClassService(store, self.directory, self.tokens, self.audit, clock)
        self.consults = ConsultService(store, self.directory, self.tokens, self.audit, clock,
                                       retention_s=config.consult_retention_days * 86400.0)
        self.retention = RetentionSweeper(self.consults.records, self.audit, config.data_dir,
                                          clock)
        self.recordings = RecordingService(
            store, self.audit, clock, LocalDiskStorage(config.data_dir / "recordings"))
        self.recording_tokens = RecordingTokens(lambda: self.tokens.keyring, clock)
        self._sweeper: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        if self.config.token_secret is None and self.store.name == "redis":
            await self.adopt_shared_keyring()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
        self.retention.start()

    async def adopt_shared_keyring(self) -> None:
        """Sign with the key every node on this store agrees on: the first node to start claims
        a generated one atomically (`SHARED_SECRET_KEY`), the others adopt it. Set
        TONGXIN_TOKEN_SECRET instead to keep the key out of the store."""
        shared = await shared_secret(self.store)
        self.tokens.keyring = Keyring.from_spec(f"k1:{shared}")

    async def stop(self) -> None:
        await self.retention.stop()
        if self._sweeper is not None:
            await cancel_and_wait(self._sweeper)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            try:
                await self.consults.sweep()
            except StoreUnavailable:
                continue
            except Exception:
                log.exception("consult sweep failed")

    async def load_demo(self) -> dict[str, str]:
        links = await load_demo(self.directory, self.classes, self.consults, self.tokens,
                                self.clock())
        return links.paths()

    # --- credentials ----------------------------------------------------------------------------
    async def exchange(self, join_token: str) -> SessionGrant:
        """Trade a join link's token (consumed when single-use) for a session credential."""
        claims = await self.tokens.verify(join_token, consume=True)
        ttl = min(CREDENTIAL_TTL_S, claims.exp - self.clock())
        if ttl <= 0:
            raise Unauthorized("this link has expired; ask for a new one")
        credential = self.tokens.issue(sub=claims.sub, role=claims.role, session=claims.session,
                                       perms=claims.perms, ttl_s=ttl, name=claims.name,
                                       link=claims.link or claims.jti)
        session = await self.describe_session(claims.session)
        return SessionGrant(
            credential=credential,
            expires_at=self.clock() + ttl,
            participant={"id": claims.sub, "role": claims.role.value,
                         "name": claims.name or claims.sub},
            permissions=[p.value for p in claims.perms],
            session=session,
            home=HOME_OF_ROLE[claims.role],
        )

    async def describe_session(self, session_id: str | None) -> dict[str, str] | None:
        if session_id is None:
            return None
        klass = await self.classes.find(session_id)
        if klass is not None:
            return {"id": klass.id, "kind": "class", "title": klass.title}
        ticket = await self.consults.find(session_id)
        if ticket is not None:
            return {"id": ticket.id, "kind": "consult", "title": ticket.specialty}
        return {"id": session_id, "kind": "unknown", "title": ""}

    async def verify(self, credential: str, roles: frozenset[str] | None = None) -> JoinClaims:
        """Claims of a credential (or reusable join token) allowed on a route of `roles`.

        A single-use invitation is refused here: it must be exchanged (and so consumed) at
        POST /api/v1/session first, or it could be used again and again as a bearer token.
        """
        required = None if roles is None else {Role(r) for r in roles}
        claims = await self.tokens.verify(credential, required_role=required)
        if claims.single_use:
            raise Unauthorized("this is a single-use invitation: open the join link first")
        return claims

    async def identify(self, credential: str) -> Identity:
        claims = await self.verify(credential)
        return Identity(
            participant_id=claims.sub, role=claims.role.value, name=claims.name or claims.sub,
            permissions=frozenset(p.value for p in claims.perms), session_id=claims.session,
            jti=claims.jti, expires_at=claims.exp, link_jti=claims.link,
        )

    def ice_servers_for(self, participant_id: str) -> list[dict[str, Any]]:
        if not self.config.turn_urls:
            return []
        try:
            return ice_servers(self.config.turn_urls, (), self.config.turn_secret,
                               participant_id, 24 * 3600, self.clock())
        except ValueError:
            return []

    async def welcome(self, identity: Identity, resume: str, heartbeat_s: float) -> m.Welcome:
        return m.Welcome(
            participant=m.ParticipantView(id=identity.participant_id, role=identity.role,
                                          name=identity.name),
            permissions=sorted(identity.permissions),
            session=identity.session_id,
            resume=resume,
            ice_servers=self.ice_servers_for(identity.participant_id),
            heartbeat_s=heartbeat_s,
        )


def build_services(config: ServeConfig, store: Store, media: MediaBackend | None) -> Services:
    return Services(config, store, media)
