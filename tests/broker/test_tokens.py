"""Join tokens: every way a token is refused, rotation, revocation and single use."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest

from broker.audit import AuditAction, AuditLog
from broker.clock import ManualClock
from broker.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from broker.memory_store import MemoryStore
from broker.models import DEFAULT_PERMISSIONS, Permission, Role
from broker.store import Store
from broker.tokens import REVOKED_PREFIX, JoinClaims, Keyring, TokenService

SECRET = b"s" * 32
OTHER_SECRET = b"o" * 32
NOW = 1_700_000_000.0


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def craft(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None) -> str:
    """A JWT built by hand, so tests can produce what pyjwt would refuse to produce."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    digests = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
    digest = digests.get(header.get("alg", ""))
    signature = b""
    if secret is not None and digest is not None:
        signature = hmac.new(secret, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def good_payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "sub": "site-1",
        "role": "assistant",
        "session": "cls-1",
        "perms": ["publish_audio", "subscribe"],
        "exp": NOW + 600,
        "nbf": NOW - 1,
        "iat": NOW - 1,
        "jti": "j-1",
        "aud": "tongxin",
    }
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def tokens(store: Store, clock: ManualClock) -> TokenService:
    return TokenService(store, Keyring({"k1": SECRET}, active="k1"), clock)


@pytest.mark.parametrize(
    ("case", "make_token", "message"),
    [
        ("empty", lambda: "", "missing or malformed"),
        ("garbage", lambda: "not.a.token", "malformed"),
        ("too long", lambda: "a" * 5000, "missing or malformed"),
        ("alg none", lambda: craft({"alg": "none", "kid": "k1"}, good_payload(), None), "HS256"),
        (
            "alg none lowercase tricks",
            lambda: craft({"alg": "None", "kid": "k1"}, good_payload(), None),
            "HS256",
        ),
        ("alg HS512", lambda: craft({"alg": "HS512", "kid": "k1"}, good_payload(), SECRET), "HS2"),
        ("alg HS384", lambda: craft({"alg": "HS384", "kid": "k1"}, good_payload(), SECRET), "HS2"),
        ("no alg", lambda: craft({"kid": "k1"}, good_payload(), SECRET), "HS256"),
        (
            "wrong key",
            lambda: craft({"alg": "HS256", "kid": "k1"}, good_payload(), OTHER_SECRET),
            "signature",
        ),
        (
            "tampered payload",
            lambda: _tamper(craft({"alg": "HS256", "kid": "k1"}, good_payload(), SECRET)),
            "signature",
        ),
        (
            "unknown kid",
            lambda: craft({"alg": "HS256", "kid": "k9"}, good_payload(), SECRET),
            "unknown or retired key",
        ),
        ("missing kid", lambda: craft({"alg": "HS256"}, good_payload(), SECRET), "no key id"),
        (
            "expired",
            lambda: craft({"alg": "HS256", "kid": "k1"}, good_payload(exp=NOW), SECRET),
            "expired",
        ),
        (
            "not yet valid",
            lambda: craft({"alg": "HS256", "kid": "k1"}, good_payload(nbf=NOW + 5), SECRET),
            "not valid yet",
        ),
        (
            "wrong audience",
            lambda: craft({"alg": "HS256", "kid": "k1"}, good_payload(aud="other"), SECRET),
            "another service",
        ),
        (
            "missing jti",
            lambda: craft({"alg": "HS256", "kid": "k1"}, good_payload(jti=None), SECRET),
            "'jti'",
        ),
        (
            "missing exp",
            lambda: craft({"alg": "HS256", "kid": "k1"}, good_payload(exp=None), SECRET),
            "'exp'",
        ),
        (
            "unknown role",
            lambda: craft({"alg": "HS256", "kid": "k1"}, good_payload(role="admin"), SECRET),
            "malformed claims",
        ),
        (
            "unknown permission",
            lambda: craft({"alg": "HS256", "kid": "k1"}, good_payload(perms=["root"]), SECRET),
            "malformed claims",
        ),
    ],
)
async def test_verify_rejects_bad_tokens_as_unauthorized_without_echoing_them(
    tokens: TokenService, case: str, make_token: Callable[[], str], message: str
) -> None:
    token = make_token()
    with pytest.raises(Unauthorized) as caught:
        await tokens.verify(token)
    assert message in caught.value.message, case
    for part in token.split("."):
        assert len(part) < 8 or part not in str(caught.value)


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "==="))
    claims["role"] = "teacher"
    return f"{header}.{b64url(json.dumps(claims).encode())}.{signature}"


