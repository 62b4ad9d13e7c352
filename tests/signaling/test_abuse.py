"""Abusive and broken clients: one that never reads, a connection flood from one address, a
slow-loris HTTP client, SDPs with hundreds of media sections or absurd candidates.

Each test proves the abuser is bounded (closed, refused or rejected) and that everyone else is
still served. Memory store only: these are about the HTTP/WebSocket edge, not the store.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from broker.demo import DemoLinks
from broker.memory_store import MemoryStore
from client.ws import SignalingClient, SignalingError
from signaling import messages as m
from signaling.appkeys import HUB
from signaling.connection import CLOSE_TOO_SLOW, SEND_QUEUE_FRAMES
from signaling.hub import MAX_CONNECTIONS_PER_ADDRESS
from signaling.services import Services
from tests.helpers.running_node import running_node
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.timeout(120)
KEEPALIVE_S = 3.0
"""Idle/handshake timeout given to the test server (see test_slow_loris...)."""


@dataclass
class AbusedNode:
    base_url: str
    host: str
    port: int
    app: web.Application
    demo: DemoLinks
    services: Services


@pytest.fixture
async def abused(aiohttp_server, tmp_path) -> AsyncIterator[AbusedNode]:
    store = MemoryStore()
    try:
        async with running_node(store, aiohttp_server, tmp_path,
                                keepalive_timeout=KEEPALIVE_S) as (node, server):
            yield AbusedNode(node.base_url, server.host, server.port, node.app, node.demo,
                             node.services)
    finally:
        await store.close()


async def pong(client: SignalingClient, t: float) -> None:
    await client.send({"type": "ping", "t": t})
    assert (await client.expect("pong", timeout=20, where=lambda f: f["t"] == t))["t"] == t


def masked_text_frame(payload: bytes) -> bytes:
    """A client->server WebSocket text frame (mask key of zeros: payload unchanged)."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x81, 0x80 | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
    return head + b"\0\0\0\0" + payload


