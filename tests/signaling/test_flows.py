"""A whole class and a whole consult through REST + WebSocket + media, on both stores."""

from __future__ import annotations

import pytest

from client.clip import ClipTrack, load_clip
from client.participant import RemoteParticipant
from client.ws import SignalingClient, SignalingError
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.timeout(180)


def clip_tracks() -> dict[str, ClipTrack]:
    return {"mic": ClipTrack(load_clip("opus")), "camera": ClipTrack(load_clip("vp8"))}


async def test_class_teacher_and_two_classrooms_hand_spotlight_media_and_end(node):
    demo = node.demo
    rooms = list(demo.classroom_tokens)[:2]
    teacher = RemoteParticipant(node.base_url)
    classrooms = [RemoteParticipant(node.base_url) for _ in rooms]
    try:
        welcome = await teacher.join_token(demo.host_token)
        assert welcome["participant"]["role"] == "teacher"
        state = await teacher.signaling.expect("session")
        assert state["kind"] == "class" and state["status"] == "live"
        for room, client in zip(rooms, classrooms, strict=True):
            await client.join_token(demo.classroom_tokens[room])
            await client.signaling.expect("session")

        await teacher.publish(clip_tracks())
        for client in classrooms:
            await client.publish(clip_tracks())
        await wait_until(lambda: all(c.frames_from(teacher.id, "camera") > 10
                                     for c in classrooms),
                         within=30.0, interval=0.1, what="classrooms see the teacher")
        await wait_until(lambda: all(c.frames_from(teacher.id, "mic") > 10
                                     for c in classrooms),
                         within=30.0, interval=0.1, what="classrooms hear the teacher")
        await wait_until(lambda: all(teacher.frames_from(r, "camera") > 10 for r in rooms),
                         within=30.0, interval=0.1, what="the teacher sees every classroom")

        # classroom 2 raises its hand; the teacher sees it in order and calls on it
        await classrooms[1].send({"type": "hand", "raised": True})
        await teacher.signaling.expect("session", where=lambda f: f["hands"] == [rooms[1]])
        await teacher.send({"type": "spotlight", "participant": rooms[1]})
        await classrooms[0].signaling.expect("session",
                                             where=lambda f: f["spotlight"] == rooms[1])
        await wait_until(lambda: classrooms[0].frames_from(rooms[1], "camera") > 10,
                         within=30.0, interval=0.1,
                         what="classroom 1 sees the spotlighted classroom 2")
        await wait_until(lambda: classrooms[0].frames_from(rooms[1], "mic") > 10,
                         within=30.0, interval=0.1, what="classroom 1 hears classroom 2")

        # a classroom may not call on anyone; the error touches only it
        await classrooms[0].send({"type": "spotlight", "participant": rooms[0]})
        error = await classrooms[0].signaling.expect("error")
        assert error["code"] == "forbidden" and error["ref"] == "spotlight"

        await teacher.send({"type": "end"})
        for client in classrooms:
            await client.signaling.expect("ended")
    finally:
        for p in [teacher, *classrooms]:
            await p.close()


