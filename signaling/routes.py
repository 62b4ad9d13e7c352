"""The REST API under /api/v1: each route a thin call into the broker services.

Routes are declared on one `ApiRoutes` table (signaling/api.py) with their request and
response types, which also generates /api/openapi.json. Authentication is a bearer session
credential (POST /api/v1/session) or, for API clients, a join token; roles are checked per
route and again by the services for what concerns a particular session.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
from aiohttp import web
from msgspec import Meta, Struct

from broker.audit import AuditAction, AuditPage
from broker.class_state import ClassSession, ClassState
from broker.consult_records import snapshots_map
from broker.consult_state import ConsultState, ConsultTicket, Outcome
from broker.consults import ConsultRequest
from broker.errors import Forbidden, NotFound, Unauthorized
from broker.models import (
    Actor,
    EntityId,
    Expert,
    ExpertKind,
    Language,
    Role,
    Site,
    SiteKind,
    Skill,
    Urgency,
)
from signaling import messages as m
from signaling.api import ApiRoutes, Call, RouteSpec
from signaling.appkeys import CONFIG, HUB, SERVICES
from signaling.http_errors import ApiError
from signaling.ratelimit import RateLimiter
from signaling.retention import snapshot_folder
from signaling.services import Services, SessionGrant
from signaling.session_view import SessionView

api = ApiRoutes()
TOKEN_LIMITER = web.AppKey("token_limiter", RateLimiter)
"""Requests per credential (on top of the per-address limit in signaling/middleware.py)."""
OPERATOR = {"operator"}
ANY_ROLE = {r.value for r in Role}
MAX_SNAPSHOT_BYTES = 8 * 1024 * 1024
MAX_NETCHECK_BYTES = 2 * 1024 * 1024
SPECIALTY_NAMES_EN = {
    "内科": "Internal medicine", "儿科": "Pediatrics", "皮肤科": "Dermatology",
    "骨科": "Orthopedics", "外科": "Surgery", "妇产科": "Obstetrics and gynecology",
    "眼科": "Ophthalmology", "中医科": "Traditional Chinese medicine",
    "急诊科": "Emergency medicine", "心内科": "Cardiology", "全科": "General practice",
}


def services_of(call: Call[Any]) -> Services:
    return call.request.app[SERVICES]


def actor_of(call: Call[Any]) -> Actor:
    return call.claims.actor  # type: ignore[no-any-return]


# --- request and response bodies ---------------------------------------------------------------
class ExchangeBody(Struct, forbid_unknown_fields=True):
    token: Annotated[str, Meta(min_length=10, max_length=4096)]
    """The join link's token (the part after /join/)."""


class ConsultBody(Struct, forbid_unknown_fields=True):
    specialty: Skill
    reason: Annotated[str, Meta(min_length=1, max_length=500)]
    urgency: Urgency = Urgency.ROUTINE
    language: Language = "zh"


class WaitingRoomView(Struct):
    ticket: ConsultTicket
    position: int | None
    """0-based place in its queue; None once taken or closed."""
    estimated_wait_s: float | None


class DutyBody(Struct, forbid_unknown_fields=True):
    on_duty: bool


class HandOverBody(Struct, forbid_unknown_fields=True):
    expert: EntityId
    note: Annotated[str, Meta(max_length=2000)] = ""


class EndBody(Struct, forbid_unknown_fields=True):
    outcome: Outcome = Outcome.RESOLVED
    note: Annotated[str, Meta(max_length=2000)] = ""


class ScheduleBody(Struct, forbid_unknown_fields=True):
    title: Annotated[str, Meta(min_length=1, max_length=200)]
    subject: Skill
    teacher_id: EntityId
    classroom_site_ids: Annotated[list[EntityId], Meta(min_length=1, max_length=32)]
    starts_at: float | None = None
    duration_s: Annotated[float, Meta(gt=0, le=8 * 3600)] = 45 * 60.0
    recording_allowed: bool = False


class ScheduledView(Struct):
    klass: ClassSession
    host_link: str
    classroom_links: dict[str, str]


class RevokeBody(Struct, forbid_unknown_fields=True):
    jti: Annotated[str, Meta(min_length=1, max_length=64)]
    until_exp: float | None = None


