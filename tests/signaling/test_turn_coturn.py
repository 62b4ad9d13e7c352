"""Credentials minted by `signaling.turn` against a real coturn, configured as deploy/ does.

Two aiortc peers on loopback, both restricted to relay candidates, connect through coturn with
minted credentials and exchange a data-channel message and audio; a wrong or expired credential
gets no allocation. Skips without `turnserver` unless CI=true.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import pytest
from aioice import stun
from aioice.turn import TurnClientUdpProtocol, create_turn_endpoint
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from signaling.turn import ice_servers, turn_credentials
from tests.helpers.coturn import CoturnProcess, require_turnserver
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

SECRET = "test-turn-secret-7f3a9c1e"


@pytest.fixture(scope="module")
def coturn() -> Iterator[CoturnProcess]:
    require_turnserver()
    with CoturnProcess(secret=SECRET) as server:
        yield server


def relay_only(servers: list[dict[str, object]]) -> RTCConfiguration:
    return RTCConfiguration(
        iceServers=[RTCIceServer(**s) for s in servers],  # type: ignore[arg-type]
        iceTransportPolicy=RTCIceTransportPolicy.RELAY,
    )


def candidate_types(sdp: str) -> list[str]:
    """The `typ` of every candidate line of an SDP."""
    types = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            fields = line.split()
            types.append(fields[fields.index("typ") + 1])
    return types


async def allocate(server: CoturnProcess, username: str, password: str) -> tuple[str, int]:
    """A TURN allocation on `server` with these credentials; its relayed address."""
    transport, _ = await create_turn_endpoint(
        asyncio.DatagramProtocol,
        server_addr=(server.listen_ip, server.port),
        username=username,
        password=password,
        lifetime=60,
    )
    try:
        relayed = transport.get_extra_info("sockname")
        assert relayed is not None
        return relayed  # type: ignore[no-any-return]
    finally:
        transport.close()


async def test_minted_credentials_get_an_allocation(coturn: CoturnProcess) -> None:
    pair = turn_credentials(SECRET, "p-valid", ttl_s=600, now=time.time())
    relayed_ip, relayed_port = await allocate(coturn, pair.username, pair.credential)
    assert relayed_ip == coturn.relay_ip
    assert relayed_port > 0


@pytest.mark.parametrize(
    ("secret", "ttl_s", "clock_offset_s", "what"),
    [
        ("not-the-secret", 600, 0.0, "signed with another secret"),
        (SECRET, 60, -3600.0, "expired an hour ago"),
        (SECRET, 1, -2.0, "expired a second ago"),
    ],
)
async def test_wrong_or_expired_credentials_get_no_allocation(
    coturn: CoturnProcess, secret: str, ttl_s: int, clock_offset_s: float, what: str
) -> None:
    pair = turn_credentials(secret, "p-refused", ttl_s=ttl_s, now=time.time() + clock_offset_s)
    with pytest.raises(stun.TransactionFailed) as failure:
        await allocate(coturn, pair.username, pair.credential)
    code, _reason = failure.value.response.attributes["ERROR-CODE"]
    assert code == 401, f"credential {what}: expected 401 Unauthorized, got {code}"


async def test_tampered_username_is_refused(coturn: CoturnProcess) -> None:
    # a client may not stretch its own expiry: the HMAC covers the timestamp
    pair = turn_credentials(SECRET, "p-tamper", ttl_s=60, now=time.time())
    stretched = f"{pair.expires_at + 86400}:p-tamper"
    with pytest.raises(stun.TransactionFailed):
        await allocate(coturn, stretched, pair.credential)


async def test_peers_restricted_to_relay_connect_through_coturn(coturn: CoturnProcess) -> None:
    now = time.time()
    caller = RTCPeerConnection(
        relay_only(ice_servers([coturn.turn_url], [], SECRET, "p-caller", 600, now))
    )
    callee = RTCPeerConnection(
        relay_only(ice_servers([coturn.turn_url], [], SECRET, "p-callee", 600, now))
    )
    received_text: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    remote_audio: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()

    @callee.on("datachannel")
    def on_datachannel(channel: object) -> None:
        @channel.on("message")  # type: ignore[attr-defined]
        def on_message(message: str) -> None:
            if not received_text.done():
                received_text.set_result(message)

    @callee.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "audio" and not remote_audio.done():
            remote_audio.set_result(track)

    try:
        channel = caller.createDataChannel("chat")
        caller.addTrack(AudioStreamTrack())
        await caller.setLocalDescription(await caller.createOffer())
        assert caller.localDescription is not None
        await callee.setRemoteDescription(caller.localDescription)
        await callee.setLocalDescription(await callee.createAnswer())
        assert callee.localDescription is not None
        await caller.setRemoteDescription(
            RTCSessionDescription(callee.localDescription.sdp, callee.localDescription.type)
        )

        # with the relay policy only coturn's relayed addresses are offered by either side,
        # so a working connection can only run through coturn
        for pc in (caller, callee):
            assert pc.localDescription is not None
            types = candidate_types(pc.localDescription.sdp)
            assert types, f"no candidates gathered (coturn log: {coturn.log_tail()})"
            assert set(types) == {"relay"}

        await wait_until(
            lambda: caller.connectionState == "connected" and channel.readyState == "open",
            within=30, interval=0.05, what="data channel open through TURN",
        )
        channel.send("你好 from the village clinic")
        assert await asyncio.wait_for(received_text, 20) == "你好 from the village clinic"

        track = await asyncio.wait_for(remote_audio, 20)
        frames = [await asyncio.wait_for(track.recv(), 10) for _ in range(10)]
        assert all(frame.sample_rate == 48000 for frame in frames)
    finally:
        with contextlib.suppress(Exception):
            await caller.close()
        with contextlib.suppress(Exception):
            await callee.close()

    # coturn saw both allocations used: its log names each minted username on a session
    log = coturn.log_text()
    assert "p-caller" in log and "p-callee" in log


async def test_expiry_bounds_new_allocations_not_ones_already_made(coturn: CoturnProcess) -> None:
    # Why DEFAULT_TTL_S is long: the expiry stops a client from allocating again (ICE restart,
    # reconnect) with old credentials, while a live allocation is never cut by it.
    pair = turn_credentials(SECRET, "p-expiring", ttl_s=2, now=time.time())
    server = (coturn.listen_ip, coturn.port)
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: TurnClientUdpProtocol(server, pair.username, pair.credential, 60, 300),
        remote_addr=server,
    )
    try:
        await asyncio.wait_for(protocol.connect(), 20)
        # coturn compares with a clock it ticks once a second in its event loop, which lags on
        # a loaded machine (one CI run still took the credentials a second after expiry)
        await wait_until(lambda: time.time() > pair.expires_at + 3, within=12, what="expiry")
        refresh = stun.Message(message_method=stun.Method.REFRESH, message_class=stun.Class.REQUEST)
        refresh.attributes["LIFETIME"] = 60
        await protocol.request_with_retry(refresh)
        await protocol.channel_bind(0x4000, ("127.0.0.1", 50000))
        with pytest.raises(stun.TransactionFailed):
            await allocate(coturn, pair.username, pair.credential)
    finally:
        if protocol.refresh_task is not None:
            protocol.refresh_task.cancel()
        transport.close()