async def test_consult_request_claim_admit_media_snapshot_and_end(node):
    demo = node.demo
    clinic = RemoteParticipant(node.base_url)
    doctor = RemoteParticipant(node.base_url)
    try:
        await clinic.join_token(demo.clinic_token)
        await doctor.join_token(demo.doctor_token)
        await clinic.signaling.expect("queue")
        ticket = await clinic.signaling.request("POST", "/api/v1/consults", {
            "specialty": "内科", "urgency": "urgent", "reason": "发热三天，咳嗽"})
        consult = ticket["ticket"]["id"]
        assert ticket["position"] is not None
        await clinic.signaling.expect(
            "queue", where=lambda f: any(i["consult"] == consult for i in f["items"]))
        await doctor.signaling.expect(
            "queue", where=lambda f: any(i["consult"] == consult for i in f["items"]))

        await doctor.send({"type": "claim", "consult": consult})
        await doctor.signaling.expect("queue", where=lambda f: any(
            i["consult"] == consult and i["mine"] for i in f["items"]))
        # the clinic cannot enter before it is admitted
        await clinic.send({"type": "enter", "session": consult})
        assert (await clinic.signaling.expect("error"))["code"] == "not_admitted"

        await doctor.send({"type": "admit", "consult": consult})
        notice = await clinic.signaling.expect("notice", where=lambda f: f["code"] == "admitted")
        assert notice["detail"]["consult"] == consult
        await clinic.send({"type": "enter", "session": consult})
        await doctor.send({"type": "enter", "session": consult})
        await clinic.signaling.expect("session", where=lambda f: f["status"] == "admitted")
        await clinic.publish(clip_tracks())
        await doctor.publish(clip_tracks())
        await wait_until(lambda: doctor.frames_from(clinic.id, "camera") > 10
                         and doctor.frames_from(clinic.id, "mic") > 10,
                         within=30.0, interval=0.1, what="doctor sees/hears")
        await wait_until(lambda: clinic.frames_from(doctor.id, "camera") > 10
                         and clinic.frames_from(doctor.id, "mic") > 10,
                         within=30.0, interval=0.1, what="clinic sees/hears")

        jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 2000
        ref = await doctor.signaling.request("POST", f"/api/v1/consults/{consult}/snapshots",
                                             raw=jpeg, content_type="image/jpeg")
        snaps = await clinic.signaling.request("GET", f"/api/v1/consults/{consult}/snapshots")
        assert [s["id"] for s in snaps] == [ref["id"]]
        with pytest.raises(SignalingError) as refused:
            await clinic.signaling.request("POST", f"/api/v1/consults/{consult}/snapshots",
                                           raw=jpeg, content_type="image/jpeg")
        assert refused.value.code == "forbidden"

        await doctor.send({"type": "end", "outcome": "follow_up", "note": "复诊一周后"})
        ended = await clinic.signaling.expect("ended")
        assert ended["outcome"] == "follow_up"
    finally:
        await clinic.close()
        await doctor.close()


async def test_session_exchange_refuses_bad_tokens_and_single_use_twice(node):
    services = node.services
    async with SignalingClient(node.base_url) as client:
        for bad in ("not-a-token-at-all", node.demo.clinic_token[:-4] + "AAAA"):
            with pytest.raises(SignalingError) as err:
                await client.exchange(bad)
            assert err.value.code in ("unauthorized", "invalid_body")
        once = services.tokens.issue(sub="wy-room-1", role="assistant",
                                     session=node.demo.class_id, single_use=True)
        await client.exchange(once)
        with pytest.raises(SignalingError) as err:
            await client.exchange(once)
        assert err.value.code == "unauthorized"


async def test_operator_routes_need_the_operator_role(node):
    async with SignalingClient(node.base_url) as clinic, \
            SignalingClient(node.base_url) as operator:
        await clinic.exchange(node.demo.clinic_token)
        await operator.exchange(node.demo.operator_token)
        with pytest.raises(SignalingError) as err:
            await clinic.request("GET", "/api/v1/audit")
        assert err.value.code == "forbidden"
        page = await operator.request("GET", "/api/v1/audit?limit=5")
        assert len(page["entries"]) == 5
        experts = await operator.request("GET", "/api/v1/experts?kind=doctor")
        assert experts and all(e["kind"] == "doctor" for e in experts)
        with pytest.raises(SignalingError) as err:
            await operator.request("GET", "/api/v1/audit", auth=False)
        assert err.value.code == "unauthorized"


async def test_a_credential_is_rate_limited_with_retry_after(store, aiohttp_client, tmp_path):
    from signaling.app import create_app
    from signaling.config import ServeConfig
    from signaling.services import Services

    config = ServeConfig(media_workers=0, demo=False, data_dir=tmp_path,
                         rate_limit_per_minute=60)
    services = Services(config, store, None)
    client = await aiohttp_client(create_app(config, store, services=services))
    token = services.tokens.issue(sub="op", role="operator")
    headers = {"Authorization": f"Bearer {token}"}
    statuses = [(await client.get("/api/v1/specialties", headers=headers)).status
                for _ in range(5)]
    statuses += [(await client.get("/api/v1/audit", headers=headers)).status for _ in range(20)]
    assert 429 in statuses
    resp = await client.get("/api/v1/audit", headers=headers)
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1


async def test_gauges_report_live_sessions_queue_and_store(node):
    from signaling.gauges import refresh_gauges

    async with SignalingClient(node.base_url) as teacher:
        await teacher.exchange(node.demo.host_token)
        await teacher.connect()
        await teacher.expect("session")
        await refresh_gauges(node.app)
        async with teacher.http.get(node.base_url + "/metrics") as resp:
            text = await resp.text()
    assert 'tongxin_sessions_live{kind="class"} 1.0' in text
    assert "tongxin_store_up 1.0" in text
    assert 'tongxin_consult_queue_length{urgency="routine"} 1.0' in text
    assert 'tongxin_participants{role="teacher"} 1.0' in text