class IssueBody(Struct, forbid_unknown_fields=True):
    sub: EntityId
    role: Role
    session: EntityId | None = None
    ttl_s: Annotated[float, Meta(gt=0, le=30 * 24 * 3600)] = 24 * 3600.0
    single_use: bool = False
    name: Annotated[str, Meta(max_length=100)] = ""


class IssuedLink(Struct):
    token: str
    link: str


class Specialty(Struct):
    id: str
    name_zh: str
    name_en: str


class SnapshotRef(Struct):
    id: str
    url: str
    bytes: int
    taken_at: float


# --- session credential -------------------------------------------------------------------------
@api.route("POST", "/api/v1/session", summary="Exchange a join link's token for a session "
           "credential", tag="session", request=ExchangeBody, response=SessionGrant)
async def exchange_token(call: Call[ExchangeBody]) -> SessionGrant:
    return await services_of(call).exchange(call.body.token)


@api.route("GET", "/api/v1/me", summary="Who the credential belongs to", tag="session",
           roles=ANY_ROLE, response=SessionGrant)
async def me(call: Call[None]) -> dict[str, Any]:
    claims = call.claims
    session = await services_of(call).describe_session(claims.session)
    return {"credential": "", "expires_at": claims.exp,
            "participant": {"id": claims.sub, "role": claims.role.value,
                            "name": claims.name or claims.sub},
            "permissions": [p.value for p in claims.perms], "session": session,
            "home": claims.role.value if claims.role is not Role.ASSISTANT else "classroom"}


@api.route("GET", "/api/v1/netcheck", summary="Random bytes for the join page's network check",
           tag="session", query={"bytes": "how many (<= 2 MiB)"})
async def netcheck(call: Call[None]) -> web.Response:
    size = call.query_int("bytes", 65536, 0, MAX_NETCHECK_BYTES)
    return web.Response(body=os.urandom(size), content_type="application/octet-stream",
                        headers={"Cache-Control": "no-store"})


# --- directory ----------------------------------------------------------------------------------
Entry = TypeVar("Entry", Expert, Site)


async def save_entry(call: Call[Entry], kind: str,
                     find: Callable[[str], Awaitable[Entry | None]],
                     put: Callable[..., Awaitable[Entry]], *,
                     path_param: str | None = None) -> Entry:
    """Add a directory entry (`path_param` None: 409 when its id exists) or change the one the
    path names (the body's id must match it), as the caller."""
    body = call.body
    if path_param is None:
        if await find(body.id) is not None:
            raise ApiError(409, "conflict", f"{kind} {body.id} exists; use PUT to change it")
    elif body.id != call.param(path_param):
        raise ApiError(400, "invalid_input", "the body's id must match the path")
    return await put(body, actor=call.claims.sub)


def declare_entry_routes(entry: type[Entry], a_kind: str, plural: str, id_param: str) -> None:
    """POST /api/v1/<plural> (add) and PUT /api/v1/<plural>/{<id_param>} (change) for one kind
    of directory entry (operators only); the handlers are named add_<kind> and put_<kind>."""
    kind = a_kind.split()[-1]

    def directory_calls(call: Call[Entry]) -> tuple[Any, Any]:
        directory = services_of(call).directory
        return getattr(directory, f"find_{kind}"), getattr(directory, f"put_{kind}")

    async def add(call: Call[Entry]) -> Entry:
        return await save_entry(call, kind, *directory_calls(call))

    async def change(call: Call[Entry]) -> Entry:
        return await save_entry(call, kind, *directory_calls(call), path_param=id_param)

    add.__name__, change.__name__ = f"add_{kind}", f"put_{kind}"
    api.route("POST", f"/api/v1/{plural}", summary=f"Add {a_kind}", tag="directory",
              roles=OPERATOR, request=entry, response=entry, status=201)(add)
    api.route("PUT", f"/api/v1/{plural}/{{{id_param}}}", summary=f"Change {a_kind}",
              tag="directory", roles=OPERATOR, request=entry, response=entry)(change)


@api.route("GET", "/api/v1/specialties", summary="Specialties with doctors in the directory",
           tag="directory", response=list[Specialty])
async def list_specialties(call: Call[None]) -> list[Specialty]:
    doctors = await services_of(call).directory.list_experts(kind=ExpertKind.DOCTOR)
    names = sorted({s for d in doctors for s in d.specialties})
    return [Specialty(id=n, name_zh=n, name_en=SPECIALTY_NAMES_EN.get(n, n)) for n in names]


