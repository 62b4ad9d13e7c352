"""Recording over WebSocket and REST: policy, consent, the library, share links, playback files."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from client.participant import RemoteParticipant
from client.ws import SignalingClient
from signaling.appkeys import HUB

pytestmark = pytest.mark.timeout(120)


async def expect_frame(client: SignalingClient, kind: str,
                       where: Callable[[dict[str, Any]], bool] | None = None,
                       timeout: float = 15.0) -> dict[str, Any]:
    """The next `kind` frame (matching `where`). Unlike `SignalingClient.expect`, an error
    about a stale media answer (the test participants' renegotiation races) is skipped, and
    any other error frame fails the wait unless it is what is expected."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await client.frames.get()
            if frame["type"] == kind and (where is None or where(frame)):
                if kind != "error" or frame.get("code") != "media_rejected" or where:
                    return frame
            elif frame["type"] == "error" and frame.get("code") != "media_rejected":
                raise AssertionError(f"unexpected error frame {frame}")


async def http(node: Any, method: str, path: str, *, token: str | None = None,
               body: Any = None, raw: bytes | None = None) -> tuple[int, Any, str]:
    """(status, JSON body or None, content type) of one request."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None or raw is not None:
        headers["Content-Type"] = "application/json"
    async with aiohttp.ClientSession() as session, session.request(
            method, node.base_url + path, json=body if raw is None else None, data=raw,
            headers=headers) as resp:
        data = await resp.read()
        parsed = None
        if resp.content_type == "application/json" and data:
            parsed = await resp.json()
        return resp.status, parsed, resp.content_type


async def credential(node: Any, token: str) -> str:
    client = SignalingClient(node.base_url)
    try:
        grant = await client.exchange(token)
    finally:
        await client.close()
    return str(grant["credential"])


async def admitted_consult(node: Any, clinic: RemoteParticipant,
                           doctor: RemoteParticipant) -> str:
    """A consult requested by the clinic, claimed and admitted by the doctor, both inside."""
    ticket = await clinic.signaling.request("POST", "/api/v1/consults", {
        "specialty": "内科", "urgency": "urgent", "reason": "复诊"})
    consult = str(ticket["ticket"]["id"])
    await expect_frame(clinic.signaling,
        "queue", where=lambda f: any(i["consult"] == consult for i in f["items"]))
    await expect_frame(doctor.signaling,
        "queue", where=lambda f: any(i["consult"] == consult for i in f["items"]))
    await doctor.send({"type": "claim", "consult": consult})
    await expect_frame(doctor.signaling, "queue", where=lambda f: any(
        i["consult"] == consult and i["mine"] for i in f["items"]))
    await doctor.send({"type": "admit", "consult": consult})
    await expect_frame(clinic.signaling, "notice", where=lambda f: f["code"] == "admitted")
    await clinic.send({"type": "enter", "session": consult})
    await doctor.send({"type": "enter", "session": consult})
    await expect_frame(clinic.signaling, "session", where=lambda f: f["id"] == consult)
    await expect_frame(doctor.signaling, "session", where=lambda f: f["id"] == consult)
    return consult


async def test_a_consult_is_recorded_only_after_the_clinic_consents(node) -> None:
    demo = node.demo
    clinic, doctor = RemoteParticipant(node.base_url), RemoteParticipant(node.base_url)
    try:
        await clinic.join_token(demo.clinic_token)
        await doctor.join_token(demo.doctor_token)
        refused = await admitted_consult(node, clinic, doctor)
        doctor_cred = doctor.signaling.credential

        # without consent: the API refuses, the WebSocket asks the clinic
        status, body, _ = await http(node, "POST", f"/api/v1/sessions/{refused}/recording",
                                     token=doctor_cred, body={"on": True})
        assert status == 409 and body["error"]["code"] == "consent_required"
        request = await expect_frame(clinic.signaling, "consent_request")
        assert request["consult"] == refused and request["by"]
        await expect_frame(doctor.signaling, "notice",
                           where=lambda f: f["code"] == "consent_pending")
        await clinic.send({"type": "consent", "granted": False})
        await expect_frame(doctor.signaling, "notice",
                           where=lambda f: f["code"] == "consent_refused")
        status, body, _ = await http(node, "POST", f"/api/v1/sessions/{refused}/recording",
                                     token=doctor_cred, body={"on": True})
        assert status == 409 and body["error"]["code"] == "consent_refused"
        await doctor.send({"type": "record", "on": True})
        assert (await expect_frame(doctor.signaling, "error"))["code"] == "consent_refused"
        assert await node.services.recordings.active(refused) is None

        # the clinic may not start it, and only the clinic answers
        await clinic.send({"type": "record", "on": True})
        assert (await expect_frame(clinic.signaling, "error"))["code"] == "forbidden"
        status, _, _ = await http(node, "POST", f"/api/v1/consults/{refused}/consent",
                                  token=doctor_cred, body={"granted": True})
        assert status == 403

        # the doctor asks over the WebSocket; the clinic grants: recording starts
        await doctor.send({"type": "end", "outcome": "resolved"})
        await expect_frame(clinic.signaling, "ended")
        consult = await admitted_consult(node, clinic, doctor)
        await doctor.send({"type": "record", "on": True})
        await expect_frame(clinic.signaling, "consent_request",
                           where=lambda f: f["consult"] == consult)
        await clinic.send({"type": "consent", "granted": True})
        frame = await expect_frame(doctor.signaling, "recording", where=lambda f: f["on"])
        assert frame["recording"] and frame["since"]
        await expect_frame(clinic.signaling, "recording", where=lambda f: f["on"])
        await expect_frame(clinic.signaling, "session", where=lambda f: f["recording"] is True)

        audit = await node.services.audit.read(session=consult)
        consent = [e for e in audit.entries if e.action == "consent"]
        assert [(e.actor, e.detail["granted"], e.detail["by"]) for e in consent] == [
            (demo.clinic_site_id, True, demo.clinic_site_id)]
        assert consent[0].at > 0
        assert any(e.action == "recording_start" for e in audit.entries)

        # ending the consult stops the recording; the record goes on to processing
        await doctor.send({"type": "end", "outcome": "resolved"})
        await expect_frame(clinic.signaling, "recording", where=lambda f: not f["on"])
        recording = await node.services.recordings.get(frame["recording"])
        assert recording.status.value in ("processing", "ready", "failed")
        assert recording.ended_at is not None
    finally:
        await clinic.close()
        await doctor.close()


async def test_class_recording_policy_roles_library_share_and_delete(node, tmp_path: Path
                                                                     ) -> None:
    demo = node.demo
    operator = await credential(node, demo.operator_token)
    klass = await node.services.classes.get(demo.class_id)
    teacher = RemoteParticipant(node.base_url)
    room_id = klass.classroom_site_ids[0]
    classroom = RemoteParticipant(node.base_url)
    other_teacher: RemoteParticipant | None = None
    try:
        await teacher.join_token(demo.host_token)
        await expect_frame(teacher.signaling, "session")
        await classroom.join_token(demo.classroom_tokens[room_id])
        await expect_frame(classroom.signaling, "session")

        await classroom.send({"type": "record", "on": True})
        assert (await expect_frame(classroom.signaling, "error"))["code"] == "forbidden"
        status, body, _ = await http(node, "POST", f"/api/v1/sessions/{klass.id}/recording",
                                     token=classroom.signaling.credential, body={"on": True})
        assert status == 403 and body["error"]["code"] == "forbidden"

        status, body, _ = await http(node, "POST", f"/api/v1/sessions/{klass.id}/recording",
                                     token=teacher.signaling.credential, body={"on": True})
        assert status == 200 and body["recording"]["status"] == "recording"
        rec_id = body["recording"]["id"]
        assert body["recording"]["playback_url"] is None
        on = await expect_frame(classroom.signaling, "recording", where=lambda f: f["on"])
        assert on["recording"] == rec_id
        await teacher.send({"type": "record", "on": False})
        await expect_frame(classroom.signaling, "recording", where=lambda f: not f["on"])
        await expect_frame(classroom.signaling, "session", where=lambda f: f["recording"] is False)

        # the library: who sees what
        async def listed(token: str, query: str = "") -> list[str]:
            status, body, _ = await http(node, "GET", f"/api/v1/recordings{query}", token=token)
            assert status == 200, body
            return [r["id"] for r in body["recordings"]]

        assert await listed(operator) == [rec_id]
        assert await listed(teacher.signaling.credential) == [rec_id]
        assert await listed(classroom.signaling.credential) == [rec_id]
        clinic = await credential(node, demo.clinic_token)
        doctor = await credential(node, demo.doctor_token)
        assert await listed(clinic) == [] and await listed(doctor) == []
        assert await listed(operator, "?kind=consult") == []
        assert await listed(operator, f"?subject={klass.subject}&kind=class") == [rec_id]
        today = time.strftime("%Y-%m-%d", time.gmtime())
        assert await listed(operator, f"?from={today}&to={today}") == [rec_id]
        assert await listed(operator, "?to=2001-01-01") == []
        status, body, _ = await http(node, "GET", f"/api/v1/recordings/{rec_id}", token=clinic)
        assert status == 404

        # a class without permission cannot be recorded
        status, scheduled, _ = await http(node, "POST", "/api/v1/classes", token=operator, body={
            "title": "不录的课", "subject": klass.subject, "teacher_id": klass.teacher_id,
            "classroom_site_ids": [room_id], "recording_allowed": False})
        assert status == 201
        await teacher.close()
        other_teacher = RemoteParticipant(node.base_url)
        await other_teacher.join_token(scheduled["host_link"].rsplit("/join/", 1)[1])
        await expect_frame(other_teacher.signaling, "session")
        await other_teacher.send({"type": "record", "on": True})
        assert (await expect_frame(other_teacher.signaling, "error"))["code"] == \
            "recording_not_allowed"
        status, body, _ = await http(
            node, "POST", f"/api/v1/sessions/{scheduled['klass']['id']}/recording",
            token=other_teacher.signaling.credential, body={"on": True})
        assert status == 409 and body["error"]["code"] == "recording_not_allowed"

        # share links: audience "watch", no credential needed, not a playback token
        status, share, _ = await http(node, "POST", f"/api/v1/recordings/{rec_id}/share",
                                      token=classroom.signaling.credential,
                                      body={"expires_in_s": 3600})
        assert status == 200 and share["url"].startswith("/watch/")
        token = share["url"].removeprefix("/watch/")
        status, watched, _ = await http(node, "GET", f"/api/v1/watch/{token}")
        assert status == 200 and watched["id"] == rec_id
        status, _, ctype = await http(node, "GET", share["url"])
        assert status in (200, 404) and (status == 404 or ctype == "text/html")
        status, _, _ = await http(node, "GET", f"/media/recordings/{token}/master.m3u8")
        assert status == 401, "a share token is not a playback token"
        status, _, _ = await http(node, "GET", "/api/v1/recordings", token=token)
        assert status == 401, "nor a credential"
        status, body, _ = await http(node, "GET", f"/api/v1/watch/{operator}")
        assert status == 401, "nor is a credential a share token"

        # malformed bodies get the JSON error shape
        for path, bad in [(f"/api/v1/recordings/{rec_id}/share", {"expires_in_s": 5}),
                          (f"/api/v1/recordings/{rec_id}/share", {"expires": 60}),
                          (f"/api/v1/sessions/{klass.id}/recording", {"on": "yes"})]:
            status, body, ctype = await http(node, "POST", path, token=operator, body=bad)
            assert status == 400 and ctype == "application/json", (path, bad, status)
            assert set(body["error"]) >= {"code", "message"}
        status, body, _ = await http(node, "POST", f"/api/v1/recordings/{rec_id}/share",
                                     token=operator, raw=b"{not json")
        assert status == 400 and "error" in body
        status, body, _ = await http(node, "GET", "/api/v1/recordings?from=yesterday",
                                     token=operator)
        assert status == 400 and body["error"]["code"] == "invalid_query"

        # delete: operator only; the share link dies with it
        status, _, _ = await http(node, "DELETE", f"/api/v1/recordings/{rec_id}",
                                  token=classroom.signaling.credential)
        assert status == 403
        status, _, _ = await http(node, "DELETE", f"/api/v1/recordings/{rec_id}",
                                  token=operator)
        assert status == 204
        status, _, _ = await http(node, "GET", f"/api/v1/watch/{token}")
        assert status == 404
        assert await listed(operator) == []
        assert not (node.services.recordings.storage.work_dir(rec_id)).exists()
    finally:
        await teacher.close()
        await classroom.close()
        if other_teacher is not None:
            await other_teacher.close()


async def test_openapi_lists_the_recording_routes(node) -> None:
    status, doc, _ = await http(node, "GET", "/api/openapi.json")
    assert status == 200
    for path in ("/api/v1/recordings", "/api/v1/recordings/{recording_id}/share",
                 "/api/v1/sessions/{session}/recording", "/api/v1/watch/{token}",
                 "/api/v1/consults/{consult_id}/consent"):
        assert path in doc["paths"], path


async def test_playback_files_need_a_playback_token_and_a_safe_name(node) -> None:
    services = node.services
    recording = await services.recordings.start(
        session="s1", kind="class", title="t", subject="数学", teacher="T", host_id="t1",
        site_ids=(), actor="t1")
    await services.recordings.stop("s1", "t1")
    hls = services.recordings.storage.work_dir(recording.id) / "hls"
    await asyncio.to_thread(hls.mkdir, parents=True)
    (hls / "master.m3u8").write_text("#EXTM3U\n")
    (hls / "low_00000.ts").write_bytes(b"\x47" * 188)
    (hls / "poster.jpg").write_bytes(b"\xff\xd8\xff")
    await services.recordings.finish(recording.id, [])
    token, _ = services.recording_tokens.issue(recording.id, "playback", 60)
    for name, ctype in [("master.m3u8", "application/vnd.apple.mpegurl"),
                        ("low_00000.ts", "video/mp2t"), ("poster.jpg", "image/jpeg")]:
        status, _, got = await http(node, "GET", f"/media/recordings/{token}/{name}")
        assert (status, got) == (200, ctype), name
    for name in ("..%2Fmanifest.json", "..", ".hidden.ts", "tracks", "x.py"):
        status, _, _ = await http(node, "GET", f"/media/recordings/{token}/{name}")
        assert status == 404, name
    status, _, _ = await http(node, "GET", f"/media/recordings/{token}/..%2F..%2Fetc%2Fpasswd")
    assert status == 404
    status, _, _ = await http(node, "GET", "/media/recordings/not-a-token/master.m3u8")
    assert status == 401



async def test_a_recording_left_by_a_stopped_node_is_recovered_once_its_session_is_over(node
                                                                                        ) -> None:
    from broker.models import Actor, Role
    from signaling.recording_control import recover_orphans

    services, demo = node.services, node.demo
    klass = await services.classes.get(demo.class_id)
    hub = node.app[HUB]

    async def left_behind() -> Any:
        return await services.recordings.start(
            session=klass.id, kind="class", title=klass.title, subject=klass.subject,
            teacher="T", host_id=klass.teacher_id, site_ids=(), actor=klass.teacher_id)

    live = await left_behind()
    assert await recover_orphans(services, hub) == [], "its class is still on"
    await services.recordings.stop(klass.id, "t")
    await services.classes.end(klass.id, Actor(klass.teacher_id, Role.TEACHER))
    await asyncio.sleep(0.5)  # the session's end has gone round
    recording = await left_behind()  # as if its node had stopped before the class ended
    assert recording.id != live.id
    tracks = services.recordings.storage.work_dir(recording.id) / "tracks"
    await asyncio.to_thread(tracks.mkdir, parents=True)
    (tracks / "manifest.json").write_text('{"tracks": [], "events": []}')
    assert await recover_orphans(services, hub) == [recording.id]
    after = await services.recordings.get(recording.id)
    assert after.status.value in ("processing", "failed") and after.ended_at is not None
    assert await services.recordings.active(klass.id) is None
    assert await recover_orphans(services, hub) == []