async def test_crafted_valid_token_is_accepted(tokens: TokenService) -> None:
    token = craft({"alg": "HS256", "kid": "k1"}, good_payload(), SECRET)
    claims = await tokens.verify(token)
    assert claims.sub == "site-1"
    assert claims.role is Role.ASSISTANT


async def test_issued_token_round_trips_with_role_defaults(tokens: TokenService) -> None:
    token = tokens.issue(sub="t1", role=Role.TEACHER, session="cls-1", name="王老师", ttl_s=60)
    claims = await tokens.verify(token, required_role=Role.TEACHER, required_perm=Permission.ADMIT)
    assert isinstance(claims, JoinClaims)
    assert (claims.sub, claims.session, claims.name) == ("t1", "cls-1", "王老师")
    assert claims.perms == DEFAULT_PERMISSIONS[Role.TEACHER]
    assert claims.exp == NOW + 60 and claims.nbf == NOW and claims.aud == "tongxin"
    assert claims.actor.id == "t1"


@pytest.mark.parametrize(
    ("advance", "accepted"),
    [(0.0, True), (59.9, True), (60.0, False), (3600.0, False)],
)
async def test_expiry_follows_the_clock_passed_in(
    tokens: TokenService, clock: ManualClock, advance: float, accepted: bool
) -> None:
    token = tokens.issue(sub="t1", role=Role.TEACHER, ttl_s=60)
    clock.advance(advance)
    if accepted:
        await tokens.verify(token)
    else:
        with pytest.raises(Unauthorized, match="expired"):
            await tokens.verify(token)


async def test_not_before_in_the_future_is_refused_until_then(
    tokens: TokenService, clock: ManualClock
) -> None:
    token = tokens.issue(sub="t1", role=Role.TEACHER, not_before=NOW + 30, ttl_s=120)
    with pytest.raises(Unauthorized, match="not valid yet"):
        await tokens.verify(token)
    clock.advance(30)
    await tokens.verify(token)


@pytest.mark.parametrize(
    ("role", "required_role", "required_perm", "allowed"),
    [
        (Role.ASSISTANT, Role.TEACHER, None, False),
        (Role.ASSISTANT, {Role.TEACHER, Role.ASSISTANT}, None, True),
        (Role.CLINIC, {Role.DOCTOR}, None, False),
        (Role.DOCTOR, {Role.DOCTOR}, Permission.ADMIT, True),
        (Role.OBSERVER, None, Permission.PUBLISH_AUDIO, False),
        (Role.ASSISTANT, None, Permission.PUBLISH_SCREEN, False),
        (Role.CLINIC, Role.CLINIC, Permission.REQUEST_CONSULT, True),
        (Role.OPERATOR, Role.OPERATOR, Permission.ADMIT, False),
    ],
)
async def test_role_and_permission_checks_answer_forbidden(
    tokens: TokenService,
    role: Role,
    required_role: Role | set[Role] | None,
    required_perm: Permission | None,
    allowed: bool,
) -> None:
    token = tokens.issue(sub="x", role=role)
    if allowed:
        await tokens.verify(token, required_role=required_role, required_perm=required_perm)
    else:
        with pytest.raises(Forbidden):
            await tokens.verify(token, required_role=required_role, required_perm=required_perm)


async def test_explicit_permissions_replace_the_role_defaults(tokens: TokenService) -> None:
    token = tokens.issue(sub="x", role=Role.TEACHER, perms=[Permission.SUBSCRIBE])
    with pytest.raises(Forbidden, match="publish_audio"):
        await tokens.verify(token, required_perm=Permission.PUBLISH_AUDIO)


async def test_revoked_token_is_refused_and_the_record_expires_with_the_token(
    store: Store, tokens: TokenService
) -> None:
    token = tokens.issue(sub="x", role=Role.CLINIC, ttl_s=600)
    claims = await tokens.verify(token)
    other = tokens.issue(sub="x", role=Role.CLINIC, ttl_s=600)
    await tokens.revoke(claims.jti, claims.exp)
    with pytest.raises(Unauthorized, match="revoked"):
        await tokens.verify(token)
    await tokens.verify(other)  # revocation is per token id
    remaining = await store.ttl(REVOKED_PREFIX + claims.jti)
    assert remaining is not None and 600 < remaining <= 661


async def test_revocation_is_audited(store: Store, clock: ManualClock) -> None:
    audit = AuditLog(store, clock)
    tokens = TokenService(store, Keyring({"k1": SECRET}, active="k1"), clock, audit)
    await tokens.revoke("j-9", NOW + 60, actor="op-1")
    page = await audit.read()
    assert [(e.actor, e.action, e.detail) for e in page.entries] == [
        ("op-1", AuditAction.TOKEN_REVOKE, {"jti": "j-9"})
    ]


