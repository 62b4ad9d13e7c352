"""Behind a reverse proxy: the client address the per-address limits count comes from
X-Forwarded-For / Forwarded only when the direct peer is a configured trusted proxy, and is the
right-most hop that is not a trusted proxy; a spoofed header from anyone else is ignored."""

from __future__ import annotations

import ipaddress

import aiohttp
import pytest

from broker.memory_store import MemoryStore
from signaling.app import create_app
from signaling.config import ConfigError, ServeConfig, parse_serve_config
from signaling.hub import MAX_CONNECTIONS_PER_ADDRESS
from signaling.middleware import forwarded_client, forwarded_hops, parse_hop
from signaling.services import Services

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


@pytest.mark.parametrize(
    ("peer", "hops", "trusted", "client"),
    [
        # no trusted proxies: the headers mean nothing
        ("203.0.113.9", ["198.51.100.1"], (), "203.0.113.9"),
        # an untrusted peer spoofing the header is ignored
        ("203.0.113.9", ["198.51.100.1"], PROXIES, "203.0.113.9"),
        # one trusted proxy: the hop it appended
        ("10.0.0.2", ["198.51.100.1"], PROXIES, "198.51.100.1"),
        # the client forged hops on the left; the right-most untrusted one counts
        ("10.0.0.2", ["1.1.1.1", "2.2.2.2", "198.51.100.1"], PROXIES, "198.51.100.1"),
        # a chain of trusted proxies is skipped from the right
        ("10.0.0.2", ["1.1.1.1", "198.51.100.1", "10.1.1.1", "10.2.2.2"], PROXIES,
         "198.51.100.1"),
        # forging a trusted address on the left changes nothing
        ("10.0.0.2", ["10.9.9.9", "198.51.100.1"], PROXIES, "198.51.100.1"),
        # every hop trusted: the left-most
        ("10.0.0.2", ["10.3.3.3", "10.4.4.4"], PROXIES, "10.3.3.3"),
        # no header from a trusted proxy: the proxy itself
        ("10.0.0.2", [], PROXIES, "10.0.0.2"),
        # an unreadable hop ends the walk at the proxy that wrote it
        ("10.0.0.2", ["198.51.100.1", "garbage", "10.5.5.5"], PROXIES, "10.5.5.5"),
        ("10.0.0.2", ["unknown"], PROXIES, "10.0.0.2"),
        # ports, brackets, quotes, IPv6 and IPv4-mapped peers
        ("10.0.0.2", [" 198.51.100.1:4711 "], PROXIES, "198.51.100.1"),
        ("fd00::5", ['"[2001:db8::17]:4711"'], PROXIES, "2001:db8::17"),
        ("::ffff:10.0.0.2", ["198.51.100.1"], PROXIES, "198.51.100.1"),
        ("2001:db8::9", ["198.51.100.1"], PROXIES, "2001:db8::9"),
        # no peer (a unix socket)
        (None, ["198.51.100.1"], PROXIES, "unknown"),
    ],
)
def test_the_client_is_the_rightmost_untrusted_hop_behind_trusted_proxies(
    peer: str | None, hops: list[str], trusted: tuple, client: str
) -> None:
    assert forwarded_client(peer, hops, trusted) == client


@pytest.mark.parametrize(
    ("xff", "forwarded", "hops"),
    [
        (["1.1.1.1, 2.2.2.2", "3.3.3.3"], [], ["1.1.1.1", " 2.2.2.2", "3.3.3.3"]),
        ([], ['for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711"'],
         ["192.0.2.60", '"[2001:db8:cafe::17]:4711"']),
        # X-Forwarded-For wins: a client's own Forwarded header is not read beside it
        (["198.51.100.1"], ["for=1.1.1.1"], ["198.51.100.1"]),
        ([], ["proto=https"], []),
    ],
)
def test_hops_come_from_x_forwarded_for_else_forwarded(
    xff: list[str], forwarded: list[str], hops: list[str]
) -> None:
    assert forwarded_hops(xff, forwarded) == hops


