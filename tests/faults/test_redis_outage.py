"""Redis stopped and restarted under a live node (`tongxin serve --redis`, a child process).

During a class: media keeps flowing (it does not touch Redis), frames that need the store get
a `store_unavailable` error instead of hanging, /readyz says 503; once Redis is back the class
carries on (spotlight works, /readyz 200). During a consult queue: every request acknowledged
before the restart is still waiting after it, in the same order with the same urgency, and
each is claimed exactly once by doctors racing for it.

Redis runs with deploy/'s persistence (appendonly yes, appendfsync always). Both a clean stop
(SIGTERM: Redis flushes its AOF) and a crash (SIGKILL, more than a second after the last
acknowledged write) are tried: with `always` neither loses an acknowledged write, and
neither does a crash right after the last acknowledgement (the consult queue is tried that way
too). With `everysec` that last crash could lose up to a second; deploy/ does not use it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from client.ws import SignalingClient, SignalingError
from tests.faults.session_parts import (
    demo_token,
    exchanging,
    first_frame,
    join_class,
    since,
    still_flowing,
)
from tests.helpers.redis_server import RedisServerProcess
from tests.helpers.waiting import wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(240)]

ERROR_BOUND_S = 10.0
"""A frame needing the store answers within this (the store's operation timeout is 2 s; the
rest is slack for a loaded machine)."""
READY_BOUND_S = 20.0
"""/readyz is 200 again within this after Redis answers (it probes with a 2 s timeout)."""


async def readyz(base: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(
            base + "/readyz", timeout=aiohttp.ClientTimeout(total=10)) as resp:
        return resp.status


async def outage(server: RedisServerProcess, how: str) -> None:
    """Take Redis down: a clean stop, a crash more than a second after the last write (what
    `everysec` would survive), or a crash right after it (what only `always` survives)."""
    if how == "sigterm":
        await asyncio.to_thread(server.stop)
    elif how == "sigkill":
        await asyncio.sleep(1.5)
        await asyncio.to_thread(server.kill)
    else:
        await asyncio.to_thread(server.kill)


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_a_class_carries_on_through_a_redis_restart(persisted_redis, start_node, how):
    node = await start_node(redis_url=persisted_redis.url, demo=True)
    teacher, classroom, room = await join_class(node)
    try:
        await exchanging(teacher, classroom)
        await outage(persisted_redis, how)
        down = time.monotonic()

        # media does not depend on Redis
        await still_flowing(classroom, teacher.id, seconds=3)
        await still_flowing(teacher, room, seconds=3)
        # a frame that needs the store answers an error, not silence
        await teacher.send({"type": "spotlight", "participant": room})
        refused = await first_frame(teacher, lambda f: f["type"] == "error", ERROR_BOUND_S)
        assert (refused["code"], refused["ref"]) == ("store_unavailable", "spotlight")
        # the heartbeat does not need the store
        await teacher.send({"type": "ping", "t": 1})
        await first_frame(teacher, lambda f: f["type"] == "pong", ERROR_BOUND_S)
        assert await readyz(node.url) == 503
        outage_s = since(down)

        await asyncio.to_thread(persisted_redis.start)
        back = time.monotonic()
        await wait_until(lambda: _ready(node.url), within=READY_BOUND_S,
                         what="/readyz 200 after Redis is back")
        ready_s = since(back)
        # the class carries on: the teacher calls on the classroom (retried while the node's
        # subscriptions come back; each try is answered)
        spotlit, refusals = await _spotlight_until_seen(teacher, classroom, room)
        await still_flowing(classroom, teacher.id, seconds=2)
        class_id = classroom.signaling.grant["session"]["id"]
        state = await classroom.signaling.request("GET", f"/api/v1/classes/{class_id}")
        assert state["state"] == "live" and state["spotlight"] == room
        print(f"\nredis {how}: media flowed through {outage_s:.1f} s of outage; /readyz 200 "
              f"{ready_s:.1f} s after Redis was back; spotlight seen after {spotlit:.1f} s "
              f"({refusals} store_unavailable refusals meanwhile)")
    finally:
        await teacher.close()
        await classroom.close()


async def _ready(base: str) -> bool:
    try:
        return await readyz(base) == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def _spotlight_until_seen(teacher, classroom, room: str, within: float = 30.0
                                ) -> tuple[float, int]:
    """Call on `room` until the classroom's `session` shows it; (seconds, store_unavailable
    refusals meanwhile: the first operations on connections opened before the restart fail
    once each)."""
    started = time.monotonic()
    refusals = 0
    while True:
        await teacher.send({"type": "spotlight", "participant": room})
        try:
            frame = await first_frame(classroom, lambda f: f["type"] == "session"
                                      and f["spotlight"] == room, 3)
        except TimeoutError:
            frame = None
        errors = [f for f in _drain(teacher) if f["type"] == "error"]
        assert all(f["code"] == "store_unavailable" for f in errors), errors
        refusals += len(errors)
        if frame is not None:
            return time.monotonic() - started, refusals
        assert time.monotonic() - started < within, f"spotlight not seen in {within} s"


def _drain(p) -> list[dict]:
    frames = []
    while not p.signaling.frames.empty():
        frames.append(p.signaling.frames.get_nowait())
    return frames


CLINICS = [("wy-vc-01-01", "emergency"), ("wy-vc-01-02", "routine"), ("wy-vc-03-04", "urgent"),
           ("wy-vc-05-06", "routine")]


@pytest.mark.parametrize("how", ["sigterm", "sigkill", "sigkill_at_once"])
async def test_acknowledged_consult_requests_survive_a_redis_restart_and_are_claimed_once(
        persisted_redis, start_node, how):
    node = await start_node(redis_url=persisted_redis.url, demo=True)
    base = node.url
    operator, zhang, wu = SignalingClient(base), SignalingClient(base), SignalingClient(base)
    clinics = [SignalingClient(base) for _ in CLINICS]
    try:
        await operator.exchange(demo_token(node, "运维"))
        await zhang.exchange(demo_token(node, "医生"))
        wu_link = await operator.request("POST", "/api/v1/tokens", {
            "sub": "d-wu", "role": "doctor", "name": "吴医生"})
        await wu.exchange(wu_link["token"])
        acknowledged = []
        for client, (site, urgency) in zip(clinics, CLINICS, strict=True):
            link = await operator.request("POST", "/api/v1/tokens",
                                          {"sub": site, "role": "clinic", "name": site})
            await client.exchange(link["token"])
            waiting = await client.request("POST", "/api/v1/consults", {
                "specialty": "内科", "urgency": urgency, "reason": f"{site} 的请求"})
            assert waiting["ticket"]["state"] == "waiting"  # acknowledged: 201 with a ticket
            acknowledged.append(waiting["ticket"]["id"])
        before = _queue(await zhang.request("GET", "/api/v1/consults"))
        assert set(acknowledged) <= {c for c, _ in before}

        await outage(persisted_redis, how)
        with pytest.raises(SignalingError) as refused:
            await clinics[0].request("GET", f"/api/v1/consults/{acknowledged[0]}")
        assert refused.value.code == "store_unavailable"
        await asyncio.to_thread(persisted_redis.start)
        await wait_until(lambda: _ready(base), within=READY_BOUND_S, what="/readyz 200")

        after = _queue(await _read(zhang, "/api/v1/consults"))
        assert after == before, "same requests, same order, same urgency"
        for client, consult in zip(clinics, acknowledged, strict=True):
            room = await _read(client, f"/api/v1/consults/{consult}")
            assert room["ticket"]["state"] == "waiting" and room["position"] is not None

        # two doctors (capacity 2 each) race for every request: exactly one wins each
        winners: dict[str, str] = {}
        for consult in acknowledged:
            results = await asyncio.gather(
                *(d.request("POST", f"/api/v1/consults/{consult}/claim") for d in (zhang, wu)),
                return_exceptions=True)
            won = [r for r in results if isinstance(r, dict)]
            assert len(won) == 1, results
            lost = [r for r in results if not isinstance(r, dict)]
            assert all(isinstance(r, SignalingError) and r.code == "conflict" for r in lost)
            winners[consult] = won[0]["expert_id"]
        for consult in acknowledged:
            ticket = (await operator.request("GET", f"/api/v1/consults/{consult}"))["ticket"]
            assert (ticket["state"], ticket["expert_id"]) == ("matched", winners[consult])
        print(f"\nredis {how}: {len(acknowledged)} acknowledged requests kept their order and "
              f"urgency; claimed once each: {sorted(winners.values())}")
    finally:
        for client in (operator, zhang, wu, *clinics):
            await client.close()


async def _read(client: SignalingClient, path: str) -> Any:
    """GET `path`, retried once on `store_unavailable` (503: "the caller may retry"): a
    connection opened before the restart can fail once when it is next used."""
    try:
        return await client.request("GET", path)
    except SignalingError as exc:
        if exc.code != "store_unavailable":
            raise
        return await client.request("GET", path)


def _queue(items: list[dict]) -> list[tuple[str, str]]:
    return [(t["id"], t["urgency"]) for t in items if t["state"] in ("waiting", "escalated")]
