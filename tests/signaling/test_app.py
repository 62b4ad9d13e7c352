"""The foundation's HTTP contract: health, metrics, OpenAPI and the JSON error shape."""

from __future__ import annotations

import msgspec
import pytest
from aiohttp import web

from broker.memory_store import MemoryStore
from signaling.app import create_app
from signaling.config import ServeConfig


@pytest.fixture
async def client(aiohttp_client):
    app = create_app(ServeConfig(media_workers=0, demo=False), MemoryStore())
    return await aiohttp_client(app)


def assert_error_shape(body: dict, code: str | None = None) -> None:
    assert set(body) == {"error"}
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code


async def test_healthz_answers_ok(client):
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert (await resp.json())["status"] == "ok"
    assert resp.headers["X-Request-Id"]


async def test_readyz_is_ready_on_memory_store(client):
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert (await resp.json())["store"] == "memory"


async def test_metrics_are_prometheus_text_with_tongxin_prefix(client):
    await client.get("/healthz")
    resp = await client.get("/metrics")
    assert resp.status == 200
    text = await resp.text()
    assert 'tongxin_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert "tongxin_http_request_duration_seconds_bucket" in text
    assert "tongxin_websockets_open" in text
    assert "tongxin_process_resident_memory_bytes" in text


async def test_openapi_document_is_served(client):
    resp = await client.get("/api/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    assert "Error" in doc["components"]["schemas"]


async def test_unknown_route_gets_json_404(client):
    resp = await client.get("/no/such/thing")
    assert resp.status == 404
    assert_error_shape(await resp.json(), "not_found")
    assert resp.headers["Content-Type"].startswith("application/json")


async def test_wrong_method_gets_json_405(client):
    resp = await client.post("/healthz", data=b"{}")
    assert resp.status == 405
    assert_error_shape(await resp.json(), "method_not_allowed")


async def test_security_headers_on_every_response(client):
    for path in ("/healthz", "/nope"):
        resp = await client.get(path)
        csp = resp.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "no-referrer"


async def test_request_id_is_echoed_when_safe_and_replaced_when_not(client):
    resp = await client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert resp.headers["X-Request-Id"] == "abc-123"
    resp = await client.get("/healthz", headers={"X-Request-Id": "bad id\twith spaces"})
    assert resp.headers["X-Request-Id"] != "bad id\twith spaces"


async def test_rate_limit_answers_429_with_retry_after(aiohttp_client):
    config = ServeConfig(media_workers=0, demo=False, rate_limit_per_minute=60)
    client = await aiohttp_client(create_app(config, MemoryStore()))
    statuses = [(await client.get("/api/openapi.json")).status for _ in range(30)]
    assert 429 in statuses
    resp = await client.get("/api/openapi.json")
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) >= 1
    assert_error_shape(await resp.json(), "rate_limited")
    assert (await client.get("/healthz")).status == 200


async def test_oversized_body_gets_json_413_and_server_keeps_serving(aiohttp_client):
    app = create_app(ServeConfig(media_workers=0, demo=False), MemoryStore())

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"n": len(await request.read())})

    app.router.add_post("/echo", echo)
    client = await aiohttp_client(app)
    resp = await client.post("/echo", data=b"x" * (10 * 1024 * 1024))
    assert resp.status == 413
    assert_error_shape(await resp.json(), "body_too_large")
    assert (await client.get("/healthz")).status == 200


async def test_error_body_is_valid_json_for_malformed_input(aiohttp_client):
    app = create_app(ServeConfig(media_workers=0, demo=False), MemoryStore())
    decoder = msgspec.json.Decoder(dict[str, int])

    async def strict(request: web.Request) -> web.Response:
        return web.json_response(decoder.decode(await request.read()))

    app.router.add_post("/strict", strict)
    client = await aiohttp_client(app)
    resp = await client.post("/strict", data=b"{not json")
    assert resp.status == 400
    assert_error_shape(await resp.json(), "invalid_body")


async def test_static_files_are_not_counted_by_the_address_rate_limit(aiohttp_client):
    config = ServeConfig(media_workers=0, demo=False, rate_limit_per_minute=60)
    client = await aiohttp_client(create_app(config, MemoryStore()))
    statuses = {(await client.get("/static/js/app.js")).status for _ in range(40)}
    assert statuses == {200}
