"""Two nodes sharing one real redis-server act as one service: consult claims stay
exactly-once, a room's participants meet on the node that holds it, and when that node dies
they come back into the session on the other node."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from broker.demo import DemoLinks, load_demo
from client.participant import RemoteParticipant
from client.ws import SignalingClient
from tests.helpers.cluster import Node, NodeStarter, clip_tracks
from tests.helpers.waiting import wait_until

pytestmark = [pytest.mark.timeout(120), pytest.mark.redis]


NodeFactory = Callable[[str], Awaitable[Node]]


@pytest.fixture
async def start_node(redis_url: str, aiohttp_server, tmp_path) -> AsyncIterator[NodeFactory]:
    starter = NodeStarter(redis_url, aiohttp_server, tmp_path)
    try:
        yield starter.start
    finally:
        await starter.kill_all()


async def two_nodes(start_node: NodeFactory) -> tuple[Node, Node, DemoLinks]:
    a = await start_node("node-a")
    b = await start_node("node-b")
    s = a.services
    demo = await load_demo(s.directory, s.classes, s.consults, s.tokens, s.clock())
    return a, b, demo


async def test_a_consult_requested_on_one_node_is_claimed_once_by_doctors_racing_on_two(
        start_node):
    a, b, demo = await two_nodes(start_node)
    wu_token = b.services.tokens.issue(sub="d-wu", role="doctor", name="吴医生")
    clinic = SignalingClient(a.base_url)
    zhang = SignalingClient(a.base_url)
    wu = SignalingClient(b.base_url)
    try:
        await clinic.exchange(demo.clinic_token)
        await zhang.exchange(demo.doctor_token)
        await wu.exchange(wu_token)  # a token signed on node B is good on node A and back
        for client in (clinic, zhang, wu):
            await client.connect()
        ticket = await clinic.request("POST", "/api/v1/consults", {
            "specialty": "内科", "urgency": "urgent", "reason": "胸痛两小时"})
        consult = ticket["ticket"]["id"]
        for doctor in (zhang, wu):
            await doctor.expect("queue", where=lambda f: any(
                i["consult"] == consult for i in f["items"]))

        await asyncio.gather(*(d.send({"type": "claim", "consult": consult})
                               for d in (zhang, wu)))

        async def claimed() -> bool:
            found = await b.services.consults.find(consult)
            return found is not None and found.expert_id is not None
        await wait_until(claimed, within=10, what="the consult is claimed")
        winner_id = (await a.services.consults.get(consult)).expert_id
        winner, loser = (zhang, wu) if winner_id == demo.doctor_id else (wu, zhang)
        assert winner_id in (demo.doctor_id, "d-wu")
        refused = await loser.expect("error", where=lambda f: f["ref"] == "claim", timeout=10)
        assert refused["code"] not in ("internal_error", "invalid_frame")
        await winner.expect("queue", where=lambda f: any(
            i["consult"] == consult and i["mine"] for i in f["items"]))
        assert not [f for f in winner.history if f["type"] == "error"]
    finally:
        for client in (clinic, zhang, wu):
            await client.close()


async def join_class(teacher_node: Node, classroom_node: Node, demo: DemoLinks
                     ) -> tuple[RemoteParticipant, RemoteParticipant, str]:
    room = next(iter(demo.classroom_tokens))
    teacher = RemoteParticipant(teacher_node.base_url, fallback_urls=(classroom_node.base_url,))
    classroom = RemoteParticipant(classroom_node.base_url,
                                  fallback_urls=(teacher_node.base_url,))
    for p in (teacher, classroom):
        p.track_factory = clip_tracks
    await teacher.join_token(demo.host_token)
    await teacher.signaling.expect("session")
    await classroom.join_token(demo.classroom_tokens[room])
    await classroom.signaling.expect("session", timeout=15)  # only the holder sends it
    await teacher.publish(clip_tracks())
    await classroom.publish(clip_tracks())
    return teacher, classroom, room


async def exchanging(teacher: RemoteParticipant, classroom: RemoteParticipant, room: str,
                     within: float = 30.0) -> None:
    await wait_until(lambda: classroom.frames_from(teacher.id, "camera") > 10
                     and classroom.frames_from(teacher.id, "mic") > 10,
                     within=within, what="the classroom sees and hears the teacher")
    await wait_until(lambda: teacher.frames_from(room, "camera") > 10, within=within,
                     what="the teacher sees the classroom")


async def test_a_class_joined_through_two_nodes_meets_on_the_node_holding_it(start_node):
    a, b, demo = await two_nodes(start_node)
    teacher, classroom, room = await join_class(a, b, demo)
    try:
        holder = await a.placement.place(demo.class_id)
        assert holder.id == "node-a"  # the teacher came first, through A
        assert teacher.moves == 0 and classroom.moves == 1
        assert classroom.signaling.base_url == a.base_url
        assert any(f["type"] == "redirect" and f["url"] == a.base_url
                   for f in classroom.signaling.history)
        await exchanging(teacher, classroom, room)
    finally:
        await teacher.close()
        await classroom.close()


async def test_killing_the_node_holding_a_class_brings_everyone_back_on_the_other(start_node):
    a, b, demo = await two_nodes(start_node)
    teacher, classroom, room = await join_class(a, b, demo)
    try:
        await exchanging(teacher, classroom, room)
        moves = (teacher.moves, classroom.moves)
        killed = time.monotonic()
        await a.kill()

        def back_in_session(p: RemoteParticipant, moved_before: int) -> bool:
            if p.moves <= moved_before or p.signaling.base_url != b.base_url:
                return False
            history = p.signaling.history
            last_move = max(i for i, f in enumerate(history) if f["type"] == "_moved")
            return any(f["type"] == "session" for f in history[last_move:])

        await wait_until(lambda: back_in_session(teacher, moves[0])
                         and back_in_session(classroom, moves[1]),
                         within=10, what="both participants back in the session on node B")
        session_s = time.monotonic() - killed
        await exchanging(teacher, classroom, room)
        media_s = time.monotonic() - killed
        print(f"\nfailover: back in session {session_s:.2f} s, media flowing again "
              f"{media_s:.2f} s after the holder died")
        assert (await b.placement.place(demo.class_id)).id == "node-b"
    finally:
        await teacher.close()
        await classroom.close()


async def test_a_consult_entered_through_two_nodes_meets_on_one_and_exchanges_media(
        start_node):
    a, b, demo = await two_nodes(start_node)
    clinic = RemoteParticipant(a.base_url)
    doctor = RemoteParticipant(b.base_url)
    try:
        await clinic.join_token(demo.clinic_token)
        await doctor.join_token(demo.doctor_token)
        ticket = await clinic.signaling.request("POST", "/api/v1/consults", {
            "specialty": "内科", "urgency": "urgent", "reason": "高烧不退"})
        consult = ticket["ticket"]["id"]
        for p in (clinic, doctor):
            await p.signaling.expect(
                "queue", where=lambda f: any(i["consult"] == consult for i in f["items"]))
        await doctor.send({"type": "claim", "consult": consult})
        await doctor.signaling.expect("queue", where=lambda f: any(
            i["consult"] == consult and i["mine"] for i in f["items"]))
        await doctor.send({"type": "admit", "consult": consult})
        await clinic.signaling.expect("notice", where=lambda f: f["code"] == "admitted")
        await clinic.send({"type": "enter", "session": consult})
        await clinic.signaling.expect("session", where=lambda f: f["id"] == consult)
        await doctor.send({"type": "enter", "session": consult})
        await doctor.signaling.expect("session", where=lambda f: f["id"] == consult,
                                      timeout=15)
        assert doctor.moves == 1 and doctor.signaling.base_url == a.base_url
        await clinic.publish(clip_tracks())
        await doctor.publish(clip_tracks())
        await wait_until(lambda: doctor.frames_from(clinic.id, "camera") > 10
                         and clinic.frames_from(doctor.id, "camera") > 10, within=30,
                         what="doctor and clinic see each other")
        await doctor.send({"type": "end", "outcome": "follow_up"})
        await clinic.signaling.expect("ended")
    finally:
        await clinic.close()
        await doctor.close()


@pytest.mark.timeout(90)
def test_two_serve_processes_register_as_nodes_and_accept_each_others_links(redis_url,
                                                                           tmp_path):
    """`tongxin serve --redis` twice, no TONGXIN_TOKEN_SECRET: a link printed by the first
    node is good on the second (the signing key is shared through Redis), and the second's
    media role and region are in its registration."""
    import json
    import os
    import subprocess
    import sys
    import urllib.request

    import redis

    from bench.processes import free_port

    env = {k: v for k, v in os.environ.items() if k != "TONGXIN_TOKEN_SECRET"}
    ports = [free_port(), free_port()]
    logs = [tmp_path / f"serve-{port}.log" for port in ports]

    def serve(port: int, extra: list[str], log: Path) -> subprocess.Popen[str]:
        with log.open("w") as stderr:  # the child keeps its own copy of the file
            return subprocess.Popen(
                [sys.executable, "-m", "signaling.cli", "serve", "--redis", redis_url, "--port",
                 str(port), "--media-workers", "0", "--data-dir", str(tmp_path / str(port)),
                 *extra],
                stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)

    procs = [serve(port, extra, log)
             for port, extra, log in zip(
                 ports, ([], ["--no-demo", "--media-role", "edge", "--region", "渭源县"]), logs,
                 strict=True)]
    try:
        link = ""
        assert procs[0].stdout is not None
        for line in procs[0].stdout:  # the banner; bounded by the test timeout
            if "/join/" in line:
                link = line.split()[-1]
                break
        token = link.rsplit("/", 1)[-1]
        assert token, f"no join link printed; its log: {logs[0].read_text()[-2000:]}"
        deadline = time.monotonic() + 60
        grant = None
        while grant is None:
            request = urllib.request.Request(
                f"http://127.0.0.1:{ports[1]}/api/v1/session",
                data=json.dumps({"token": token}).encode(),
                headers={"Content-Type": "application/json"}, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=5) as resp:
                    grant = json.loads(resp.read())
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        assert grant["credential"]
        client = redis.Redis.from_url(redis_url)
        nodes = [json.loads(client.get(key)) for key in client.keys("tx:key:node:*")]
        assert sorted(n["url"] for n in nodes) == sorted(
            f"http://127.0.0.1:{port}" for port in ports)
        assert sorted((n["role"], n["region"]) for n in nodes) == [
            ("any", None), ("edge", "渭源县")]  # the second node's flags, in its registration
        client.close()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