@api.route("GET", "/api/v1/experts", summary="List experts", tag="directory", roles=OPERATOR,
           response=list[Expert], query={"kind": "teacher|doctor", "on_duty": "true|false"})
async def list_experts(call: Call[None]) -> list[Expert]:
    kind = call.query("kind")
    on_duty = call.query("on_duty")
    return await services_of(call).directory.list_experts(
        kind=ExpertKind(kind) if kind in ("teacher", "doctor") else None,
        on_duty=None if on_duty is None else on_duty == "true",
    )


declare_entry_routes(Expert, "an expert", "experts", "expert_id")


@api.route("POST", "/api/v1/experts/{expert_id}/duty", summary="Go on or off duty",
           tag="directory", roles={"doctor", "operator"}, request=DutyBody, response=Expert)
async def set_duty(call: Call[DutyBody]) -> Expert:
    expert_id = call.param("expert_id")
    if call.claims.role is Role.DOCTOR and call.claims.sub != expert_id:
        raise Forbidden("a doctor may change only their own duty")
    return await services_of(call).directory.set_on_duty(expert_id, call.body.on_duty,
                                                         actor=call.claims.sub)


class Colleague(Struct):
    """What a doctor may see of another doctor: enough to hand a consult over."""

    id: str
    name: str
    specialties: list[str]
    on_duty: bool


@api.route("GET", "/api/v1/colleagues", summary="The doctors of the directory, with their duty "
           "(hand-over targets; the caller's own entry tells their duty)", tag="directory",
           roles={"doctor", "operator"}, response=list[Colleague])
async def list_colleagues(call: Call[None]) -> list[Colleague]:
    doctors = await services_of(call).directory.list_experts(kind=ExpertKind.DOCTOR)
    return [Colleague(id=d.id, name=d.name, specialties=list(d.specialties), on_duty=d.on_duty)
            for d in doctors]


@api.route("GET", "/api/v1/sites", summary="List sites", tag="directory", roles=OPERATOR,
           response=list[Site], query={"kind": "site kind", "region": "省/市/县 prefix"})
async def list_sites(call: Call[None]) -> list[Site]:
    kind = call.query("kind")
    kinds = {k.value for k in SiteKind}
    return await services_of(call).directory.list_sites(
        kind=SiteKind(kind) if kind in kinds else None, region=call.query("region"))


declare_entry_routes(Site, "a site", "sites", "site_id")


# --- classes ------------------------------------------------------------------------------------
@api.route("GET", "/api/v1/classes", summary="List classes", tag="classes",
           roles={"operator", "teacher"}, response=list[ClassSession],
           query={"state": "scheduled|live|ended"})
async def list_classes(call: Call[None]) -> list[ClassSession]:
    state = call.query("state")
    classes = await services_of(call).classes.list_classes(
        state=ClassState(state) if state in {s.value for s in ClassState} else None)
    if call.claims.role is Role.TEACHER:
        classes = [c for c in classes if c.teacher_id == call.claims.sub]
    return classes


@api.route("POST", "/api/v1/classes", summary="Schedule a dual-teacher class", tag="classes",
           roles={"operator", "teacher"}, request=ScheduleBody, response=ScheduledView,
           status=201)
async def schedule_class(call: Call[ScheduleBody]) -> ScheduledView:
    services = services_of(call)
    body = call.body
    if call.claims.role is Role.TEACHER and body.teacher_id != call.claims.sub:
        raise Forbidden("a teacher schedules only their own classes")
    scheduled = await services.classes.schedule(
        title=body.title, subject=body.subject, teacher_id=body.teacher_id,
        starts_at=body.starts_at if body.starts_at is not None else services.clock(),
        classroom_site_ids=body.classroom_site_ids, actor=actor_of(call),
        recording_allowed=body.recording_allowed, duration_s=body.duration_s)
    base = call.request.app[CONFIG].display_url
    return ScheduledView(
        klass=scheduled.klass, host_link=f"{base}/join/{scheduled.host_token}",
        classroom_links={k: f"{base}/join/{v}" for k, v in scheduled.classroom_tokens.items()})


@api.route("GET", "/api/v1/classes/{class_id}", summary="One class", tag="classes",
           roles=ANY_ROLE, response=ClassSession)
