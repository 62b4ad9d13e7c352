"""The demo directory `tongxin serve` loads (unless --no-demo): a city school with two teachers
and four rural classrooms (教学点) in 渭源县, a provincial hospital with doctors of four
specialties, a county hospital, 14 township health centers (卫生院) and 280 village clinics
(村卫生室) forming the medical network, an operator, one ready class and one waiting consult,
with join tokens valid for 7 days. Ids are fixed, so loading twice updates rather than
duplicates the directory (a second ready class is scheduled)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable

from msgspec import Struct

from broker.classes import ClassService
from broker.consults import ConsultRequest, ConsultService
from broker.directory import Directory
from broker.models import Actor, Expert, ExpertKind, Operator, Role, Site, SiteKind, Urgency
from broker.tokens import TokenService

DEMO_TOKEN_TTL_S = 7 * 24 * 3600.0
LOAD_CONCURRENCY = 32
"""Directory writes in flight at once (keeps a Redis load quick without flooding it)."""

PROVINCE, CITY, COUNTY = "甘肃省", "定西市", "渭源县"
WEIYUAN = (PROVINCE, CITY, COUNTY)
TOWNSHIPS = (
    "清源镇", "莲峰镇", "会川镇", "五竹镇", "路园镇", "北寨镇", "新寨镇",
    "麻家集镇", "锹峪镇", "峡城乡", "田家河乡", "祁家庙镇", "上湾镇", "庆坪镇",
)  # fmt: skip
VILLAGES_PER_TOWNSHIP = 20
_SURNAMES = "王李张刘陈杨赵黄周吴徐孙马朱胡郭何高罗郑"
_PLACES = ("沟", "湾", "庄", "坪", "岔", "川", "河", "坡", "台", "岭", "咀", "寨", "营", "堡")

SCHOOL_ID = "dx-school-1"
PROVINCIAL_ID = "gs-provincial-hospital"
COUNTY_ID = "wy-county-hospital"
OPERATOR_ID = "op-weiyuan"
CLINIC_ID = "wy-vc-01-01"
DOCTOR_ID = "d-zhang"
TEACHER_ID = "t-wang"


class DemoLink(Struct, frozen=True):
    """One ready join link to print."""

    label: str
    """Who it is for, e.g. 教学点 1 (assistant)."""
    role: Role
    token: str

    @property
    def path(self) -> str:
        return f"/join/{self.token}"


class DemoLinks(Struct, frozen=True, kw_only=True):
    """What the demo made ready: the class, its links, a clinic's, a doctor's, an operator's."""

    class_id: str
    host_token: str
    classroom_tokens: dict[str, str]
    """Classroom site id -> token."""
    clinic_site_id: str
    clinic_token: str
    doctor_id: str
    doctor_token: str
    operator_id: str
    operator_token: str
    consult_id: str | None
    """A routine consult waiting in the doctors' queue (None when one was already waiting)."""
    links: list[DemoLink]
    """Every link above, labelled, in the order to print."""

    def paths(self) -> dict[str, str]:
        """Label -> `/join/<token>`, for the start-up banner."""
        return {link.label: link.path for link in self.links}


def village_name(township: int, village: int) -> str:
    """A generated village name, unique within its township (e.g. 王家沟村)."""
    return (
        f"{_SURNAMES[village % len(_SURNAMES)]}家{_PLACES[(village + township) % len(_PLACES)]}村"
    )


def demo_sites() -> list[list[Site]]:
    """The demo's sites in loading waves (each wave's parents are in earlier waves)."""
    school = Site(
        id=SCHOOL_ID,
        name="定西市第一实验小学",
        kind=SiteKind.SCHOOL,
        region=(PROVINCE, CITY, "安定区"),
    )
    classrooms = [
        Site(
            id=f"wy-room-{n + 1}",
            name=f"{TOWNSHIPS[9 + n % 2]}{village_name(9 + n % 2, n)}教学点",
            kind=SiteKind.CLASSROOM,
            region=(*WEIYUAN, TOWNSHIPS[9 + n % 2], village_name(9 + n % 2, n)),
            parent_site_id=SCHOOL_ID,
        )
        for n in range(4)
    ]
    provincial = Site(
        id=PROVINCIAL_ID,
        name="甘肃省人民医院",
        kind=SiteKind.PROVINCIAL_HOSPITAL,
        region=(PROVINCE, "兰州市", "城关区"),
    )
    county = Site(
        id=COUNTY_ID,
        name="渭源县人民医院",
        kind=SiteKind.COUNTY_HOSPITAL,
        region=WEIYUAN,
        parent_site_id=PROVINCIAL_ID,
    )
    townships = [
        Site(
            id=f"wy-th-{t + 1:02d}",
            name=f"{name}卫生院",
            kind=SiteKind.TOWNSHIP_HEALTH_CENTER,
            region=(*WEIYUAN, name),
            parent_site_id=COUNTY_ID,
        )
        for t, name in enumerate(TOWNSHIPS)
    ]
    villages = [
        Site(
            id=f"wy-vc-{t + 1:02d}-{v + 1:02d}",
            name=f"{TOWNSHIPS[t]}{village_name(t, v)}卫生室",
            kind=SiteKind.VILLAGE_CLINIC,
            region=(*WEIYUAN, TOWNSHIPS[t], village_name(t, v)),
            parent_site_id=f"wy-th-{t + 1:02d}",
        )
        for t in range(len(TOWNSHIPS))
        for v in range(VILLAGES_PER_TOWNSHIP)
    ]
    return [[school, provincial], [*classrooms, county], townships, villages]


