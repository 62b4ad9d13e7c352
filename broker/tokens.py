"""Join tokens: the signed links `/join/<token>` (pyjwt, HS256) and the keys that sign them.

`Keyring` holds several signing keys by key id (one active for signing, older ones kept for
verification until retired). `TokenService` issues tokens and verifies them, rejecting anything
but HS256 with a known key id, expired or not-yet-valid tokens, the wrong audience, role or
permission, revoked token ids, and single-use tokens used before. Times come from the clock
passed in (pyjwt's own time checks are turned off). Error messages never contain the token.

A session credential names the join link it was exchanged from (`link`), so revoking the link
revokes the credentials exchanged from it too. Each revocation is published on
`REVOKED_CHANNEL` (the token id as the message), so every node can close the WebSockets that
use it.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Collection, Mapping
from typing import Annotated, Any

import jwt
import msgspec
from msgspec import Meta, Struct

from broker.audit import AuditAction, AuditLog
from broker.clock import Clock
from broker.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from broker.models import DEFAULT_PERMISSIONS, Actor, Permission, Role
from broker.store import Store

ALGORITHM = "HS256"
"""The only algorithm issued and accepted."""

AUDIENCE = "tongxin"
"""Audience of every join token."""

MIN_SECRET_BYTES = 32
"""Shortest accepted HMAC secret (RFC 7518 asks for at least the hash size)."""

MAX_TOKEN_CHARS = 4096
"""Longer strings are refused before any parsing."""

MAX_TTL_S = 30 * 24 * 3600.0
"""Longest token lifetime issued (30 days)."""

REVOKED_PREFIX = "token:revoked:"
REVOKED_CHANNEL = "tokens:revoked"
"""Store channel on which each revoked token id is published (signaling/hub.py listens)."""
USED_PREFIX = "token:used:"

_KID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


class JoinClaims(Struct, frozen=True, kw_only=True):
    """What a verified join token says."""

    sub: Annotated[str, Meta(min_length=1, max_length=64)]
    """Who: an expert id (teacher, doctor), a site id (classroom, clinic) or an operator id."""
    role: Role
    """The holder's role."""
    session: Annotated[str, Meta(max_length=64)] | None = None
    """The class or consult this token joins; None for a console (doctor, clinic, operator)."""
    perms: tuple[Permission, ...] = ()
    """What the holder may do."""
    exp: float
    """Expiry, epoch seconds."""
    nbf: float
    """Not valid before, epoch seconds."""
    iat: float
    """Issued at, epoch seconds."""
    jti: Annotated[str, Meta(min_length=1, max_length=64)]
    """Unique token id (revocation and single use are by jti)."""
    aud: str = AUDIENCE
    """Audience; always `tongxin`."""
    single_use: bool = False
    """An invitation that works once (consumed on first join)."""
    name: Annotated[str, Meta(max_length=100)] = ""
    """Display name of the holder."""
    link: Annotated[str, Meta(max_length=64)] | None = None
    """On a session credential: the jti of the join link it was exchanged from."""

    @property
    def actor(self) -> Actor:
        """The holder as an `Actor` for service calls."""
        return Actor(self.sub, self.role)

    def allows(self, perm: Permission) -> bool:
        return perm in self.perms


