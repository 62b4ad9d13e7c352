"""An open WebSocket lives no longer than its credential: revoking the credential, or the join
link it was exchanged from, closes it on every node (error `revoked`, close 4003); an expired
credential is closed on its timer (error `expired`, close 4004). Memory and Redis stores."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from aiohttp import web

from broker.models import Role
from broker.store import Store
from broker.tokens import REVOKED_PREFIX
from client.ws import SignalingClient, SignalingError
from signaling.app import create_app
from signaling.appkeys import HUB
from signaling.config import ServeConfig
from signaling.connection import Identity
from signaling.hub import CLOSE_EXPIRED, CLOSE_REVOKED
from signaling.services import Services

pytestmark = pytest.mark.timeout(90)


def jti_of(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


async def listening(app: web.Application) -> None:
    """Wait until the node's hub is subscribed to revocations."""
    await asyncio.wait_for(app[HUB].revocations_heard.wait(), 15.0)


async def joined(client: SignalingClient, token: str) -> SignalingClient:
    """`client` with `token` exchanged and its WebSocket joined."""
    await client.exchange(token)
    await client.connect()
    return client


async def revoke(base_url: str, operator_token: str, jti: str) -> None:
    """POST /api/v1/tokens/revoke as an operator, through the node at `base_url`."""
    async with SignalingClient(base_url) as operator:
        await operator.exchange(operator_token)
        await operator.request("POST", "/api/v1/tokens/revoke", {"jti": jti})


async def cut_off_with(client: SignalingClient, code: str, close_code: int) -> None:
    error = await client.expect("error", timeout=15.0)
    assert error["code"] == code
    closed = await client.expect("_closed", timeout=15.0)
    assert closed["code"] == close_code


@pytest.mark.parametrize(
    ("jti", "link", "revoked", "expected"),
    [
        ("c1", "l1", "c1", True),
        ("c1", "l1", "l1", True),
        ("c1", None, "l1", False),
        ("c1", "l1", "other", False),
    ],
)
def test_a_credential_is_revoked_by_its_own_id_or_its_links(
    jti: str, link: str | None, revoked: str, expected: bool
) -> None:
    identity = Identity("p", "clinic", "P", frozenset(), None, jti, 100.0, link)
    assert identity.revoked_by(revoked) is expected


@pytest.mark.parametrize(("now", "expected"), [(99.9, False), (100.0, True), (500.0, True)])
def test_a_credential_lapses_at_its_expiry(now: float, expected: bool) -> None:
    identity = Identity("p", "clinic", "P", frozenset(), None, "j", 100.0)
    assert identity.lapsed(now) is expected


async def test_revoking_a_credential_closes_its_open_websocket_and_no_other(node) -> None:
    demo = node.demo
    await listening(node.app)
    async with SignalingClient(node.base_url) as clinic, \
            SignalingClient(node.base_url) as doctor:
        await joined(clinic, demo.clinic_token)
        await joined(doctor, demo.doctor_token)
        await revoke(node.base_url, demo.operator_token, jti_of(clinic.credential))
        await cut_off_with(clinic, "revoked", CLOSE_REVOKED)
        await doctor.send({"type": "ping", "t": 7})
        assert (await doctor.expect("pong"))["t"] == 7
        with pytest.raises(SignalingError) as refused:
            await clinic.request("GET", "/api/v1/me")
        assert refused.value.code == "unauthorized"
        with pytest.raises(SignalingError):
            await clinic.connect()


async def test_revoking_a_join_link_closes_the_credentials_exchanged_from_it(node) -> None:
    demo = node.demo
    await listening(node.app)
    async with SignalingClient(node.base_url) as clinic:
        await joined(clinic, demo.clinic_token)
        await revoke(node.base_url, demo.operator_token, jti_of(demo.clinic_token))
        await cut_off_with(clinic, "revoked", CLOSE_REVOKED)
        with pytest.raises(SignalingError):
            await clinic.request("GET", "/api/v1/me")
        with pytest.raises(SignalingError):
            await clinic.exchange(demo.clinic_token)


@pytest.fixture
async def second_node(node, store: Store, aiohttp_server, tmp_path) -> AsyncIterator[Any]:
    """Another node on the same store and signing key (signaling only, no media)."""
    config = ServeConfig(media_workers=0, demo=False, data_dir=tmp_path / "b",
                         rate_limit_per_minute=100_000)
    services = Services(config, store, None, keyring=node.services.tokens.keyring)
    app = create_app(config, store, media=None, services=services)
    server = await aiohttp_server(app)
    try:
        yield app, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_a_revocation_through_one_node_closes_the_websocket_on_another(
    node, second_node
) -> None:
    app_b, url_b = second_node
    await listening(node.app)
    await listening(app_b)
    async with SignalingClient(url_b) as clinic:
        await joined(clinic, node.demo.clinic_token)
        await revoke(node.base_url, node.demo.operator_token, jti_of(clinic.credential))
        await cut_off_with(clinic, "revoked", CLOSE_REVOKED)


async def test_a_revocation_whose_event_was_missed_is_found_by_the_recheck(node) -> None:
    async with SignalingClient(node.base_url) as clinic:
        await joined(clinic, node.demo.clinic_token)
        # as if published while this node's subscription was down: the record, no event
        await node.services.store.set(REVOKED_PREFIX + jti_of(clinic.credential), b"1", ttl=60)
        await node.app[HUB].recheck_credentials()
        await cut_off_with(clinic, "revoked", CLOSE_REVOKED)


async def test_an_expired_credential_is_closed_on_its_timer(node) -> None:
    async with SignalingClient(node.base_url) as clinic:
        for ttl_s in (2.0, 4.0, 8.0, 16.0):  # a loaded machine may take longer to join
            token = node.services.tokens.issue(sub=node.demo.clinic_site_id, role=Role.CLINIC,
                                               ttl_s=ttl_s, name="short-lived")
            clinic.grant = {"credential": token,
                            "participant": {"id": node.demo.clinic_site_id}}
            try:
                await clinic.connect()
                break
            except SignalingError as exc:
                assert exc.code == "unauthorized"  # expired before the join was read
        else:
            pytest.fail("could not join before the credential expired")
        error = await clinic.expect("error", timeout=ttl_s + 15.0)
        assert error["code"] == "expired"
        closed = await clinic.expect("_closed", timeout=15.0)
        assert closed["code"] == CLOSE_EXPIRED
        with pytest.raises(SignalingError) as refused:
            await clinic.connect()
        assert refused.value.code == "unauthorized"
