"""A client that can reach nothing but coturn still gets media, through TURN.

The client runs in a network namespace joined to the host by a veth pair; nftables in the
namespace drop every packet except UDP to and from coturn's port. coturn (Debian's, started
here with the REST API secret) listens on the host end of the pair. The media side (root
namespace, an aiortc peer standing in for a Tongxin media node) offers only its own host
candidates; the client gets ICE servers from `signaling.turn.ice_servers` with the ordinary
"all" policy, so it has to discover by itself that only its relay candidate works. Proof: a
data-channel round trip, audio frames arriving in the namespace, and the client's nominated
candidate pair being the relayed one. Needs root, iproute2 and nftables (skips otherwise).

The client half runs as `python -m tests.netem.test_turn_namespace` inside the namespace,
reading the offer on stdin and writing JSON lines on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack

from bench.processes import free_port
from signaling.turn import ice_servers
from tests.helpers.coturn import CoturnProcess
from tests.helpers.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
SECRET = "namespace-turn-secret"
CLIENT_DEADLINE_S = 45.0
"""How long the client waits for the connection, the ping and its audio frames."""
AUDIO_FRAMES_WANTED = 10


@dataclass(frozen=True, slots=True)
class LockedDownLink:
    """A namespace whose only way out is UDP to `turn_ip`:`turn_port`."""

    namespace: str
    host_ip: str
    client_ip: str
    turn_port: int

    @property
    def turn_ip(self) -> str:
        return self.host_ip


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


def _require_namespaces() -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    for tool in ("ip", "nft", "turnserver"):
        if shutil.which(tool) is None:
            reason = f"{tool} is not installed (make system-deps)"
            if os.environ.get("CI") == "true":
                pytest.fail(f"{reason}; CI must run the TURN namespace test", pytrace=False)
            pytest.skip(reason)


def _turn_only_ruleset(link: LockedDownLink) -> str:
    return f"""