async def get_class(call: Call[None]) -> ClassSession:
    klass = await services_of(call).classes.get(call.param("class_id"))
    claims = call.claims
    if claims.role is not Role.OPERATOR and claims.session != klass.id and \
            claims.sub != klass.teacher_id:
        raise NotFound("no such class")
    return klass


@api.route("POST", "/api/v1/classes/{class_id}/end", summary="End a class", tag="classes",
           roles={"operator", "teacher"}, response=ClassSession)
async def end_class(call: Call[None]) -> ClassSession:
    return await services_of(call).classes.end(call.param("class_id"), actor_of(call))


# --- consults -----------------------------------------------------------------------------------
@api.route("POST", "/api/v1/consults", summary="Request a consult (clinic)", tag="consults",
           roles={"clinic"}, request=ConsultBody, response=WaitingRoomView, status=201)
async def request_consult(call: Call[ConsultBody]) -> WaitingRoomView:
    services = services_of(call)
    body = call.body
    requested = await services.consults.request(
        ConsultRequest(clinic_site_id=call.claims.sub, specialty=body.specialty,
                       urgency=body.urgency, language=body.language, reason=body.reason),
        actor_of(call))
    room = await services.consults.waiting_room(requested.ticket.id)
    return WaitingRoomView(requested.ticket, room.position, room.estimated_wait_s)


def is_consult_party(claims: Any, ticket: ConsultTicket) -> bool:
    """May read the consult's note and snapshots: its clinic, a doctor who holds or held it,
    an operator."""
    if claims.role is Role.OPERATOR:
        return True
    if claims.role is Role.CLINIC:
        return bool(claims.sub == ticket.clinic_site_id)
    return claims.role is Role.DOCTOR and (claims.sub == ticket.expert_id
                                           or claims.sub in ticket.previous_expert_ids)


def without_note(claims: Any, ticket: ConsultTicket) -> ConsultTicket:
    """The ticket as `claims` may see it: the note only for the consult's parties."""
    if not ticket.note or is_consult_party(claims, ticket):
        return ticket
    return msgspec.structs.replace(ticket, note="")


async def visible_ticket(call: Call[Any]) -> ConsultTicket:
    """The path's consult, when the caller is its clinic, its doctor, a doctor who may take
    it (without the note), or an operator; NotFound otherwise (no probing of other clinics'
    consults)."""
    services = services_of(call)
    ticket = await services.consults.get(call.param("consult_id"))
    claims = call.claims
    if is_consult_party(claims, ticket):
        return ticket
    if claims.role is Role.DOCTOR and ticket.state in (ConsultState.WAITING,
                                                       ConsultState.ESCALATED):
        matched = await services.consults.match_experts(ticket.id)
        if any(e.id == claims.sub for e in matched):
            return without_note(claims, ticket)
    raise NotFound("no such consult")


async def party_ticket(call: Call[Any]) -> ConsultTicket:
    """The path's consult, when the caller may read its note and snapshots (see
    `is_consult_party`); NotFound otherwise."""
    ticket = await services_of(call).consults.get(call.param("consult_id"))
    if not is_consult_party(call.claims, ticket):
        raise NotFound("no such consult")
    return ticket


@api.route("GET", "/api/v1/consults", summary="Consults of the caller", tag="consults",
           roles={"clinic", "doctor", "operator"}, response=list[ConsultTicket],
           query={"mine": "1: doctor's matched and assigned requests", "state": "filter"})
async def list_consults(call: Call[None]) -> list[ConsultTicket]:
    services = services_of(call)
    claims = call.claims
    if claims.role is Role.CLINIC:
        return await services.consults.list_open(clinic_site_id=claims.sub)
    if claims.role is Role.DOCTOR:
        mine = await services.consults.assigned_to(claims.sub)
        waiting = await services.consults.tickets_for_expert(claims.sub)
        return mine + [without_note(claims, t) for t in waiting]
    state = call.query("state")
    return await services.consults.list_open(
        state=ConsultState(state) if state in {s.value for s in ConsultState} else None)


@api.route("GET", "/api/v1/consults/{consult_id}", summary="A consult and its waiting room",
           tag="consults", roles={"clinic", "doctor", "operator"}, response=WaitingRoomView)
