"""The directory: sites, experts, operators, filters, the on-duty index, the escalation chain."""

from __future__ import annotations

import msgspec
import pytest

from broker.audit import AuditAction, AuditLog
from broker.clock import ManualClock
from broker.directory import Directory
from broker.errors import Conflict, InvalidInput, NotFound
from broker.models import Expert, ExpertKind, Operator, Site, SiteKind
from broker.store import Store

GANSU = ("甘肃省",)
WEIYUAN = ("甘肃省", "定西市", "渭源县")


def network() -> list[Site]:
    return [
        Site(
            id="prov",
            name="甘肃省人民医院",
            kind=SiteKind.PROVINCIAL_HOSPITAL,
            region=("甘肃省", "兰州市"),
        ),
        Site(
            id="city",
            name="定西市人民医院",
            kind=SiteKind.CITY_HOSPITAL,
            region=("甘肃省", "定西市"),
            parent_site_id="prov",
        ),
        Site(
            id="county",
            name="渭源县人民医院",
            kind=SiteKind.COUNTY_HOSPITAL,
            region=WEIYUAN,
            parent_site_id="city",
        ),
        Site(
            id="th1",
            name="清源镇卫生院",
            kind=SiteKind.TOWNSHIP_HEALTH_CENTER,
            region=(*WEIYUAN, "清源镇"),
            parent_site_id="county",
        ),
        Site(
            id="v1",
            name="王家沟村卫生室",
            kind=SiteKind.VILLAGE_CLINIC,
            region=(*WEIYUAN, "清源镇", "王家沟村"),
            parent_site_id="th1",
        ),
        Site(
            id="school",
            name="定西市第一实验小学",
            kind=SiteKind.SCHOOL,
            region=("甘肃省", "定西市"),
        ),
        Site(
            id="room1",
            name="王家沟教学点",
            kind=SiteKind.CLASSROOM,
            region=(*WEIYUAN, "清源镇", "王家沟村"),
            parent_site_id="school",
        ),
    ]


def doctor(eid: str, **changes: object) -> Expert:
    base = Expert(
        id=eid,
        name=f"医生{eid}",
        kind=ExpertKind.DOCTOR,
        specialties=("内科",),
        on_duty=True,
        site_id="prov",
        capacity=2,
    )
    return msgspec.structs.replace(base, **changes)


@pytest.fixture
async def directory(store: Store) -> Directory:
    directory = Directory(store, AuditLog(store, ManualClock()))
    for site in network():
        await directory.put_site(site)
    return directory


async def test_escalation_chain_climbs_the_medical_network(directory: Directory) -> None:
    chain = await directory.escalation_chain("v1")
    assert [s.id for s in chain] == ["v1", "th1", "county", "city", "prov"]
    assert [s.id for s in await directory.escalation_chain("prov")] == ["prov"]
    with pytest.raises(NotFound):
        await directory.escalation_chain("nowhere")


@pytest.mark.parametrize(
    ("case", "site", "message"),
    [
        (
            "unknown parent",
            Site(id="x", name="x", kind=SiteKind.VILLAGE_CLINIC, parent_site_id="nope"),
            "does not exist",
        ),
        (
            "own parent",
            Site(id="x", name="x", kind=SiteKind.VILLAGE_CLINIC, parent_site_id="x"),
            "own parent",
        ),
        (
            "parent lower in the network",
            Site(id="x", name="x", kind=SiteKind.COUNTY_HOSPITAL, parent_site_id="th1"),
            "higher level",
        ),
        (
            "same level",
            Site(id="x", name="x", kind=SiteKind.VILLAGE_CLINIC, parent_site_id="v1"),
            "higher level",
        ),
        (
            "clinic under a school",
            Site(id="x", name="x", kind=SiteKind.VILLAGE_CLINIC, parent_site_id="school"),
            "higher level",
        ),
        (
            "classroom under a hospital",
            Site(id="x", name="x", kind=SiteKind.CLASSROOM, parent_site_id="county"),
            "school",
        ),
        ("id with a colon", Site(id="a:b", name="x", kind=SiteKind.SCHOOL), "id"),
        ("empty name", Site(id="x", name="", kind=SiteKind.SCHOOL), "name"),
        (
            "region too deep",
            Site(id="x", name="x", kind=SiteKind.SCHOOL, region=("a",) * 6),
            "region",
        ),
    ],
)
async def test_put_site_refuses_inconsistent_sites(
    directory: Directory, case: str, site: Site, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        await directory.put_site(site)


async def test_put_site_refuses_a_loop(directory: Directory) -> None:
    # Make the provincial hospital a child of... nothing higher exists, so try a school loop.
    await directory.put_site(
        Site(id="s2", name="s2", kind=SiteKind.SCHOOL, parent_site_id="school")
    )
    with pytest.raises(InvalidInput, match="loop"):
        await directory.put_site(
            Site(id="school", name="s", kind=SiteKind.SCHOOL, parent_site_id="s2")
        )


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["city", "county", "prov", "room1", "school", "th1", "v1"]),
        ({"kind": SiteKind.VILLAGE_CLINIC}, ["v1"]),
        ({"region": "甘肃省/定西市/渭源县"}, ["county", "room1", "th1", "v1"]),
        ({"region": ["甘肃省", "定西市"]}, ["city", "county", "room1", "school", "th1", "v1"]),
        ({"region": "甘肃省/兰州市"}, ["prov"]),
        ({"region": "四川省"}, []),
        ({"parent_site_id": "county"}, ["th1"]),
        ({"kind": SiteKind.CLASSROOM, "region": "甘肃省/定西市/渭源县"}, ["room1"]),
    ],
)
async def test_list_sites_filters(
    directory: Directory, filters: dict[str, object], expected: list[str]
) -> None:
    assert [s.id for s in await directory.list_sites(**filters)] == expected  # type: ignore[arg-type]