table inet turn_only {{
    chain output {{
        type filter hook output priority 0; policy drop;
        oif "lo" accept
        ip daddr {link.turn_ip} udp dport {link.turn_port} counter accept
    }}
    chain input {{
        type filter hook input priority 0; policy drop;
        iif "lo" accept
        ip saddr {link.turn_ip} udp sport {link.turn_port} counter accept
    }}
}}
"""


@contextlib.contextmanager
def locked_down_link(turn_port: int) -> Iterator[LockedDownLink]:
    """Namespace + veth pair + nftables; everything removed on the way out."""
    tag = secrets.token_hex(3)
    namespace, host_end, client_end = f"tx-turn-{tag}", f"txt{tag}h", f"txt{tag}c"
    octet2, octet3 = 200 + secrets.randbelow(50), secrets.randbelow(256)
    prefix = f"10.{octet2}.{octet3}"
    link = LockedDownLink(namespace, f"{prefix}.1", f"{prefix}.2", turn_port)
    try:
        _run("ip", "netns", "add", namespace)
        _run("ip", "link", "add", host_end, "type", "veth", "peer", "name", client_end)
        _run("ip", "link", "set", client_end, "netns", namespace)
        _run("ip", "addr", "add", f"{link.host_ip}/24", "dev", host_end)
        _run("ip", "link", "set", host_end, "up")
        ns = ("ip", "netns", "exec", namespace)
        _run(*ns, "ip", "addr", "add", f"{link.client_ip}/24", "dev", client_end)
        _run(*ns, "ip", "link", "set", client_end, "up")
        _run(*ns, "ip", "link", "set", "lo", "up")
        subprocess.run(
            [*ns, "nft", "-f", "-"], input=_turn_only_ruleset(link).encode(),
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        yield link
    finally:
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", host_end], capture_output=True, timeout=30)


def _udp_reaches(link: LockedDownLink, port: int) -> bool:
    """True when a datagram sent from inside the namespace to host_ip:`port` arrives."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind((link.host_ip, port))
        listener.settimeout(2.0)
        sender = (
            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"for _ in range(3):\n    s.sendto(b'probe', ('{link.host_ip}', {port}))"
        )
        subprocess.run(
            ["ip", "netns", "exec", link.namespace, sys.executable, "-c", sender],
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        try:
            listener.recvfrom(64)
        except TimeoutError:
            return False
        return True


@pytest.fixture
def coturn_and_link() -> Iterator[tuple[CoturnProcess, LockedDownLink]]:
    _require_namespaces()
    # coturn needs its address before it starts, the namespace needs coturn's port: pick the
    # port first, then build the link, then start coturn on the link's host address.
    port = free_port()
    with locked_down_link(port) as link:
        server = CoturnProcess(secret=SECRET, listen_ip=link.host_ip, allow_loopback_peers=False)
        server.port = port
        try:
            server.start()
            if server.port != port:
                pytest.fail("coturn's port was taken; the namespace's rules name another")
            yield server, link
        finally:
            server.close()


@pytest.mark.netem
@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_client_that_reaches_only_coturn_gets_media_through_turn(
    coturn_and_link: tuple[CoturnProcess, LockedDownLink],
) -> None:
    coturn, link = coturn_and_link
    # the namespace is really locked: a direct datagram to the host does not arrive
    assert not await asyncio.to_thread(_udp_reaches, link, free_port())

    media = RTCPeerConnection()  # the media node: host candidates only, no TURN
    channel = media.createDataChannel("chat")
    media.addTrack(AudioStreamTrack())
    replies: asyncio.Queue[str] = asyncio.Queue()
    channel.on("message", replies.put_nowait)
    client: asyncio.subprocess.Process | None = None
    try:
        await media.setLocalDescription(await media.createOffer())
        assert media.localDescription is not None
        client = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", link.namespace, sys.executable,
            "-m", "tests.netem.test_turn_namespace",
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert client.stdin is not None and client.stdout is not None
        servers = ice_servers([coturn.turn_url], [], SECRET, "p-village", 600, time.time())
        request = {"offer": media.localDescription.sdp, "ice_servers": servers}
        client.stdin.write(json.dumps(request).encode() + b"\n")
        await client.stdin.drain()

        answer = json.loads(await asyncio.wait_for(client.stdout.readline(), 60))
        await media.setRemoteDescription(RTCSessionDescription(answer["answer"], "answer"))
        await wait_until(
            lambda: channel.readyState == "open", within=40, what="data channel open via TURN"
        )
        channel.send("ping from the county hospital")
        assert await asyncio.wait_for(replies.get(), 20) == "pong: ping from the county hospital"

        line = await asyncio.wait_for(client.stdout.readline(), CLIENT_DEADLINE_S + 15)
        if not line:
            assert client.stderr is not None
            pytest.fail(f"client ended early: {(await client.stderr.read()).decode()[-2000:]}")
        result = json.loads(line)["result"]
    finally:
        await media.close()
        if client is not None:
            with contextlib.suppress(ProcessLookupError):
                client.kill()
            await client.wait()

    assert result["audio_frames"] >= AUDIO_FRAMES_WANTED
    assert result["nominated_local_type"] == "relay"
    assert "relay" in result["gathered_types"] and "host" in result["gathered_types"]
    assert "p-village" in coturn.log_text()


async def _run_client() -> None:
    """The client half, inside the namespace: answer, echo, count audio, report."""
    request = json.loads(await asyncio.to_thread(sys.stdin.readline))
    config = RTCConfiguration(iceServers=[RTCIceServer(**s) for s in request["ice_servers"]])
    pc = RTCPeerConnection(config)
    frames = 0
    pinged = asyncio.Event()
    finished = asyncio.Event()

    @pc.on("datachannel")
    def on_datachannel(channel: Any) -> None:
        @channel.on("message")
        def on_message(message: str) -> None:
            channel.send(f"pong: {message}")
            pinged.set()
            if frames >= AUDIO_FRAMES_WANTED:
                finished.set()

    async def count_frames(track: Any) -> None:
        nonlocal frames
        while True:
            await track.recv()
            frames += 1
            if frames >= AUDIO_FRAMES_WANTED and pinged.is_set():
                finished.set()

    counters: list[asyncio.Task[None]] = []

    @pc.on("track")
    def on_track(track: Any) -> None:
        if track.kind == "audio":
            counters.append(asyncio.ensure_future(count_frames(track)))

    await pc.setRemoteDescription(RTCSessionDescription(request["offer"], "offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    sdp = pc.localDescription.sdp
    print(json.dumps({"answer": sdp}), flush=True)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(finished.wait(), CLIENT_DEADLINE_S)
    # aiortc keeps the ICE connection (aioice) on the transport; its nominated pair says which
    # of our candidates carried the media
    nominated = "unknown"
    with contextlib.suppress(AttributeError, KeyError, IndexError):
        connection = pc.getTransceivers()[0].receiver.transport.transport._connection
        nominated = connection._nominated[1].local_candidate.type
    gathered = sorted({line.split()[7] for line in sdp.splitlines()
                       if line.startswith("a=candidate:")})  # fmt: skip
    result = {"audio_frames": frames, "pinged": pinged.is_set(),
              "nominated_local_type": nominated, "gathered_types": gathered}  # fmt: skip
    print(json.dumps({"result": result}), flush=True)
    for task in counters:
        task.cancel()
    await asyncio.gather(*counters, return_exceptions=True)
    await pc.close()


if __name__ == "__main__":
    asyncio.run(_run_client())