async def test_single_use_token_works_once(tokens: TokenService) -> None:
    token = tokens.issue(sub="c1", role=Role.OBSERVER, single_use=True)
    await tokens.verify(token)  # looking does not use it
    await tokens.verify(token, consume=True)
    with pytest.raises(Unauthorized, match="already used"):
        await tokens.verify(token, consume=True)
    with pytest.raises(Unauthorized, match="already used"):
        await tokens.verify(token)


async def test_single_use_token_refused_for_its_role_is_not_consumed(
    tokens: TokenService,
) -> None:
    token = tokens.issue(sub="c1", role=Role.OBSERVER, single_use=True)
    with pytest.raises(Forbidden):
        await tokens.verify(token, required_role=Role.TEACHER, consume=True)
    await tokens.verify(token, consume=True)


async def test_concurrent_consumers_of_a_single_use_token_have_one_winner(
    store_handles: Any, clock: ManualClock
) -> None:
    keyring = Keyring({"k1": SECRET}, active="k1")
    services = [TokenService(await store_handles(), keyring, clock) for _ in range(4)]
    token = services[0].issue(sub="c1", role=Role.OBSERVER, single_use=True)

    async def attempt(service: TokenService) -> bool:
        try:
            await service.verify(token, consume=True)
        except Unauthorized:
            return False
        return True

    results = await asyncio.gather(*(attempt(services[i % 4]) for i in range(20)))
    assert results.count(True) == 1


async def test_consume_on_a_reusable_token_leaves_it_reusable(tokens: TokenService) -> None:
    token = tokens.issue(sub="t1", role=Role.TEACHER)
    await tokens.verify(token, consume=True)
    await tokens.verify(token, consume=True)


async def test_rotation_keeps_old_tokens_valid_until_their_key_is_retired(
    tokens: TokenService,
) -> None:
    old = tokens.issue(sub="t1", role=Role.TEACHER)
    tokens.keyring.rotate("k2", OTHER_SECRET)
    new = tokens.issue(sub="t1", role=Role.TEACHER)
    assert json.loads(base64.urlsafe_b64decode(new.split(".")[0] + "=="))["kid"] == "k2"
    await tokens.verify(old)
    await tokens.verify(new)
    tokens.keyring.retire("k1")
    with pytest.raises(Unauthorized, match="unknown or retired key"):
        await tokens.verify(old)
    await tokens.verify(new)


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: Keyring({"k1": b"short"}, active="k1"), InvalidInput),
        (lambda: Keyring({"k1": "x" * 31}, active="k1"), InvalidInput),
        (lambda: Keyring({"k1": SECRET}, active="k2"), InvalidInput),
        (lambda: Keyring({"bad kid": SECRET}, active="bad kid"), InvalidInput),
        (lambda: Keyring.from_spec("nocolon"), InvalidInput),
        (lambda: Keyring.from_spec(f"a:{'x' * 32},a:{'y' * 32}"), InvalidInput),
        (lambda: Keyring({"k1": SECRET}, active="k1").retire("k1"), Conflict),
        (lambda: Keyring({"k1": SECRET}, active="k1").retire("k7"), NotFound),
        (lambda: Keyring({"k1": SECRET}, active="k1").rotate("k1", OTHER_SECRET), Conflict),
        (lambda: Keyring({"k1": SECRET}, active="k1").rotate("k2", b"short"), InvalidInput),
    ],
)
def test_keyring_refuses_weak_or_inconsistent_keys(
    build: Callable[[], object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        build()


def test_keyring_spec_makes_the_first_key_active_and_hides_secrets() -> None:
    keyring = Keyring.from_spec(f"new:{'n' * 32}, old:{'o' * 32}")
    assert keyring.active_kid == "new"
    assert keyring.kids == ("new", "old")
    assert "nnnn" not in repr(keyring)


@pytest.mark.parametrize("ttl", [0.0, -5.0, 31 * 24 * 3600.0])
def test_issue_refuses_nonsense_lifetimes(ttl: float) -> None:
    service = TokenService(MemoryStore(), Keyring.generate(), ManualClock(NOW))
    with pytest.raises(InvalidInput):
        service.issue(sub="x", role=Role.OBSERVER, ttl_s=ttl)


def test_issue_refuses_invalid_subjects() -> None:
    service = TokenService(MemoryStore(), Keyring.generate(), ManualClock(NOW))
    with pytest.raises(InvalidInput):
        service.issue(sub="", role=Role.OBSERVER)