async def get_consult(call: Call[None]) -> WaitingRoomView:
    ticket = await visible_ticket(call)
    room = await services_of(call).consults.waiting_room(ticket.id)
    return WaitingRoomView(ticket, room.position, room.estimated_wait_s)


@api.route("POST", "/api/v1/consults/{consult_id}/claim", summary="Take a request (doctor)",
           tag="consults", roles={"doctor"}, response=ConsultTicket)
async def claim_consult(call: Call[None]) -> ConsultTicket:
    return (await services_of(call).consults.claim(call.param("consult_id"),
                                                   actor_of(call))).ticket


@api.route("POST", "/api/v1/consults/{consult_id}/admit", summary="Admit the waiting clinic",
           tag="consults", roles={"doctor"}, response=ConsultTicket)
async def admit_consult(call: Call[None]) -> ConsultTicket:
    return await services_of(call).consults.admit(call.param("consult_id"), actor_of(call))


@api.route("POST", "/api/v1/consults/{consult_id}/cancel", summary="Cancel a request",
           tag="consults", roles={"clinic", "operator"}, response=ConsultTicket)
async def cancel_consult(call: Call[None]) -> ConsultTicket:
    ticket = await party_ticket(call)  # another clinic learns nothing: 404, not 403
    return await services_of(call).consults.cancel(ticket.id, actor_of(call))


@api.route("POST", "/api/v1/consults/{consult_id}/hand-over", summary="Hand over to another "
           "expert", tag="consults", roles={"doctor"}, request=HandOverBody,
           response=ConsultTicket)
async def hand_over_consult(call: Call[HandOverBody]) -> ConsultTicket:
    return await services_of(call).consults.hand_over(
        call.param("consult_id"), call.body.expert, actor_of(call), note=call.body.note)


@api.route("POST", "/api/v1/consults/{consult_id}/end", summary="End with an outcome",
           tag="consults", roles={"doctor", "operator"}, request=EndBody,
           response=ConsultTicket)
async def end_consult(call: Call[EndBody]) -> ConsultTicket:
    return await services_of(call).consults.end(
        call.param("consult_id"), actor_of(call), outcome=call.body.outcome, note=call.body.note)


def snapshot_dir(call: Call[Any], consult_id: str) -> Path:
    return snapshot_folder(call.request.app[CONFIG].data_dir, consult_id)


@api.route("POST", "/api/v1/consults/{consult_id}/snapshots", summary="Store a full-resolution "
           "still of the clinic's camera (body: image/jpeg or image/png)", tag="consults",
           roles={"doctor"}, response=SnapshotRef, status=201)
async def add_snapshot(call: Call[None]) -> SnapshotRef:
    ticket = await party_ticket(call)
    if call.claims.sub != ticket.expert_id or ticket.state is not ConsultState.ADMITTED:
        raise Forbidden("only the doctor in an admitted consult can take snapshots")
    kind = call.request.content_type
    if kind not in ("image/jpeg", "image/png"):
        raise ApiError(415, "unsupported_media_type", "send the snapshot as image/jpeg or png")
    data = await call.request.read()
    magic_ok = data.startswith(b"\xff\xd8\xff") if kind == "image/jpeg" else \
        data.startswith(b"\x89PNG\r\n\x1a\n")
    if not data or not magic_ok:
        raise ApiError(400, "invalid_image", "the body is not a JPEG or PNG image")
    snap_id = uuid.uuid4().hex[:16]
    suffix = ".jpg" if kind == "image/jpeg" else ".png"
    folder = snapshot_dir(call, ticket.id)

    def write() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / (snap_id + suffix)).write_bytes(data)

    await asyncio.to_thread(write)
    services = services_of(call)
    ref = SnapshotRef(id=snap_id, url=f"/api/v1/consults/{ticket.id}/snapshots/{snap_id}",
                      bytes=len(data), taken_at=services.clock())
    await services.store.map_set(snapshots_map(ticket.id), snap_id, msgspec.json.encode(ref))
    await services.audit.append(call.claims.sub, AuditAction.SNAPSHOT, session=ticket.id,
                                detail={"snapshot": snap_id, "bytes": len(data)})
    return ref


@api.route("GET", "/api/v1/consults/{consult_id}/snapshots", summary="Snapshots of a consult",
           tag="consults", roles={"clinic", "doctor", "operator"}, response=list[SnapshotRef])