def demo_experts() -> list[Expert]:
    teachers = [
        Expert(
            id=TEACHER_ID,
            name="王老师",
            kind=ExpertKind.TEACHER,
            specialties=("数学",),
            site_id=SCHOOL_ID,
        ),
        Expert(
            id="t-li",
            name="李老师",
            kind=ExpertKind.TEACHER,
            specialties=("英语",),
            languages=("zh", "en"),
            site_id=SCHOOL_ID,
        ),
    ]
    doctors = [
        (DOCTOR_ID, "张医生", "内科", ("zh",)),
        ("d-wu", "吴医生", "内科", ("zh", "ug")),
        ("d-zhaxi", "扎西医生", "儿科", ("zh", "bo")),
        ("d-sun", "孙医生", "儿科", ("zh",)),
        ("d-chen", "陈医生", "皮肤科", ("zh",)),
        ("d-liu", "刘医生", "骨科", ("zh",)),
    ]
    return teachers + [
        Expert(
            id=eid,
            name=name,
            kind=ExpertKind.DOCTOR,
            specialties=(specialty,),
            languages=languages,
            capacity=2,
            on_duty=True,
            site_id=PROVINCIAL_ID,
        )
        for eid, name, specialty, languages in doctors
    ]


async def _bounded(jobs: Iterable[Awaitable[object]]) -> None:
    gate = asyncio.Semaphore(LOAD_CONCURRENCY)

    async def run(job: Awaitable[object]) -> None:
        async with gate:
            await job

    await asyncio.gather(*(run(job) for job in jobs))


async def load_demo(
    directory: Directory,
    classes: ClassService,
    consults: ConsultService,
    tokens: TokenService,
    now: float,
) -> DemoLinks:
    """Load the demo directory, schedule a class starting `now`, queue one consult, and
    return ready join links (see the module docstring)."""
    for wave in demo_sites():
        await _bounded(directory.put_site(site, actor="demo") for site in wave)
    await _bounded(directory.put_expert(e, actor="demo") for e in demo_experts())
    operator = await directory.put_operator(
        Operator(id=OPERATOR_ID, name="渭源县卫生健康局 值班员", region=WEIYUAN), actor="demo"
    )
    staff = Actor(OPERATOR_ID, Role.OPERATOR)
    rooms = [f"wy-room-{n + 1}" for n in range(4)]
    scheduled = await classes.schedule(
        title="四年级数学：分数的初步认识",
        subject="数学",
        teacher_id=TEACHER_ID,
        starts_at=now,
        classroom_site_ids=rooms,
        actor=staff,
        recording_allowed=True,
        token_ttl_s=DEMO_TOKEN_TTL_S,
    )
    clinic = await directory.get_site(CLINIC_ID)
    doctor = await directory.get_expert(DOCTOR_ID)
    clinic_token = tokens.issue(
        sub=clinic.id, role=Role.CLINIC, ttl_s=DEMO_TOKEN_TTL_S, name=clinic.name
    )
    doctor_token = tokens.issue(
        sub=doctor.id, role=Role.DOCTOR, ttl_s=DEMO_TOKEN_TTL_S, name=doctor.name
    )
    operator_token = tokens.issue(
        sub=operator.id, role=Role.OPERATOR, ttl_s=DEMO_TOKEN_TTL_S, name=operator.name
    )
    consult_id = await _queue_demo_consult(consults)

    teacher_name = (await directory.get_expert(TEACHER_ID)).name
    sites = {s.id: s for s in await asyncio.gather(*(directory.get_site(r) for r in rooms))}
    links = [DemoLink(f"教师 {teacher_name}（主讲）", Role.TEACHER, scheduled.host_token)]
    links += [
        DemoLink(f"教学点 {n + 1} {sites[r].name}", Role.ASSISTANT, scheduled.classroom_tokens[r])
        for n, r in enumerate(rooms)
    ]
    links += [
        DemoLink(f"村卫生室 {clinic.name}", Role.CLINIC, clinic_token),
        DemoLink(f"医生 {doctor.name}（内科）", Role.DOCTOR, doctor_token),
        DemoLink(f"运维 {operator.name}", Role.OPERATOR, operator_token),
    ]
    return DemoLinks(
        class_id=scheduled.klass.id,
        host_token=scheduled.host_token,
        classroom_tokens=scheduled.classroom_tokens,
        clinic_site_id=clinic.id,
        clinic_token=clinic_token,
        doctor_id=doctor.id,
        doctor_token=doctor_token,
        operator_id=operator.id,
        operator_token=operator_token,
        consult_id=consult_id,
        links=links,
    )


async def _queue_demo_consult(consults: ConsultService) -> str | None:
    """One routine 内科 request from another village, so the doctor's console is not empty."""
    asking = "wy-vc-02-03"
    if await consults.list_open(clinic_site_id=asking):
        return None
    requested = await consults.request(
        ConsultRequest(
            clinic_site_id=asking,
            specialty="内科",
            urgency=Urgency.ROUTINE,
            reason="老人咳嗽两周，夜间加重，想请上级医生看看。",
        ),
        Actor(asking, Role.CLINIC),
    )
    return requested.ticket.id
