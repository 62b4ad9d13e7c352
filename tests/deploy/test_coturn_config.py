"""deploy/'s coturn configurations, run by a real coturn: credentials minted by signaling get an
allocation, and the relay reaches the media nodes but no other private, loopback or link-local
address. Static checks: REST API auth only, no CLI, no secret in the file."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aioice import stun
from aioice.turn import TurnClientUdpProtocol

from signaling.turn import turn_credentials
from tests.helpers.coturn import CoturnProcess, require_turnserver

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CONFIGS = {
    "compose": DEPLOY / "coturn" / "turnserver.conf",
    "k8s": DEPLOY / "k8s" / "coturn" / "turnserver.conf",
}
SECRET = "deploy-config-test-secret"
FORBIDDEN_PEERS = ["10.200.0.7", "192.168.1.5", "172.16.4.4", "169.254.169.254", "127.0.0.1",
                   "100.64.0.1"]  # fmt: skip
"""Private, carrier-grade NAT, link-local (cloud metadata!) and loopback addresses."""
PUBLIC_PEER = "8.8.8.8"
"""A public address: a permission for it is granted. No packet is sent to it by the test."""

pytestmark = pytest.mark.timeout(120)


def directives(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]  # fmt: skip


def allowed_media_peer(path: Path) -> str:
    """The first address of the file's allowed-peer-ip range: where media nodes live."""
    (first,) = re.findall(r"^allowed-peer-ip=([\d.]+)-[\d.]+$", path.read_text(), re.M)
    return first


@pytest.mark.parametrize("path", CONFIGS.values(), ids=CONFIGS.keys())
def test_config_allows_only_rest_api_credentials(path: Path) -> None:
    lines = directives(path)
    for required in ("use-auth-secret", "no-cli", "fingerprint", "no-multicast-peers"):
        assert required in lines, f"{path.name}: {required} missing"
    assert not any(line.startswith(("lt-cred-mech", "user=", "allow-loopback-peers"))
                   for line in lines)  # fmt: skip
    assert not any(line.startswith("static-auth-secret") for line in lines), (
        "the secret is passed on the command line from the environment, never committed"
    )
    assert any(line.startswith("realm=") for line in lines)
    low = int(next(line for line in lines if line.startswith("min-port=")).split("=")[1])
    high = int(next(line for line in lines if line.startswith("max-port=")).split("=")[1])
    assert 1024 < low < high < 65536


def test_both_configs_deny_the_same_ranges() -> None:
    denied = [{line for line in directives(p) if line.startswith("denied-peer-ip=")}
              for p in CONFIGS.values()]  # fmt: skip
    assert denied[0] == denied[1] and len(denied[0]) >= 10


@pytest.fixture(scope="module", params=list(CONFIGS), ids=list(CONFIGS))
def deployed_coturn(request: pytest.FixtureRequest) -> Iterator[CoturnProcess]:
    require_turnserver()
    config = CONFIGS[request.param]
    with CoturnProcess(secret=SECRET, config_file=config) as server:
        yield server


@pytest.fixture
async def allocation(deployed_coturn: CoturnProcess) -> AsyncIterator[TurnClientUdpProtocol]:
    """A TURN allocation on the deployed coturn with credentials minted by signaling."""
    pair = turn_credentials(SECRET, "p-deploy", ttl_s=600, now=time.time())
    server = (deployed_coturn.listen_ip, deployed_coturn.port)
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: TurnClientUdpProtocol(server, pair.username, pair.credential, 60, 300),
        remote_addr=server,
    )
    try:
        relayed = await asyncio.wait_for(protocol.connect(), 20)
        assert relayed[0] == deployed_coturn.relay_ip
        yield protocol
    finally:
        if protocol.refresh_task is not None:
            protocol.refresh_task.cancel()
        transport.close()


async def test_relay_reaches_the_media_nodes_and_public_peers(
    deployed_coturn: CoturnProcess, allocation: TurnClientUdpProtocol
) -> None:
    assert deployed_coturn.config_file is not None
    await allocation.channel_bind(0x4000, (allowed_media_peer(deployed_coturn.config_file), 50000))
    await allocation.channel_bind(0x4001, (PUBLIC_PEER, 50000))


@pytest.mark.parametrize("peer", FORBIDDEN_PEERS)
async def test_relay_refuses_private_and_loopback_peers(
    allocation: TurnClientUdpProtocol, peer: str
) -> None:
    with pytest.raises(stun.TransactionFailed) as refused:
        await allocation.channel_bind(0x4002, (peer, 50000))
    code, _reason = refused.value.response.attributes["ERROR-CODE"]
    assert code == 403