class Keyring:
    """Signing keys by key id; see the module docstring. Never prints its secrets."""

    def __init__(self, keys: Mapping[str, bytes | str], active: str) -> None:
        self._keys: dict[str, bytes] = {}
        for kid, secret in keys.items():
            self._add(kid, secret)
        if active not in self._keys:
            raise InvalidInput(f"active key id {active!r} is not in the keyring")
        self._active = active

    @classmethod
    def generate(cls, kid: str = "k1") -> Keyring:
        """A keyring with one fresh random key (embedded single-node use)."""
        return cls({kid: secrets.token_bytes(MIN_SECRET_BYTES)}, active=kid)

    @classmethod
    def from_spec(cls, spec: str) -> Keyring:
        """Parse `kid:secret[,kid:secret...]` (e.g. TONGXIN_TOKEN_KEYS); the first is active."""
        keys: dict[str, bytes | str] = {}
        first: str | None = None
        for part in spec.split(","):
            kid, sep, secret = part.strip().partition(":")
            if not sep:
                raise InvalidInput("token keys must be written kid:secret[,kid:secret...]")
            if kid in keys:
                raise InvalidInput(f"token key id {kid!r} appears twice")
            keys[kid] = secret
            first = first or kid
        if first is None:
            raise InvalidInput("no token keys given")
        return cls(keys, active=first)

    def _add(self, kid: str, secret: bytes | str) -> None:
        if not _KID.match(kid):
            raise InvalidInput("key id must be 1-32 characters of A-Z a-z 0-9 _ . -")
        raw = secret.encode() if isinstance(secret, str) else bytes(secret)
        if len(raw) < MIN_SECRET_BYTES:
            raise InvalidInput(
                f"secret of key {kid!r} is {len(raw)} bytes; at least {MIN_SECRET_BYTES} needed"
            )
        self._keys[kid] = raw

    @property
    def active_kid(self) -> str:
        return self._active

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def secret(self, kid: str) -> bytes | None:
        return self._keys.get(kid)

    def rotate(self, new_kid: str, secret: bytes | str) -> None:
        """Sign with a new key from now on; older keys still verify until retired."""
        if new_kid in self._keys:
            raise Conflict(f"key id {new_kid!r} is already in the keyring")
        self._add(new_kid, secret)
        self._active = new_kid

    def retire(self, kid: str) -> None:
        """Forget key `kid`: tokens it signed stop verifying."""
        if kid == self._active:
            raise Conflict("the active signing key cannot be retired; rotate first")
        if self._keys.pop(kid, None) is None:
            raise NotFound(f"key id {kid!r} is not in the keyring")

    def __repr__(self) -> str:
        return f"Keyring(kids={list(self._keys)}, active={self._active!r})"


