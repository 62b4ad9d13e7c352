"""The recordings library: records and their life, recording policy and consent, who sees what.

A `Recording` goes recording -> processing -> ready | failed. Policy: a class may be recorded
iff it allows recording; a consult only once its clinic granted consent (`answer_consent`,
audited with who and when); a refusal sticks for the consult. Records live in the `Store`
(JSON under `recording:<id>`, ids in the `recordings` map, the one in progress per session in
`recordings:active`), so this works on the memory and the Redis store alike. Files are the
`RecordingStorage`'s; listing and filtering are plain functions (`visible_to`, `matches`).
"""

from __future__ import annotations

import builtins
import datetime as dt
import uuid
from enum import StrEnum
from typing import Any

import msgspec
from msgspec import Struct

from broker.audit import AuditAction, AuditLog
from broker.clock import Clock
from broker.errors import Conflict, Forbidden, NotFound
from broker.models import Role
from broker.recording_storage import RecordingStorage
from broker.store import Store

INDEX = "recordings"
ACTIVE = "recordings:active"
CONSENT = "recordings:consent"
PENDING = "recordings:consent_pending"
DAY_S = 86400.0


class RecordingStatus(StrEnum):
    RECORDING = "recording"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


class Rendition(Struct, frozen=True):
    name: str
    bandwidth: int
    width: int
    height: int


class Recording(Struct, frozen=True, kw_only=True):
    """One recording as stored."""

    id: str
    session: str
    kind: str
    """"class" or "consult"."""
    title: str
    subject: str
    teacher: str
    """The host's name (teacher or doctor)."""
    host_id: str
    site_ids: tuple[str, ...] = ()
    """Classrooms and their schools (class) or the clinic (consult): who may see it."""
    started_at: float
    ended_at: float | None = None
    status: RecordingStatus = RecordingStatus.RECORDING
    progress: float = 0.0
    renditions: tuple[Rendition, ...] = ()
    error: str | None = None

    @property
    def duration_s(self) -> float | None:
        return None if self.ended_at is None else round(self.ended_at - self.started_at, 3)


class Consent(Struct, frozen=True):
    granted: bool
    by: str
    at: float


class Viewer(Struct, frozen=True):
    """Who asks: a token subject and role; `school` is a classroom's school site, if any."""

    id: str
    role: Role
    school: str | None = None


def visible_to(recording: Recording, viewer: Viewer) -> bool:
    """Operator: all; teacher: their classes; doctor: their consults; clinic: its consults;
    classroom: the classes of its school."""
    if viewer.role is Role.OPERATOR:
        return True
    if viewer.role is Role.TEACHER:
        return recording.kind == "class" and recording.host_id == viewer.id
    if viewer.role is Role.DOCTOR:
        return recording.kind == "consult" and recording.host_id == viewer.id
    if viewer.role is Role.CLINIC:
        return recording.kind == "consult" and viewer.id in recording.site_ids
    if viewer.role is Role.ASSISTANT:
        return recording.kind == "class" and (
            viewer.id in recording.site_ids
            or (viewer.school is not None and viewer.school in recording.site_ids))
    return False


def _day_start(day: str) -> float:
    return dt.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=dt.UTC).timestamp()


def matches(recording: Recording, *, kind: str | None = None, teacher: str | None = None,
            subject: str | None = None, q: str | None = None, day_from: str | None = None,
            day_to: str | None = None) -> bool:
    """The library's filters (dates are UTC days, inclusive; `teacher` matches id or name)."""
    if kind and recording.kind != kind:
        return False
    if teacher and teacher not in (recording.host_id, recording.teacher):
        return False
    if subject and recording.subject != subject:
        return False
    if q and q.casefold() not in f"{recording.title} {recording.subject} {recording.teacher}"\
            .casefold():
        return False
    if day_from and recording.started_at < _day_start(day_from):
        return False
    return not (day_to and recording.started_at >= _day_start(day_to) + DAY_S)


