"""What `tongxin bench load` makes through the REST API before anyone joins, as an operator
(a credential signed with the cluster's token secret): a school with classrooms and
teachers, a county hospital with doctors, village clinics; the classes; the consults, each
requested by its clinic through one node and claimed and admitted by its doctor through the
other. The result is the list of participants to simulate, each with its join token and node."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from bench.load_cluster import LocalCluster
from bench.load_crowd import CrowdJob
from broker.memory_store import MemoryStore
from broker.models import Role
from broker.tokens import Keyring, TokenService
from client.ws import split_join_link

HOSPITAL = "bench-hospital"
SCHOOL = "bench-school"
SPECIALTY = "内科"
SUBJECT = "数学"


class ApiFailed(Exception):
    """A REST call answered with an error; `kind` is `setup:<code>`."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class ServiceApi:
    """REST calls with a bearer credential against one node."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, bearer: str) -> None:
        self.http = http
        self.base_url = base_url
        self.bearer = bearer

    def on(self, base_url: str, bearer: str | None = None) -> ServiceApi:
        return ServiceApi(self.http, base_url, bearer or self.bearer)

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(
                method, self.base_url + path, json=body,
                headers={"Authorization": f"Bearer {self.bearer}"},
                timeout=aiohttp.ClientTimeout(total=30)) as resp:
            payload = await resp.json(content_type=None) if resp.content_length != 0 else None
            if resp.status >= 400:
                error = (payload or {}).get("error", {}) if isinstance(payload, dict) else {}
                raise ApiFailed(f"setup:{error.get('code', resp.status)}",
                                f"{method} {path}: {error.get('message', '')}")
            return payload

    async def credential(self, token: str) -> str:
        """A join token exchanged for a session credential on this node."""
        grant = await self.call("POST", "/api/v1/session", {"token": token})
        return str(grant["credential"])


async def make_directory(api: ServiceApi, classes: int, classrooms: int, consults: int) -> None:
    """Sites and experts: a school with its classrooms and teachers, a county hospital with
    one doctor per consult, and one village clinic per consult."""
    await api.call("POST", "/api/v1/sites", {"id": SCHOOL, "name": "基准小学", "kind": "school"})
    await api.call("POST", "/api/v1/sites", {"id": HOSPITAL, "name": "基准县医院",
                                             "kind": "county_hospital"})
    calls = [api.call("POST", "/api/v1/sites", {
        "id": f"bench-room-{c}-{r}", "name": f"基准教学点 {c}-{r}", "kind": "classroom",
        "parent_site_id": SCHOOL}) for c in range(classes) for r in range(classrooms)]
    calls += [api.call("POST", "/api/v1/sites", {
        "id": f"bench-clinic-{m}", "name": f"基准卫生室 {m}", "kind": "village_clinic",
        "parent_site_id": HOSPITAL}) for m in range(consults)]
    calls += [api.call("POST", "/api/v1/experts", {
        "id": f"bench-teacher-{c}", "name": f"基准老师 {c}", "kind": "teacher",
        "specialties": [SUBJECT], "site_id": SCHOOL}) for c in range(classes)]
    calls += [api.call("POST", "/api/v1/experts", {
        "id": f"bench-doctor-{m}", "name": f"基准医生 {m}", "kind": "doctor",
        "specialties": [SPECIALTY], "on_duty": True, "capacity": 2, "site_id": HOSPITAL})
        for m in range(consults)]
    await asyncio.gather(*calls)


async def schedule_class(api: ServiceApi, c: int, classrooms: int) -> tuple[str, list[str]]:
    """(class id, [teacher's token, classrooms' tokens…])."""
    view = await api.call("POST", "/api/v1/classes", {
        "title": f"基准课 {c}", "subject": SUBJECT, "teacher_id": f"bench-teacher-{c}",
        "classroom_site_ids": [f"bench-room-{c}-{r}" for r in range(classrooms)]})
    tokens = [split_join_link(view["host_link"])[1]]
    tokens += [split_join_link(link)[1] for link in view["classroom_links"].values()]
    return str(view["klass"]["id"]), tokens


async def open_consult(api: ServiceApi, clinic_url: str, doctor_url: str,
                       m: int) -> tuple[str, str, str]:
    """A clinic requests through one node, its doctor claims and admits through the other:
    (consult id, clinic token, doctor token)."""
    clinic_token = (await api.call("POST", "/api/v1/tokens", {
        "sub": f"bench-clinic-{m}", "role": "clinic", "name": f"基准卫生室 {m}"}))["token"]
    doctor_token = (await api.call("POST", "/api/v1/tokens", {
        "sub": f"bench-doctor-{m}", "role": "doctor", "name": f"基准医生 {m}"}))["token"]
    clinic = api.on(clinic_url, await api.on(clinic_url).credential(clinic_token))
    doctor = api.on(doctor_url, await api.on(doctor_url).credential(doctor_token))
    view = await clinic.call("POST", "/api/v1/consults", {
        "specialty": SPECIALTY, "urgency": "routine", "reason": "基准负载测试"})
    consult = str(view["ticket"]["id"])
    await doctor.call("POST", f"/api/v1/consults/{consult}/claim")
    await doctor.call("POST", f"/api/v1/consults/{consult}/admit")
    return consult, clinic_token, doctor_token


async def prepare(cluster: LocalCluster, args: argparse.Namespace,
                  progress: Callable[[str], None]) -> tuple[list[CrowdJob], int]:
    """Directory, classes and consults: (the participants' jobs in joining order, sessions)."""
    urls = [n.url for n in cluster.nodes]
    operator = TokenService(MemoryStore(), Keyring.from_spec(f"k1:{cluster.token_secret}"),
                            time.time).issue(sub="bench-operator", role=Role.OPERATOR,
                                             name="基准运维")
    jobs: list[CrowdJob] = []

    def add(label: str, session: str, token: str, enter: bool = False,
            node: int | None = None) -> None:
        i = len(jobs) if node is None else node
        jobs.append(CrowdJob(label=label, session=session, base_url=urls[i % 2],
                             fallback_url=urls[(i + 1) % 2], token=token, enter=enter,
                             start_delay_s=len(jobs) * args.ramp))

    async with aiohttp.ClientSession() as http:
        api = ServiceApi(http, urls[0], operator)
        await make_directory(api, args.classes, args.classrooms, args.consults)
        progress(f"directory ready; scheduling {args.classes} classes, opening "
                 f"{args.consults} consults")
        classes = await asyncio.gather(*(
            schedule_class(api.on(urls[c % 2]), c, args.classrooms)
            for c in range(args.classes)))
        consults = await asyncio.gather(*(
            open_consult(api, urls[m % 2], urls[(m + 1) % 2], m)
            for m in range(args.consults)))
    for c, (class_id, tokens) in enumerate(classes):
        for r, token in enumerate(tokens):
            add(f"class-{c}/{'teacher' if r == 0 else f'classroom-{r}'}", class_id, token)
    for m, (consult, clinic_token, doctor_token) in enumerate(consults):
        add(f"consult-{m}/clinic", consult, clinic_token, enter=True, node=m)
        add(f"consult-{m}/doctor", consult, doctor_token, enter=True, node=m + 1)
    return jobs, len(classes) + len(consults)
