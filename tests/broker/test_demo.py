"""The demo directory: its shape, its network, and links that work for their roles."""

from __future__ import annotations

import pytest

from broker.audit import AuditLog
from broker.classes import ClassService
from broker.clock import ManualClock
from broker.consults import ConsultService
from broker.demo import DEMO_TOKEN_TTL_S, load_demo
from broker.directory import Directory
from broker.models import ExpertKind, Permission, Role, SiteKind
from broker.store import Store
from broker.tokens import Keyring, TokenService

NOW = 1_700_000_000.0


@pytest.mark.timeout(120)
async def test_demo_loads_a_network_a_ready_class_and_working_links(store: Store) -> None:
    clock = ManualClock(NOW)
    audit = AuditLog(store, clock)
    directory = Directory(store, audit)
    tokens = TokenService(store, Keyring.generate(), clock)
    classes = ClassService(store, directory, tokens, audit, clock)
    consults = ConsultService(store, directory, tokens, audit, clock)
    demo = await load_demo(directory, classes, consults, tokens, NOW)

    counts = {kind: len(await directory.list_sites(kind=kind)) for kind in SiteKind}
    assert counts[SiteKind.VILLAGE_CLINIC] == 280
    assert counts[SiteKind.TOWNSHIP_HEALTH_CENTER] == 14
    assert counts[SiteKind.COUNTY_HOSPITAL] == 1 and counts[SiteKind.PROVINCIAL_HOSPITAL] == 1
    assert counts[SiteKind.CLASSROOM] == 4 and counts[SiteKind.SCHOOL] == 1
    villages = await directory.list_sites(kind=SiteKind.VILLAGE_CLINIC)
    assert all(v.name.endswith("村卫生室") for v in villages)
    assert len(await directory.list_sites(region="甘肃省/定西市/渭源县")) == 280 + 14 + 1 + 4
    chain = await directory.escalation_chain(demo.clinic_site_id)
    assert [s.kind for s in chain] == [
        SiteKind.VILLAGE_CLINIC,
        SiteKind.TOWNSHIP_HEALTH_CENTER,
        SiteKind.COUNTY_HOSPITAL,
        SiteKind.PROVINCIAL_HOSPITAL,
    ]
    doctors = await directory.list_experts(kind=ExpertKind.DOCTOR, on_duty=True)
    assert {s for d in doctors for s in d.specialties} == {"内科", "儿科", "皮肤科", "骨科"}
    assert any(len(d.languages) > 1 for d in doctors)
    teachers = await directory.list_experts(kind=ExpertKind.TEACHER)
    assert len(teachers) == 2

    klass = await classes.get(demo.class_id)
    assert len(klass.classroom_site_ids) == 4
    host = await tokens.verify(demo.host_token, required_role=Role.TEACHER)
    assert host.exp == NOW + DEMO_TOKEN_TTL_S and host.session == demo.class_id
    for token in demo.classroom_tokens.values():
        await tokens.verify(token, required_role=Role.ASSISTANT)
    await tokens.verify(
        demo.clinic_token, required_role=Role.CLINIC, required_perm=Permission.REQUEST_CONSULT
    )
    await tokens.verify(demo.doctor_token, required_role=Role.DOCTOR)
    await tokens.verify(demo.operator_token, required_role=Role.OPERATOR)
    assert len(demo.links) == 1 + 4 + 3
    assert all(path.startswith("/join/") for path in demo.paths().values())

    # The waiting consult reached the provincial internists; the demo doctor sees it.
    assert demo.consult_id is not None
    seen = await consults.tickets_for_expert(demo.doctor_id)
    assert [t.id for t in seen] == [demo.consult_id]

    # Loading again keeps one directory (and does not queue a second demo consult).
    again = await load_demo(directory, classes, consults, tokens, NOW)
    assert len(await directory.list_sites(kind=SiteKind.VILLAGE_CLINIC)) == 280
    assert again.consult_id is None