async def test_experts_crud_and_filters(directory: Directory) -> None:
    await directory.put_expert(doctor("d1", specialties=("内科", "儿科")))
    await directory.put_expert(doctor("d2", on_duty=False, site_id="county"))
    await directory.put_expert(
        Expert(
            id="t1", name="王老师", kind=ExpertKind.TEACHER, specialties=("数学",), site_id="school"
        )
    )
    assert (await directory.get_expert("d1")).specialties == ("内科", "儿科")
    cases = [
        ({}, ["d1", "d2", "t1"]),
        ({"kind": ExpertKind.TEACHER}, ["t1"]),
        ({"specialty": "儿科"}, ["d1"]),
        ({"specialty": "数学"}, ["t1"]),
        ({"on_duty": True}, ["d1"]),
        ({"on_duty": False}, ["d2", "t1"]),
        ({"site_id": "county"}, ["d2"]),
        ({"region": "甘肃省/定西市/渭源县"}, ["d2"]),
        ({"region": "甘肃省"}, ["d1", "d2", "t1"]),
    ]
    for filters, expected in cases:
        assert [e.id for e in await directory.list_experts(**filters)] == expected, filters  # type: ignore[arg-type]
    await directory.delete_expert("d2")
    with pytest.raises(NotFound):
        await directory.get_expert("d2")
    with pytest.raises(NotFound):
        await directory.delete_expert("d2")


@pytest.mark.parametrize(
    ("case", "expert", "message"),
    [
        ("unknown site", doctor("d", site_id="nope"), "does not exist"),
        ("on duty without specialty", doctor("d", specialties=()), "specialty"),
        ("zero capacity", doctor("d", capacity=0), "capacity"),
        ("bad language", doctor("d", languages=("Chinese!",)), "languages"),
        ("no language", doctor("d", languages=()), "languages"),
        ("specialty with colon", doctor("d", specialties=("a:b",)), "specialties"),
    ],
)
async def test_put_expert_refuses_invalid_experts(
    directory: Directory, case: str, expert: Expert, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        await directory.put_expert(expert)


async def test_on_duty_index_follows_every_change(directory: Directory) -> None:
    await directory.put_expert(doctor("d1", specialties=("内科", "儿科")))
    assert [e.id for e in await directory.on_duty_doctors("内科", "prov")] == ["d1"]
    assert [e.id for e in await directory.on_duty_doctors("儿科", "prov")] == ["d1"]
    await directory.set_on_duty("d1", False)
    assert await directory.on_duty_doctors("内科", "prov") == []
    assert not (await directory.get_expert("d1")).on_duty
    await directory.set_on_duty("d1", True)
    assert [e.id for e in await directory.on_duty_doctors("内科", "prov")] == ["d1"]
    # A change of specialties and site moves the entries.
    await directory.put_expert(doctor("d1", specialties=("骨科",), site_id="county", capacity=5))
    assert await directory.on_duty_doctors("内科", "prov") == []
    assert await directory.on_duty_doctors("儿科", "prov") == []
    moved = await directory.on_duty_doctors("骨科", "county")
    assert [(e.id, e.capacity) for e in moved] == [("d1", 5)]
    await directory.delete_expert("d1")
    assert await directory.on_duty_doctors("骨科", "county") == []


async def test_teachers_are_not_in_the_doctors_index(directory: Directory) -> None:
    await directory.put_expert(
        Expert(
            id="t1",
            name="t",
            kind=ExpertKind.TEACHER,
            specialties=("内科",),
            on_duty=True,
            site_id="prov",
        )
    )
    assert await directory.on_duty_doctors("内科", "prov") == []


async def test_delete_site_refuses_while_referenced(directory: Directory) -> None:
    with pytest.raises(Conflict, match="parent"):
        await directory.delete_site("th1")
    await directory.put_expert(doctor("d1", site_id="v1"))
    with pytest.raises(Conflict, match="experts"):
        await directory.delete_site("v1")
    await directory.delete_expert("d1")
    await directory.delete_site("v1")
    with pytest.raises(NotFound):
        await directory.get_site("v1")


async def test_operators_crud(directory: Directory) -> None:
    await directory.put_operator(Operator(id="op1", name="渭源县卫健局", region=WEIYUAN))
    assert (await directory.get_operator("op1")).region == WEIYUAN
    assert [o.id for o in await directory.list_operators()] == ["op1"]
    await directory.delete_operator("op1")
    with pytest.raises(NotFound):
        await directory.get_operator("op1")
    with pytest.raises(NotFound):
        await directory.delete_operator("op1")
    with pytest.raises(InvalidInput):
        await directory.put_operator(Operator(id="", name="x"))


async def test_changes_are_audited(store: Store) -> None:
    audit = AuditLog(store, ManualClock())
    directory = Directory(store, audit)
    await directory.put_site(network()[0], actor="op1")
    await directory.put_expert(doctor("d1"), actor="op1")
    await directory.set_on_duty("d1", False, actor="d1")
    entries = (await audit.read()).entries
    assert [(e.actor, e.action, e.detail) for e in entries] == [
        ("op1", AuditAction.DIRECTORY_CHANGE, {"change": "site", "id": "prov"}),
        ("op1", AuditAction.DIRECTORY_CHANGE, {"change": "expert", "id": "d1"}),
        ("d1", AuditAction.DUTY_CHANGE, {"expert": "d1", "on_duty": False}),
    ]