async def list_snapshots(call: Call[None]) -> list[SnapshotRef]:
    ticket = await party_ticket(call)
    raw = await services_of(call).store.map_all(snapshots_map(ticket.id))
    refs = [msgspec.json.decode(v, type=SnapshotRef) for v in raw.values()]
    return sorted(refs, key=lambda r: r.taken_at)


@api.route("GET", "/api/v1/consults/{consult_id}/snapshots/{snapshot_id}",
           summary="One snapshot's image", tag="consults",
           roles={"clinic", "doctor", "operator"})
async def get_snapshot(call: Call[None]) -> web.StreamResponse:
    ticket = await party_ticket(call)
    snap_id = call.param("snapshot_id")
    if await services_of(call).store.map_get(snapshots_map(ticket.id), snap_id) is None:
        raise NotFound("no such snapshot")
    for suffix in (".jpg", ".png"):
        path = snapshot_dir(call, ticket.id) / (snap_id + suffix)
        if path.is_file():
            return web.FileResponse(path, headers={"Cache-Control": "private, no-store"})
    raise NotFound("the snapshot's file is gone")


# --- tokens, audit, live -----------------------------------------------------------------------
@api.route("POST", "/api/v1/tokens", summary="Issue a join link", tag="tokens", roles=OPERATOR,
           request=IssueBody, response=IssuedLink, status=201)
async def issue_token(call: Call[IssueBody]) -> IssuedLink:
    body = call.body
    token = services_of(call).tokens.issue(sub=body.sub, role=body.role, session=body.session,
                                           ttl_s=body.ttl_s, single_use=body.single_use,
                                           name=body.name)
    return IssuedLink(token=token, link=f"{call.request.app[CONFIG].display_url}/join/{token}")


@api.route("POST", "/api/v1/tokens/revoke", summary="Revoke a join link or credential by jti",
           tag="tokens", roles=OPERATOR, request=RevokeBody)
async def revoke_token(call: Call[RevokeBody]) -> None:
    services = services_of(call)
    until = call.body.until_exp or services.clock() + 30 * 24 * 3600
    await services.tokens.revoke(call.body.jti, until, actor=call.claims.sub)


@api.route("GET", "/api/v1/audit", summary="Read the audit log", tag="audit", roles=OPERATOR,
           response=AuditPage, query={"after": "entry id", "limit": "1..1000",
                                      "session": "only this session"})
async def read_audit(call: Call[None]) -> AuditPage:
    return await services_of(call).audit.read(
        after=call.query("after"), limit=call.query_int("limit", 100, 1, 1000),
        session=call.query("session"))


@api.route("GET", "/api/v1/live", summary="Live sessions with participants and link quality",
           tag="operations", roles=OPERATOR, response=list[m.SessionState])
async def live_sessions(call: Call[None]) -> list[m.SessionState]:
    services = services_of(call)
    view = SessionView(services, call.request.app[HUB])
    ids = [c.id for c in await services.classes.list_classes(state=ClassState.LIVE)]
    ids += [t.id for t in await services.consults.list_open(state=ConsultState.ADMITTED)]
    return [await view.state(sid) for sid in ids]


# --- wiring -------------------------------------------------------------------------------------
async def authenticate(request: web.Request, spec: RouteSpec) -> Any:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send Authorization: Bearer <credential> (open your join link first)")
    claims = await request.app[SERVICES].verify(token.strip(), spec.roles)
    decision = request.app[TOKEN_LIMITER].check("jti:" + claims.jti, time.monotonic())
    if not decision.allowed:
        retry = max(1, int(decision.retry_after_s + 0.999))
        raise ApiError(429, "rate_limited", f"too many requests with this link; retry in {retry} s",
                       {"Retry-After": str(retry)})
    return claims


def install_routes(app: web.Application) -> tuple[list[RouteSpec], tuple[Any, ...]]:
    """Add the REST routes and /ws; (route specs, extra schema types) for the OpenAPI doc."""
    app[TOKEN_LIMITER] = RateLimiter(app[CONFIG].rate_limit_per_minute)
    api.install(app, authenticate)

    async def ws_endpoint(request: web.Request) -> web.StreamResponse:
        return await request.app[HUB].handle(request)

    app.router.add_get("/ws", ws_endpoint)
    return api.specs, (m.ClientMessage, m.ServerMessage)


__all__ = ["install_routes"]