@pytest.mark.parametrize("raw", ["unknown", "_hidden", "", "1.2.3", "[::1", "a:b"])
def test_unreadable_hops_are_none(raw: str) -> None:
    assert parse_hop(raw) is None


def test_trusted_proxies_come_from_the_flag_or_the_environment() -> None:
    assert parse_serve_config([], {}).trusted_proxies == ()
    flag = parse_serve_config(["--trusted-proxies", "10.0.0.0/8, ::1"], {})
    assert flag.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"),
                                    ipaddress.ip_network("::1/128"))
    env = parse_serve_config([], {"TONGXIN_TRUSTED_PROXIES": "192.168.1.7"})
    assert env.trusted_proxies == (ipaddress.ip_network("192.168.1.7/32"),)
    with pytest.raises(ConfigError, match="trusted-proxies"):
        parse_serve_config(["--trusted-proxies", "not-a-net"], {})


async def _statuses(client, forwarded_for: str, count: int) -> list[int]:
    statuses = []
    for _ in range(count):
        resp = await client.get("/api/openapi.json", headers={"X-Forwarded-For": forwarded_for})
        statuses.append(resp.status)
        resp.release()
    return statuses


@pytest.mark.timeout(60)
async def test_per_address_limits_count_the_forwarded_client_only_behind_a_trusted_proxy(
    aiohttp_client,
) -> None:
    burst = 10  # RateLimiter's burst at 60 per minute
    behind = ServeConfig(media_workers=0, demo=False, rate_limit_per_minute=60,
                         trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),))
    client = await aiohttp_client(create_app(behind, MemoryStore()))
    assert await _statuses(client, "198.51.100.1", burst) == [200] * burst
    assert await _statuses(client, "198.51.100.1", 1) == [429]
    # another client behind the same proxy has its own budget; forging hops on the left of
    # the spent address does not help
    assert await _statuses(client, "198.51.100.2", 1) == [200]
    assert await _statuses(client, "203.0.113.77, 198.51.100.1", 1) == [429]

    direct = ServeConfig(media_workers=0, demo=False, rate_limit_per_minute=60)
    spoofer = await aiohttp_client(create_app(direct, MemoryStore()))
    statuses = [s for i in range(burst + 1)
                for s in await _statuses(spoofer, f"198.51.100.{i + 10}", 1)]
    assert statuses == [200] * burst + [429]


@pytest.mark.timeout(120)
async def test_the_websocket_cap_counts_the_forwarded_client_behind_a_trusted_proxy(
    aiohttp_server, tmp_path
) -> None:
    config = ServeConfig(media_workers=0, demo=False, data_dir=tmp_path,
                         rate_limit_per_minute=100_000,
                         trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),))
    store = MemoryStore()
    server = await aiohttp_server(create_app(config, store, services=Services(config, store,
                                                                             None)))
    ws_url = str(server.make_url("/ws"))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        crowd = [await http.ws_connect(ws_url, heartbeat=None,
                                       headers={"X-Forwarded-For": "198.51.100.1"})
                 for _ in range(MAX_CONNECTIONS_PER_ADDRESS + 1)]
        try:
            refused = await crowd[-1].receive(timeout=10)
            assert refused.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert crowd[-1].close_code == aiohttp.WSCloseCode.TRY_AGAIN_LATER
            # another client behind the same proxy is not counted with them
            other = await http.ws_connect(ws_url, heartbeat=None,
                                          headers={"X-Forwarded-For": "198.51.100.2"})
            await other.send_str('{"type": "ping"}')  # not a join: refused as such, not capped
            answer = await other.receive(timeout=10)
            assert answer.type is aiohttp.WSMsgType.TEXT and "join" in answer.data
            await other.close()
        finally:
            for ws in crowd:
                await ws.close()
