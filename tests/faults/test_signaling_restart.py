"""A single `tongxin serve --redis` node SIGTERMed and started again on the same port, under a
live class and a claimed consult: the clients come back by themselves and keep their seats
(class roster and raised hand, the doctor's claimed consult, the clinic's request), and the
class's media flows again through new peer connections.

A client that resumes with its `resume` token is let in: the token is kept in the process that
issued it, so the new process treats the join as a fresh one (same participant, same seat,
which lives in Redis) and the client builds new peer connections, as PROTOCOL.md section 4
says for a reconnect that was not resumed. The figure measured is the time from SIGTERM until
both class participants are back in their session and until media flows again.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from client.participant import RemoteParticipant
from client.ws import SignalingClient, SignalingError
from tests.faults.session_parts import demo_token, exchanging, join_class, since
from tests.helpers.waiting import wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(300)]

BOUND_S = 45.0
"""Back in session within this after SIGTERM: the node's shutdown (up to 5 s), a new
process importing aiortc on a loaded 2-core machine (several seconds), the clients' retry
pause; generous on purpose. The measured figure is printed."""


def back_in_session(p: RemoteParticipant, moves_before: int) -> bool:
    """`p` rejoined (a `_moved`) and got its session frame after that."""
    history = p.signaling.history
    if p.moves <= moves_before:
        return False
    last_move = max(i for i, f in enumerate(history) if f["type"] == "_moved")
    return any(f["type"] == "session" for f in history[last_move:])


def last_session(p: RemoteParticipant) -> dict:
    return next(f for f in reversed(p.signaling.history) if f["type"] == "session")


async def resume(client: SignalingClient, token: str, within: float) -> dict:
    """Join again with the resume token until the node answers (it is restarting)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await client.connect(resume=token, timeout=5)
        except (OSError, SignalingError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


async def test_a_signaling_restart_keeps_seats_and_brings_media_back(persisted_redis,
                                                                     start_node):
    node = await start_node(redis_url=persisted_redis.url, demo=True)
    teacher, classroom, room = await join_class(node)
    doctor = SignalingClient(node.url)  # resumes by hand with its token
    clinic = RemoteParticipant(node.url)  # recovers by itself
    try:
        await exchanging(teacher, classroom)
        await classroom.send({"type": "hand", "raised": True})
        await teacher.signaling.expect("session", where=lambda f: f["hands"] == [room])
        await doctor.exchange(demo_token(node, "医生"))
        await doctor.connect()
        await clinic.join_token(demo_token(node, "村卫生室"))
        ticket = await clinic.signaling.request("POST", "/api/v1/consults", {
            "specialty": "内科", "urgency": "urgent", "reason": "重启前的请求"})
        consult = ticket["ticket"]["id"]
        await doctor.expect("queue", where=lambda f: any(
            i["consult"] == consult for i in f["items"]))
        await doctor.send({"type": "claim", "consult": consult})
        await doctor.expect("queue", where=lambda f: any(
            i["consult"] == consult and i["mine"] for i in f["items"]))
        token = doctor.welcome["resume"]
        moves = (teacher.moves, classroom.moves, clinic.moves)
        roster = {(p["id"], p["role"]) for p in last_session(teacher)["participants"]}

        stopped = time.monotonic()
        assert await node.stop() == 0, "a clean shutdown"
        stop_s = since(stopped)
        await doctor.expect("_closed", timeout=10)
        node.demo = False  # the directory, class and tickets are in Redis already
        await node.start()
        restarted_s = since(stopped)

        welcome = await resume(doctor, token, within=BOUND_S)
        assert welcome["participant"]["id"] == "d-zhang" and welcome["resume"] != token
        await wait_until(lambda: back_in_session(teacher, moves[0])
                         and back_in_session(classroom, moves[1]),
                         within=BOUND_S, what="teacher and classroom back in the class")
        session_s = since(stopped)
        await exchanging(teacher, classroom, within=BOUND_S)
        media_s = since(stopped)

        # seats kept: the same roster, everyone present, the hand still raised
        state = last_session(teacher)
        assert {(p["id"], p["role"]) for p in state["participants"]} == roster
        await teacher.signaling.expect("session", timeout=15, where=lambda f: f["hands"] == [
            room] and all(p["present"] for p in f["participants"]
                          if p["id"] in (teacher.id, room)))
        # the consult: still the doctor's, still the clinic's
        await doctor.expect("queue", timeout=15, where=lambda f: any(
            i["consult"] == consult and i["mine"] and i["state"] == "matched"
            for i in f["items"]))
        await wait_until(lambda: clinic.moves > moves[2], within=BOUND_S,
                         what="the clinic back on the node")
        await clinic.signaling.expect("queue", timeout=15, where=lambda f: any(
            i["consult"] == consult and i["expert_id"] == "d-zhang" for i in f["items"]))
        assert not teacher.offer_errors and not classroom.offer_errors
        print(f"\nsignaling restart: old process gone {stop_s:.2f} s and the new one serving "
              f"{restarted_s:.2f} s after SIGTERM; "
              f"class back in session {session_s:.2f} s, media flowing {media_s:.2f} s "
              f"after SIGTERM")
    finally:
        for p in (teacher, classroom, clinic):
            await p.close()
        await doctor.close()
