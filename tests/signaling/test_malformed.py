"""Hostile and malformed input on every REST route and every WebSocket frame type.

Each bad request gets the JSON error shape with a 4xx status (or an error frame), and the
process, the connection and the other sessions carry on.
"""

from __future__ import annotations

import json

import aiohttp
import pytest

from client.ws import SignalingClient
from signaling import messages as m
from signaling.routes import api

pytestmark = pytest.mark.timeout(180)

BODY_ROUTES = [s for s in api.specs if s.request_type is not None]
BAD_BODIES = [
    b"",
    b"{",
    b"[]",
    b"null",
    b'"text"',
    b'{"unexpected": true}',
    json.dumps({"reason": "x" * 100_000}).encode(),
    b'{"specialty": 42, "reason": ["x"], "urgency": "whenever", "token": 7}',
    "{\"\u0000\": \"\ud800\"}".encode("utf-8", "surrogatepass"),
]


def concrete(path: str) -> str:
    return path.replace("{consult_id}", "nope").replace("{expert_id}", "nope") \
        .replace("{site_id}", "nope").replace("{class_id}", "nope") \
        .replace("{snapshot_id}", "nope")


@pytest.mark.parametrize("spec", BODY_ROUTES, ids=lambda s: f"{s.method} {s.path}")
async def test_every_body_route_rejects_malformed_bodies_with_json_errors(node, spec):
    async with SignalingClient(node.base_url) as operator:
        await operator.exchange(node.demo.operator_token)
        headers = {"Authorization": f"Bearer {operator.credential}",
                   "Content-Type": "application/json"}
        async with aiohttp.ClientSession() as http:
            for body in BAD_BODIES:
                async with http.request(spec.method, node.base_url + concrete(spec.path),
                                        data=body, headers=headers) as resp:
                    assert 400 <= resp.status < 500, (body[:40], resp.status)
                    payload = await resp.json()
                    assert set(payload["error"]) == {"code", "message"}
            async with http.get(node.base_url + "/healthz") as resp:
                assert resp.status == 200


@pytest.mark.parametrize("spec", [s for s in api.specs if s.roles is not None],
                         ids=lambda s: f"{s.method} {s.path}")
async def test_every_protected_route_refuses_missing_or_forged_credentials(node, spec):
    forged = node.demo.operator_token[:-6] + "AAAAAA"
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer " + forged},
                        {"Authorization": "Basic abc"}):
            async with http.request(spec.method, node.base_url + concrete(spec.path),
                                    headers=headers, data=b"{}") as resp:
                assert resp.status == 401, (headers, resp.status)
                assert (await resp.json())["error"]["code"] == "unauthorized"


FRAME_TYPES = [t.__struct_config__.tag for t in m.ClientMessage.__args__]  # type: ignore[attr-defined]
BAD_FRAME_VARIANTS = [
    lambda kind: {"type": kind, "unexpected": 1},
    lambda kind: {"type": kind, "sdp": 12, "sources": "all", "participant": ["x"],
                  "consult": "../../etc", "session": "a b", "muted": "yes", "raised": None,
                  "on": 3, "granted": "no", "t": "now", "rtt_ms": -5, "expert": ""},
    lambda kind: {"type": kind, "sdp": "v=0\r\n" + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" * 500,
                  "sources": {"0": "mic"}},
]


async def test_every_frame_type_malformed_gets_an_error_frame_and_nothing_breaks(node):
    teacher = SignalingClient(node.base_url)
    classroom = SignalingClient(node.base_url)
    try:
        await teacher.exchange(node.demo.host_token)
        await teacher.connect()
        room = next(iter(node.demo.classroom_tokens))
        await classroom.exchange(node.demo.classroom_tokens[room])
        await classroom.connect()
        await classroom.expect("session")
        sent = 0
        for kind in FRAME_TYPES:
            for variant in BAD_FRAME_VARIANTS:
                await classroom.send(variant(kind))
                sent += 1
        for raw in ("not json", "[1,2,3]", '{"type": "nope"}', '{"no_type": 1}', "{}"):
            await classroom.ws.send_str(raw)  # type: ignore[union-attr]
            sent += 1
        errors = 0
        while errors < sent:
            frame = await classroom.expect("error", timeout=20)
            assert frame["code"] and frame["message"]
            errors += 1
        await classroom.send({"type": "ping", "t": 1.5})
        assert (await classroom.expect("pong"))["t"] == 1.5
        await teacher.send({"type": "ping", "t": 2.5})
        assert (await teacher.expect("pong"))["t"] == 2.5
    finally:
        await teacher.close()
        await classroom.close()


async def test_first_frame_must_be_a_valid_join(node):
    async with aiohttp.ClientSession() as http:
        for first in ('{"type": "ping"}', "garbage",
                      '{"type": "join", "credential": "eyJhbGciOiJub25lIn0.e30."}'):
            async with http.ws_connect(node.base_url.replace("http", "ws") + "/ws") as ws:
                await ws.send_str(first)
                msg = await ws.receive(timeout=10)
                assert json.loads(msg.data)["type"] == "error"
                closing = await ws.receive(timeout=10)
                assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
                assert ws.close_code == 4001


async def test_oversized_frame_closes_only_that_connection(node):
    other = SignalingClient(node.base_url)
    try:
        await other.exchange(node.demo.clinic_token)
        await other.connect()
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(node.base_url.replace("http", "ws") + "/ws") as ws:
                await ws.send_str("x" * (m.MAX_FRAME_BYTES + 10))
                msg = await ws.receive(timeout=10)
                assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await other.send({"type": "ping", "t": 3.0})
        assert (await other.expect("pong"))["t"] == 3.0
    finally:
        await other.close()