def valid_day(day: str) -> bool:
    try:
        _day_start(day)
    except ValueError:
        return False
    return True


def expired(recording: Recording, now: float, retention_days: float) -> bool:
    """Older than the retention period (from its end, or its start if it never ended)."""
    return (recording.ended_at or recording.started_at) < now - retention_days * DAY_S


def recording_view(recording: Recording, *, playback_token: str | None) -> dict[str, Any]:
    """The REC object of the API contract (playback and poster URLs carry `playback_token`)."""
    ready = recording.status is RecordingStatus.READY and playback_token is not None
    base = f"/media/recordings/{playback_token}" if ready else None
    return {
        "id": recording.id, "session": recording.session, "kind": recording.kind,
        "title": recording.title, "subject": recording.subject, "teacher": recording.teacher,
        "host_id": recording.host_id,
        "started_at": iso_time(recording.started_at),
        "ended_at": iso_time(recording.ended_at) if recording.ended_at is not None else None,
        "duration_s": recording.duration_s, "status": recording.status.value,
        "progress": round(recording.progress, 3),
        "renditions": [msgspec.to_builtins(r) for r in recording.renditions],
        "poster_url": f"{base}/poster.jpg" if base else None,
        "playback_url": f"{base}/master.m3u8" if base else None,
    }