async def raw_websocket(host: str, port: int) -> socket.socket:
    """A WebSocket opened by hand on a socket with a tiny receive buffer, never read after
    the handshake (so the server's pushes pile up on its side)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, (host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(sock, (
        f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode())
    answer = b""
    async with asyncio.timeout(10):
        while b"\r\n\r\n" not in answer:
            answer += await loop.sock_recv(sock, 1)  # byte by byte: read nothing past it
    assert answer.startswith(b"HTTP/1.1 101"), answer[:80]
    return sock


async def test_a_client_that_never_reads_is_closed_and_others_carry_on(abused):
    demo = abused.demo
    hub = abused.app[HUB]
    teacher = SignalingClient(abused.base_url)
    await teacher.exchange(demo.host_token)
    await teacher.connect()
    room = sorted(demo.classroom_tokens)[0]
    grant = await teacher.request("POST", "/api/v1/session",
                                  {"token": demo.classroom_tokens[room]}, auth=False)
    loop = asyncio.get_running_loop()
    sock = await raw_websocket(abused.host, abused.port)
    try:
        await loop.sock_sendall(sock, masked_text_frame(json.dumps(
            {"type": "join", "credential": grant["credential"]}).encode()))
        await wait_until(lambda: room in hub.by_participant,
                         within=20, interval=0.05, what="the silent client joined")
        conn = hub.by_participant[room]
        # Every frame below earns a ~560-byte error frame the client never reads.
        junk = masked_text_frame(json.dumps({"type": "ping", "x" * 450: 1}).encode())
        sent = 0
        for _ in range(400):  # at most 400 * 100 frames (~20 MB of replies); stops far sooner
            if conn.closed:
                break
            await loop.sock_sendall(sock, junk * 100)
            sent += 100
            await asyncio.sleep(0)
            assert conn._queue.qsize() <= SEND_QUEUE_FRAMES
        assert conn.closed, f"still open after {sent} unread replies"
        print(f"closed as too slow after {sent} unread replies")
        await pong(teacher, 1.0)
        async with aiohttp.ClientSession() as http:
            async with http.get(abused.base_url + "/healthz") as resp:
                assert resp.status == 200
    finally:
        sock.close()
        await teacher.close()
    await wait_until(lambda: room not in hub.by_participant or hub.by_participant[room] is not conn,
                     within=30.0, interval=0.05, what="the slow connection left the hub")
    assert CLOSE_TOO_SLOW == 1008


async def test_hundreds_of_connections_from_one_address_are_capped_and_others_served(abused):
    demo = abused.demo
    ws_url = abused.base_url.replace("http", "ws", 1) + "/ws"
    other_address = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    bystander = SignalingClient(abused.base_url, aiohttp.ClientSession(connector=other_address))
    flood = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    opened: list[aiohttp.ClientWebSocketResponse] = []
    try:
        await bystander.exchange(demo.doctor_token)
        await bystander.connect()
        for _ in range(200):
            opened.append(await flood.ws_connect(ws_url, heartbeat=None))
        refused = 0
        for ws in opened[MAX_CONNECTIONS_PER_ADDRESS:]:
            msg = await ws.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == aiohttp.WSCloseCode.TRY_AGAIN_LATER
            refused += 1
        assert refused == 200 - MAX_CONNECTIONS_PER_ADDRESS
        assert all(not ws.closed for ws in opened[:MAX_CONNECTIONS_PER_ADDRESS])
        await pong(bystander, 2.0)
        async with aiohttp.ClientSession() as http:
            async with http.get(abused.base_url + "/healthz") as resp:
                assert resp.status == 200
        for ws in opened:
            await ws.close()
        clinic = SignalingClient(abused.base_url)  # the cap frees up once they have gone
        try:
            await clinic.exchange(demo.clinic_token)
            await wait_until(lambda: abused.app[HUB]._per_address.get("127.0.0.1", 0) == 0,
                             within=30.0, interval=0.05, what="flood connections released")
            await clinic.connect()
            await pong(clinic, 3.0)
        finally:
            await clinic.close()
    finally:
        for ws in opened:
            await ws.close()
        await flood.close()
        await bystander.close()


async def test_slow_loris_headers_do_not_block_others_and_are_dropped_at_the_keepalive(abused):
    """aiohttp has no header timeout; the connection-start keep-alive timer is what drops a
    client trickling headers. The test server sets it to 3 s; signaling/node.py leaves
    aiohttp's default (3630 s), see SECURITY.md."""
    loris: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for _ in range(20):
        reader, writer = await asyncio.open_connection(abused.host, abused.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        loris.append((reader, writer))
    try:
        async with aiohttp.ClientSession() as http:
            served = 0
            dropped: set[int] = set()
            for _second in range(int(KEEPALIVE_S * 5)):  # bounded: at most ~15 s
                for i, (reader, writer) in enumerate(loris):
                    if i in dropped:
                        continue
                    if reader.at_eof() or writer.is_closing():
                        dropped.add(i)
                        continue
                    try:
                        writer.write(b"a")
                        await writer.drain()
                    except ConnectionError:
                        dropped.add(i)
                async with http.get(abused.base_url + "/healthz") as resp:
                    assert resp.status == 200
                    served += 1
                if len(dropped) == len(loris):
                    break
                await asyncio.sleep(1.0)
                for i, (reader, _writer) in enumerate(loris):
                    if i not in dropped and reader.at_eof():
                        dropped.add(i)
            assert served >= 2
            assert len(dropped) == len(loris), f"{len(dropped)} of {len(loris)} dropped"
    finally:
        for _reader, writer in loris:
            writer.close()


def offer_with_sections(count: int) -> str:
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=ice-ufrag:fuzz",
             "a=ice-pwd:" + "p" * 24, "a=fingerprint:sha-256 " + ":".join(["AB"] * 32)]
    for mid in range(count):
        lines += ["m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", f"a=mid:{mid}",
                  "a=sendonly", "a=rtcp-mux", "a=setup:actpass", "a=rtpmap:111 opus/48000/2"]
    return "\r\n".join(lines) + "\r\n"


ABSURD_CANDIDATES = [
    "a=candidate:1 1 udp 2130706431 999.999.999.999 99999 typ host",
    "a=candidate:" + "f" * 300 + " 1 udp -5 10.0.0.1 1 typ host",
    "a=candidate:1 1 carrier-pigeon 1 ::1 0 typ nonsense",
    "a=candidate:1",
    "a=candidate:1 1 udp 1 10.0.0.1 5000 typ relay raddr " + "1" * 500 + " rport x",
    "a=candidate:1 99999999999999999999 udp 1 a b typ host",
]


async def test_an_sdp_with_hundreds_of_media_sections_is_refused_with_invalid_sdp(abused):
    demo = abused.demo
    teacher = SignalingClient(abused.base_url)
    classroom = SignalingClient(abused.base_url)
    try:
        await teacher.exchange(demo.host_token)
        await teacher.connect()
        await classroom.exchange(demo.classroom_tokens[sorted(demo.classroom_tokens)[0]])
        await classroom.connect()
        await classroom.expect("session")
        sdp = offer_with_sections(300)
        assert len(sdp) <= m.MAX_SDP_CHARS
        await classroom.send({"type": "publish", "sdp": sdp, "sources": {"0": "mic"}})
        error = await classroom.expect("error", timeout=20)
        assert (error["code"], error["ref"]) == ("invalid_sdp", "publish")
        await pong(classroom, 4.0)
        await pong(teacher, 5.0)
    finally:
        await teacher.close()
        await classroom.close()