class TokenService:
    """Issues, verifies and revokes join tokens; see the module docstring."""

    def __init__(
        self, store: Store, keyring: Keyring, clock: Clock, audit: AuditLog | None = None
    ) -> None:
        self._store = store
        self.keyring = keyring
        self._clock = clock
        self._audit = audit

    def issue(
        self,
        *,
        sub: str,
        role: Role,
        session: str | None = None,
        perms: Collection[Permission] | None = None,
        ttl_s: float = 3600.0,
        not_before: float | None = None,
        single_use: bool = False,
        name: str = "",
        link: str | None = None,
    ) -> str:
        """A signed token; `perms` None gives the role's defaults (`DEFAULT_PERMISSIONS`)."""
        if not 0 < ttl_s <= MAX_TTL_S:
            raise InvalidInput(f"token lifetime must be between 0 and {MAX_TTL_S:g} s")
        now = self._clock()
        role = Role(role)
        chosen = DEFAULT_PERMISSIONS[role] if perms is None else tuple(perms)
        claims = JoinClaims(
            sub=sub,
            role=role,
            session=session,
            perms=tuple(dict.fromkeys(Permission(p) for p in chosen)),
            exp=now + ttl_s,
            nbf=now if not_before is None else not_before,
            iat=now,
            jti=uuid.uuid4().hex,
            single_use=single_use,
            name=name,
            link=link,
        )
        try:
            payload = msgspec.to_builtins(msgspec.convert(msgspec.to_builtins(claims), JoinClaims))
        except msgspec.ValidationError as exc:
            raise InvalidInput(f"invalid token claims: {exc}") from None
        kid = self.keyring.active_kid
        secret = self.keyring.secret(kid)
        assert secret is not None
        return jwt.encode(payload, secret, algorithm=ALGORITHM, headers={"kid": kid})

    async def verify(
        self,
        token: str,
        *,
        audience: str = AUDIENCE,
        required_role: Role | Collection[Role] | None = None,
        required_perm: Permission | None = None,
        consume: bool = False,
    ) -> JoinClaims:
        """Claims of a valid, unrevoked token the holder may use for this action.

        Raises `Unauthorized` (bad, expired, revoked or used token) or `Forbidden` (wrong role
        or permission). `consume=True` uses up a single-use token atomically: among concurrent
        callers exactly one succeeds; a token refused for its role is not consumed.
        Without `consume`, a single-use token that was already used is still refused.
        """
        claims = self._decode(token, audience)
        store = self._store
        if await self.is_revoked(claims.jti) or (
            claims.link is not None and await self.is_revoked(claims.link)
        ):
            raise Unauthorized("this link was revoked; ask for a new one")
        if claims.single_use and await store.get(USED_PREFIX + claims.jti) is not None:
            raise Unauthorized("this single-use link was already used; ask for a new one")
        self._authorize(claims, required_role, required_perm)
        if consume and claims.single_use:
            keep = max(1.0, claims.exp - self._clock() + 60.0)
            if not await store.claim(USED_PREFIX + claims.jti, "used", ttl=keep):
                raise Unauthorized("this single-use link was already used; ask for a new one")
        return claims

    async def revoke(self, jti: str, until_exp: float, *, actor: str = "system") -> None:
        """Refuse token `jti` (and credentials exchanged from it) from now on; the record lives
        until the token would expire. Published on `REVOKED_CHANNEL` for open connections."""
        if not jti or len(jti) > 64:
            raise InvalidInput("jti must be 1-64 characters")
        keep = max(1.0, until_exp - self._clock() + 60.0)
        await self._store.set(REVOKED_PREFIX + jti, b"1", ttl=keep)
        await self._store.publish(REVOKED_CHANNEL, jti.encode())
        if self._audit is not None:
            await self._audit.append(actor, AuditAction.TOKEN_REVOKE, detail={"jti": jti})

    async def is_revoked(self, jti: str) -> bool:
        return await self._store.get(REVOKED_PREFIX + jti) is not None

    # --- internals -----------------------------------------------------------------------
    def _decode(self, token: str, audience: str) -> JoinClaims:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized("the link's token is missing or malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthorized("the link's token is malformed") from None
        if header.get("alg") != ALGORITHM:
            raise Unauthorized(f"the link's token is not signed with {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("the link's token has no key id")
        secret = self.keyring.secret(kid)
        if secret is None:
            raise Unauthorized("the link's token was signed with an unknown or retired key")
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                audience=audience,
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "require": ["sub", "exp", "nbf", "iat", "jti", "aud"],
                },
            )
        except jwt.InvalidSignatureError:
            raise Unauthorized("the link's token signature does not verify") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("the link's token is meant for another service") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"the link's token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("the link's token is malformed") from None
        try:
            claims = msgspec.convert(payload, JoinClaims)
        except msgspec.ValidationError as exc:
            raise Unauthorized(f"the link's token has malformed claims: {exc}") from None
        now = self._clock()
        if now >= claims.exp:
            raise Unauthorized("this link has expired; ask for a new one")
        if now < claims.nbf:
            raise Unauthorized("this link is not valid yet")
        return claims

    @staticmethod
    def _authorize(
        claims: JoinClaims,
        required_role: Role | Collection[Role] | None,
        required_perm: Permission | None,
    ) -> None:
        if required_role is not None:
            allowed = {required_role} if isinstance(required_role, Role) else set(required_role)
            if claims.role not in allowed:
                names = ", ".join(sorted(r.value for r in allowed))
                raise Forbidden(f"a {claims.role.value} may not do this (needs: {names})")
        if required_perm is not None and required_perm not in claims.perms:
            raise Forbidden(f"this link does not grant {Permission(required_perm).value}")