def iso_time(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat().replace("+00:00", "Z")


class RecordingService:
    """Records, consent and retention over the `Store`; see the module docstring."""

    def __init__(self, store: Store, audit: AuditLog, clock: Clock,
                 storage: RecordingStorage) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock
        self.storage = storage

    # -- records -------------------------------------------------------------------------------
    async def find(self, recording_id: str) -> Recording | None:
        if len(recording_id) > 64:
            return None
        raw = await self._store.get(f"recording:{recording_id}")
        return msgspec.json.decode(raw, type=Recording) if raw is not None else None

    async def get(self, recording_id: str) -> Recording:
        recording = await self.find(recording_id)
        if recording is None:
            raise NotFound("no such recording")
        return recording

    async def _put(self, recording: Recording) -> Recording:
        await self._store.set(f"recording:{recording.id}", msgspec.json.encode(recording))
        return recording

    async def list(self, viewer: Viewer, **filters: Any) -> list[Recording]:
        """The recordings `viewer` may see that match `filters` (see `matches`), newest first."""
        found = []
        for recording_id in await self._store.map_all(INDEX):
            recording = await self.find(recording_id)
            if recording is not None and visible_to(recording, viewer) and \
                    matches(recording, **filters):
                found.append(recording)
        return sorted(found, key=lambda r: r.started_at, reverse=True)

    async def active(self, session: str) -> Recording | None:
        """The recording of `session` in progress, if any."""
        raw = await self._store.map_get(ACTIVE, session)
        return await self.find(raw.decode()) if raw is not None else None

    async def start(self, *, session: str, kind: str, title: str, subject: str, teacher: str,
                    host_id: str, site_ids: tuple[str, ...], actor: str) -> Recording:
        """A new record in `recording` state (the caller checked the policy first)."""
        now = self._clock()
        recording = Recording(
            id=uuid.uuid4().hex[:16], session=session, kind=kind, title=title,
            subject=subject, teacher=teacher, host_id=host_id, site_ids=site_ids,
            started_at=now)
        await self._put(recording)
        await self._store.map_set(INDEX, recording.id, b"1")
        await self._store.map_set(ACTIVE, session, recording.id.encode())
        await self._audit.append(actor, AuditAction.RECORDING_START, session=session,
                                 detail={"recording": recording.id})
        return recording

    async def stop(self, session: str, actor: str) -> Recording | None:
        """End the session's recording (-> processing); None if none was on."""
        recording = await self.active(session)
        await self._store.map_delete(ACTIVE, session)
        if recording is None:
            return None
        stopped = msgspec.structs.replace(recording, ended_at=self._clock(),
                                          status=RecordingStatus.PROCESSING, progress=0.0)
        await self._put(stopped)
        await self._audit.append(actor, AuditAction.RECORDING_STOP, session=session,
                                 detail={"recording": recording.id,
                                         "duration_s": stopped.duration_s})
        return stopped

    async def set_progress(self, recording_id: str, progress: float) -> None:
        recording = await self.find(recording_id)
        if recording is not None and recording.status is RecordingStatus.PROCESSING:
            await self._put(msgspec.structs.replace(recording,
                                                    progress=min(1.0, max(0.0, progress))))

    async def finish(self, recording_id: str, renditions: builtins.list[Rendition],
                     duration_s: float | None = None) -> Recording | None:
        recording = await self.find(recording_id)
        if recording is None:
            return None  # deleted while processing
        ended = recording.ended_at
        if duration_s is not None:
            ended = recording.started_at + duration_s
        return await self._put(msgspec.structs.replace(
            recording, status=RecordingStatus.READY, progress=1.0,
            renditions=tuple(renditions), ended_at=ended))

    async def fail(self, recording_id: str, error: str) -> None:
        recording = await self.find(recording_id)
        if recording is not None:
            await self._put(msgspec.structs.replace(recording, status=RecordingStatus.FAILED,
                                                    error=error[:500]))

    async def delete(self, recording_id: str, actor_role: Role, actor: str) -> None:
        """Operator only: the record, its files, and so every share link to it."""
        if actor_role is not Role.OPERATOR:
            raise Forbidden("only an operator may delete recordings")
        recording = await self.get(recording_id)
        await self._store.delete(f"recording:{recording.id}")
        await self._store.map_delete(INDEX, recording.id)
        if await self._store.map_get(ACTIVE, recording.session) == recording.id.encode():
            await self._store.map_delete(ACTIVE, recording.session)
        await self.storage.delete(recording.id)
        await self._audit.append(actor, AuditAction.RECORDING_STOP, session=recording.session,
                                 detail={"recording": recording.id, "deleted": True})

    async def sweep(self, retention_days: float) -> builtins.list[str]:
        """Delete recordings older than the retention period; their ids."""
        now = self._clock()
        gone = []
        for recording_id in list(await self._store.map_all(INDEX)):
            recording = await self.find(recording_id)
            if recording is None:
                await self._store.map_delete(INDEX, recording_id)
            elif expired(recording, now, retention_days):
                await self.delete(recording.id, Role.OPERATOR, "system")
                gone.append(recording.id)
        return gone

    # -- consent -------------------------------------------------------------------------------
    async def consent(self, consult: str) -> Consent | None:
        raw = await self._store.map_get(CONSENT, consult)
        return msgspec.json.decode(raw, type=Consent) if raw is not None else None

    async def require_consent(self, consult: str) -> None:
        """Conflict `consent_required` / `consent_refused` unless the clinic granted it."""
        consent = await self.consent(consult)
        if consent is None:
            raise Conflict("the clinic has not consented to recording this consult",
                           code="consent_required")
        if not consent.granted:
            raise Conflict("the clinic refused recording this consult", code="consent_refused")

    async def request_consent(self, consult: str, doctor: str) -> None:
        """Remember that `doctor` asked to record (recording starts when the clinic grants)."""
        await self._store.map_set(PENDING, consult, doctor.encode())

    async def pending_consent(self, consult: str) -> str | None:
        raw = await self._store.map_get(PENDING, consult)
        return raw.decode() if raw is not None else None

    async def answer_consent(self, consult: str, clinic: str, granted: bool) -> str | None:
        """Store and audit the clinic's answer; the doctor who asked, if one was waiting."""
        await self._store.map_set(CONSENT, consult, msgspec.json.encode(
            Consent(granted=granted, by=clinic, at=self._clock())))
        await self._audit.append(clinic, AuditAction.CONSENT, session=consult,
                                 detail={"granted": granted, "by": clinic})
        raw = await self._store.map_get(PENDING, consult)
        await self._store.map_delete(PENDING, consult)
        return raw.decode() if raw is not None else None