async def test_absurd_candidates_get_an_error_frame_not_a_server_failure(abused):
    demo = abused.demo
    teacher = SignalingClient(abused.base_url)
    classroom = SignalingClient(abused.base_url)
    try:
        await teacher.exchange(demo.host_token)
        await teacher.connect()
        await classroom.exchange(demo.classroom_tokens[sorted(demo.classroom_tokens)[0]])
        await classroom.connect()
        await classroom.expect("session")
        outcomes: list[str] = []
        for candidate in ["", *ABSURD_CANDIDATES, "\r\n".join(ABSURD_CANDIDATES * 200)[:60_000]]:
            sdp = offer_with_sections(1) + candidate + "\r\n"
            await classroom.send({"type": "publish", "sdp": sdp[: m.MAX_SDP_CHARS],
                                  "sources": {"0": "mic"}})
            reply = await next_reply(classroom)
            outcomes.append(reply["type"] if reply["type"] != "error" else reply["code"])
            await pong(classroom, 6.0 + len(outcomes))
        print("absurd candidate outcomes:", outcomes)
        assert outcomes[0] == "answer", "the offer without absurd candidates must be valid"
        assert "internal_error" not in outcomes, outcomes
        await pong(teacher, 99.0)
    finally:
        await teacher.close()
        await classroom.close()


async def next_reply(client: SignalingClient) -> dict[str, Any]:
    """The next `answer` or `error` frame (others skipped)."""
    async with asyncio.timeout(30):
        while True:
            frame = await client.frames.get()
            if frame["type"] in ("answer", "error", "_closed"):
                return frame


async def test_a_curious_participant_sees_nothing_of_other_consults_and_no_cors(abused):
    """Another clinic cannot read, cancel or snoop the demo consult; a classroom cannot act as
    the teacher or a doctor; no origin is granted cross-site reads."""
    demo = abused.demo
    assert demo.consult_id is not None
    nosy_token = abused.services.tokens.issue(sub="nosy-clinic", role="clinic", name="Nosy")
    nosy = SignalingClient(abused.base_url)
    teacher = SignalingClient(abused.base_url)
    classroom = SignalingClient(abused.base_url)
    try:
        await nosy.exchange(nosy_token)
        for method, path, refusal in (
                ("GET", f"/api/v1/consults/{demo.consult_id}", {"not_found"}),
                ("GET", f"/api/v1/consults/{demo.consult_id}/snapshots", {"not_found"}),
                # cancel too answers not_found: nothing reveals that the id exists
                ("POST", f"/api/v1/consults/{demo.consult_id}/cancel", {"not_found"})):
            with pytest.raises(SignalingError) as err:
                await nosy.request(method, path)
            assert err.value.code in refusal, (path, err.value.code)
        assert all(t["id"] != demo.consult_id
                   for t in await nosy.request("GET", "/api/v1/consults"))
        await nosy.connect()
        await nosy.send({"type": "enter", "session": demo.consult_id})
        assert (await nosy.expect("error", timeout=20))["ref"] == "enter"
        await teacher.exchange(demo.host_token)
        await teacher.connect()
        await classroom.exchange(demo.classroom_tokens[sorted(demo.classroom_tokens)[0]])
        await classroom.connect()
        await classroom.expect("session")
        for frame in ({"type": "end"}, {"type": "spotlight", "participant": None},
                      {"type": "mute", "muted": True, "participant": "*"},
                      {"type": "claim", "consult": demo.consult_id}):
            await classroom.send(frame)
            error = await classroom.expect("error", timeout=20)
            assert error["ref"] == frame["type"], error
        assert (await abused.services.classes.get(demo.class_id)).state.value != "ended"
        await pong(teacher, 7.0)
        async with aiohttp.ClientSession() as http:
            async with http.options(abused.base_url + "/api/v1/session", headers={
                    "Origin": "https://evil.example",
                    "Access-Control-Request-Method": "POST"}) as resp:
                assert "Access-Control-Allow-Origin" not in resp.headers
            async with http.get(abused.base_url + "/api/v1/specialties",
                                headers={"Origin": "https://evil.example"}) as resp:
                assert "Access-Control-Allow-Origin" not in resp.headers
    finally:
        await nosy.close()
        await teacher.close()
        await classroom.close()


async def test_a_single_use_link_is_never_a_bearer_credential_and_exchanges_once(abused):
    once = abused.services.tokens.issue(sub="wy-room-1", role="assistant",
                                        session=abused.demo.class_id, single_use=True)
    async with SignalingClient(abused.base_url) as client:
        client.grant = {"credential": once}
        for _ in range(2):
            with pytest.raises(SignalingError) as refused:
                await client.request("GET", "/api/v1/me")
            assert refused.value.code == "unauthorized"
        client.grant = {}
        await client.exchange(once)
        await client.request("GET", "/api/v1/me")
    async with SignalingClient(abused.base_url) as again:
        with pytest.raises(SignalingError):
            await again.exchange(once)
