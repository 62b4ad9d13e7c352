"""Consult notes and snapshots: readable only by that consult's clinic, its doctor(s) and
operators (every other role is refused, without learning that the consult exists), and erased
with an audit entry once the consult has been closed longer than the retention period (clock
passed in). Memory and Redis stores."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from broker.consult_records import snapshots_map
from broker.consult_state import Outcome
from broker.consults import ConsultRequest
from broker.models import Actor, Role, Urgency
from client.ws import SignalingClient, SignalingError
from signaling.retention import RetentionSweeper, snapshot_folder, sweep_retention
from signaling.routes import is_consult_party

pytestmark = pytest.mark.timeout(120)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 500
NOTE = "patient history: private"


async def ended_consult_with_snapshot(node) -> tuple[str, str]:
    """A consult of the demo clinic, held by the demo doctor, with a snapshot and an end note:
    (consult id, snapshot id)."""
    services, demo = node.services, node.demo
    clinic = Actor(demo.clinic_site_id, Role.CLINIC)
    doctor = Actor(demo.doctor_id, Role.DOCTOR)
    requested = await services.consults.request(
        ConsultRequest(clinic_site_id=demo.clinic_site_id, specialty="内科",
                       urgency=Urgency.URGENT, language="zh", reason="fever"), clinic)
    consult = requested.ticket.id
    await services.consults.claim(consult, doctor)
    await services.consults.admit(consult, doctor)
    async with SignalingClient(node.base_url) as client:
        await client.exchange(demo.doctor_token)
        ref = await client.request("POST", f"/api/v1/consults/{consult}/snapshots", raw=PNG,
                                   content_type="image/png")
    await services.consults.end(consult, doctor, outcome=Outcome.RESOLVED, note=NOTE)
    return consult, ref["id"]


def claims(role: Role, sub: str) -> SimpleNamespace:
    return SimpleNamespace(role=role, sub=sub)


TICKET = SimpleNamespace(clinic_site_id="c-1", expert_id="d-now", previous_expert_ids=("d-old",))


@pytest.mark.parametrize(
    ("role", "sub", "party"),
    [
        (Role.OPERATOR, "op", True),
        (Role.CLINIC, "c-1", True),
        (Role.DOCTOR, "d-now", True),
        (Role.DOCTOR, "d-old", True),
        (Role.CLINIC, "c-2", False),
        (Role.DOCTOR, "d-never", False),
        (Role.TEACHER, "c-1", False),  # a subject equal to the clinic's id is not enough
        (Role.ASSISTANT, "c-1", False),
        (Role.OBSERVER, "d-now", False),
    ],
)
def test_only_the_clinic_its_doctors_and_operators_are_parties(role: Role, sub: str,
                                                               party: bool) -> None:
    assert is_consult_party(claims(role, sub), TICKET) is party


async def test_notes_and_snapshots_are_refused_to_everyone_else(node) -> None:
    services, demo = node.services, node.demo
    consult, snap = await ended_consult_with_snapshot(node)
    paths = [f"/api/v1/consults/{consult}", f"/api/v1/consults/{consult}/snapshots",
             f"/api/v1/consults/{consult}/snapshots/{snap}"]
    outsiders = {
        "teacher": (demo.host_token, "forbidden"),
        "classroom": (demo.classroom_tokens[sorted(demo.classroom_tokens)[0]], "forbidden"),
        "another clinic": (services.tokens.issue(sub="nosy-clinic", role=Role.CLINIC),
                           "not_found"),
        "a doctor of the same specialty who never had it": (
            services.tokens.issue(sub="d-wu", role=Role.DOCTOR), "not_found"),
        "a doctor of another specialty": (
            services.tokens.issue(sub="d-chen", role=Role.DOCTOR), "not_found"),
    }
    for who, (token, refusal) in outsiders.items():
        async with SignalingClient(node.base_url) as outsider:
            await outsider.exchange(token)
            for path in paths:
                with pytest.raises(SignalingError) as refused:
                    await outsider.request("GET", path)
                assert refused.value.code == refusal, (who, path)
            listed = await outsider.request("GET", "/api/v1/consults") \
                if who not in ("teacher", "classroom") else []
            assert all(t["id"] != consult for t in listed), who
    for token in (demo.clinic_token, demo.doctor_token, demo.operator_token):
        async with SignalingClient(node.base_url) as party:
            await party.exchange(token)
            view = await party.request("GET", f"/api/v1/consults/{consult}")
            assert view["ticket"]["note"] == NOTE
            async with party.http.get(f"{node.base_url}/api/v1/consults/{consult}/snapshots/"
                                      f"{snap}", headers={
                                          "Authorization": f"Bearer {party.credential}"}) as r:
                assert r.status == 200 and await r.read() == PNG
                assert r.headers["Cache-Control"] == "private, no-store"


async def test_the_retention_sweep_erases_notes_and_snapshots_and_audits_it(node) -> None:
    services = node.services
    data_dir = Path(services.config.data_dir)
    consult, _snap = await ended_consult_with_snapshot(node)
    retention_s = services.config.consult_retention_days * 86400.0
    records = services.consults.records
    now = services.clock()
    assert await sweep_retention(records, services.audit, data_dir, now + retention_s - 60) == []
    assert snapshot_folder(data_dir, consult).is_dir()
    assert (await services.consults.get(consult)).note == NOTE

    assert await sweep_retention(records, services.audit, data_dir,
                                 now + retention_s + 60) == [consult]
    assert not snapshot_folder(data_dir, consult).exists()
    assert await services.consults.find(consult) is None
    async with SignalingClient(node.base_url) as clinic:
        await clinic.exchange(node.demo.clinic_token)
        with pytest.raises(SignalingError) as gone:
            await clinic.request("GET", f"/api/v1/consults/{consult}/snapshots")
        assert gone.value.code == "not_found"
    audit = await services.audit.read(session=consult, limit=100)
    erased = [e for e in audit.entries if e.action == "retention_erase"]
    assert len(erased) == 1 and erased[0].actor == "system"
    assert erased[0].detail["snapshots"] == 1 and erased[0].detail["files"] == 1
    assert NOTE not in str(erased[0].detail)


async def test_the_node_sweeper_runs_on_its_clock_and_stops_when_asked(node) -> None:
    services = node.services
    consult, _snap = await ended_consult_with_snapshot(node)
    far = services.clock() + 400 * 86400.0
    sweeper = RetentionSweeper(services.consults.records, services.audit,
                               Path(services.config.data_dir), lambda: far, interval_s=0.05)
    sweeper.start()
    try:
        for _ in range(400):
            if await services.consults.find(consult) is None:
                break
            await asyncio.sleep(0.05)
        assert await services.consults.find(consult) is None
    finally:
        await asyncio.wait_for(sweeper.stop(), 10.0)


async def test_old_snapshot_folders_of_consults_gone_from_the_store_are_erased(node) -> None:
    """Consults closed before the retention index existed: their tickets expired, their
    snapshot folders stayed. Erased once older than the period; a young one is kept."""
    services = node.services
    data_dir = Path(services.config.data_dir)
    retention_s = services.config.consult_retention_days * 86400.0
    now = services.clock()
    old, young = snapshot_folder(data_dir, "gone-old"), snapshot_folder(data_dir, "gone-young")
    for folder in (old, young):
        folder.mkdir(parents=True)
        (folder / "a.png").write_bytes(PNG)
    stamp = now - retention_s - 3600
    os.utime(old, (stamp, stamp))
    await services.store.map_set(snapshots_map("gone-old"), "a", b"{}")

    assert await sweep_retention(services.consults.records, services.audit, data_dir,
                                 now) == ["gone-old"]
    assert not old.exists() and young.is_dir()
    assert await services.store.map_all(snapshots_map("gone-old")) == {}
    audit = await services.audit.read(session="gone-old", limit=10)
    assert [(e.action, e.detail.get("orphan"), e.detail.get("files"))
            for e in audit.entries] == [("retention_erase", True, 1)]
