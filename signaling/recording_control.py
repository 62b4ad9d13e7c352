"""Turning recording on and off for a live session, shared by the WebSocket and the REST API.

`set_recording` checks who asks and the session's policy (a class must allow recording; a
consult needs its clinic's consent, asked for on the first `record on`), starts or stops the
media relay's recorder, and tells everyone in the session (`recording` frame, refreshed
`session` frame). `answer_consent` takes the clinic's answer and starts the recording the
doctor asked for. When recording stops (or the session ends) the programme is built by a
separate process (`python -m media.recording.programme`), never on the event loop; its progress
lines update the record so the library shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from broker.class_state import ClassState
from broker.consult_state import ConsultState
from broker.errors import BrokerError, Conflict, Forbidden, NotFound
from broker.models import Role
from broker.recording_storage import TRACKS
from broker.recordings import Recording, RecordingStatus, Rendition, Viewer, recording_view
from media.errors import MediaError
from signaling import messages as m
from signaling.fanout import Fanout
from signaling.services import Services
from signaling.session_view import SessionView

log = logging.getLogger("tongxin.recording")

BUILD_DIR = "build"
PROGRESS_STEP = 0.02
"""Smallest progress change written to the store."""
_job_slots: weakref.WeakKeyDictionary[Fanout, asyncio.Semaphore] = weakref.WeakKeyDictionary()
Progress = Callable[[float], Awaitable[None]]
"""Told the fraction of a programme built so far."""


def _slot(hub: Fanout) -> asyncio.Semaphore:
    """One programme job at a time per node (each uses a core for minutes)."""
    slot = _job_slots.get(hub)
    if slot is None:
        slot = _job_slots[hub] = asyncio.Semaphore(1)
    return slot


def recording_frame(recording: Recording | None) -> m.RecordingState:
    if recording is None:
        return m.RecordingState(on=False, since=None, recording=None)
    return m.RecordingState(on=True, since=recording_view(recording, playback_token=None)
                            ["started_at"], recording=recording.id)


async def _announce(services: Services, hub: Fanout, session: str,
                    recording: Recording | None) -> None:
    hub.broadcast(session, recording_frame(recording))
    with contextlib.suppress(BrokerError):
        await SessionView(services, hub).push(session)


async def set_recording(services: Services, hub: Fanout, session: str, participant_id: str,
                        role: str, on: bool, *, via_api: bool = False) -> Recording | None:
    """Start or stop recording `session` for its host; see the module docstring.

    A consult without consent: the clinic is asked (`consent_request`), the doctor told
    (`consent_pending` notice); over the API that is also a 409 `consent_required`.
    """
    klass = await services.classes.find(session)
    if klass is not None:
        if role != "teacher" or participant_id != klass.teacher_id:
            raise Forbidden("only the class's teacher may record it")
        if on and not klass.recording_allowed:
            raise Conflict("recording is not allowed for this class",
                           code="recording_not_allowed")
    else:
        ticket = await services.consults.find(session)
        if ticket is None:
            raise NotFound("no such session")
        if role != "doctor" or participant_id != ticket.expert_id:
            raise Forbidden("only the consult's doctor may record it")
        if on:
            consent = await services.recordings.consent(session)
            if consent is None:
                await _ask_consent(services, hub, session, ticket.clinic_site_id,
                                   participant_id)
                if via_api:
                    raise Conflict("the clinic's consent is needed; it has been asked",
                                   code="consent_required")
                return None
            await services.recordings.require_consent(session)
    if not on:
        return await stop_recording(services, hub, session, participant_id)
    return await _start(services, hub, session, participant_id)


async def _ask_consent(services: Services, hub: Fanout, consult: str, clinic: str,
                       doctor: str) -> None:
    expert = await services.directory.find_expert(doctor)
    name = expert.name if expert is not None else doctor
    await services.recordings.request_consent(consult, doctor)
    hub.send_to(clinic, m.ConsentRequest(consult=consult, by=name))
    hub.send_to(doctor, m.Notice(level="info", code="consent_pending",
                                 message="the clinic is asked to consent to recording",
                                 detail={"consult": consult}))


async def answer_consent(services: Services, hub: Fanout, consult: str, clinic: str,
                         granted: bool) -> Recording | None:
    """The clinic's answer: audited; when granted and a doctor asked, recording starts."""
    ticket = await services.consults.get(consult)
    if clinic != ticket.clinic_site_id:
        raise Forbidden("only the consult's clinic may answer")
    doctor = await services.recordings.answer_consent(consult, clinic, granted)
    if doctor is None:
        return None
    if not granted:
        hub.send_to(doctor, m.Notice(level="warning", code="consent_refused",
                                     message="the clinic refused recording; nothing is recorded",
                                     detail={"consult": consult}))
        return None
    if doctor != ticket.expert_id:
        return None
    return await _start(services, hub, consult, doctor)


async def _start(services: Services, hub: Fanout, session: str, actor: str) -> Recording:
    active = await services.recordings.active(session)
    if active is not None:
        return active
    media = hub.media
    if media is None:
        raise Conflict("this server has no media relay to record on", code="recording_unavailable")
    describe = await services.describe_session(session)
    klass = await services.classes.find(session)
    if klass is not None:
        host_id, subject, kind = klass.teacher_id, klass.subject, "class"
        sites: list[str] = []
        for site_id in klass.classroom_site_ids:
            sites.append(site_id)
            site = await services.directory.find_site(site_id)
            if site is not None and site.parent_site_id:
                sites.append(site.parent_site_id)
    else:
        ticket = await services.consults.get(session)
        host_id, subject, kind = str(ticket.expert_id), ticket.specialty, "consult"
        sites = [ticket.clinic_site_id]
    expert = await services.directory.find_expert(host_id)
    recording = await services.recordings.start(
        session=session, kind=kind, title=(describe or {}).get("title", session), subject=subject,
        teacher=expert.name if expert is not None else host_id, host_id=host_id,
        site_ids=tuple(dict.fromkeys(sites)), actor=actor)
    directory = services.recordings.storage.work_dir(recording.id) / TRACKS
    try:
        await media.start_recording(session, recording.id, str(directory))
    except MediaError as exc:
        await services.recordings.stop(session, actor)
        await services.recordings.fail(recording.id, str(exc))
        raise Conflict("the session's media is not live here; join it first",
                       code="not_live") from None
    await _announce(services, hub, session, recording)
    return recording


async def stop_recording(services: Services, hub: Fanout, session: str,
                         actor: str) -> Recording | None:
    """Stop the session's recording (if on) and queue its programme; None if none was on."""
    recording = await services.recordings.stop(session, actor)
    if recording is None:
        return None
    if hub.media is not None:
        with contextlib.suppress(MediaError, asyncio.TimeoutError):
            await hub.media.stop_recording(session)
    await _announce(services, hub, session, None)
    hub.spawn(build_programme(services, hub, recording))
    return recording


async def build_programme(services: Services, hub: Fanout, recording: Recording) -> None:
    """Run `python -m media.recording.programme` for the recording; update progress; publish the
    HLS."""
    storage = services.recordings.storage
    work = storage.work_dir(recording.id)
    async with _slot(hub):
        try:
            result = await run_programme_process(
                work / TRACKS, work / BUILD_DIR,
                lambda p: services.recordings.set_progress(recording.id, p))
            await storage.publish(recording.id, work / BUILD_DIR)
            renditions = [Rendition(**r) for r in result["renditions"]]
            await services.recordings.finish(recording.id, renditions)
            log.info("programme of recording %s: %.1f s at %sx real time (%sx per CPU second)",
                     recording.id, result.get("duration_s", 0.0), result.get("speed"),
                     result.get("cpu_speed"))
        except asyncio.CancelledError:
            await services.recordings.fail(recording.id, "the server stopped while processing")
            raise
        except Exception as exc:
            log.warning("programme of recording %s failed: %s", recording.id, exc)
            await services.recordings.fail(recording.id, str(exc))


async def run_programme_process(tracks: Path, out: Path,
                                progress: Progress) -> dict[str, Any]:
    """The programme built by a child process; `await progress(fraction)` as it goes."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "media.recording.programme", str(tracks), str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    result: dict[str, Any] | None = None
    reported = 0.0
    other: list[str] = []
    try:
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith("progress "):
                value = float(line.split()[1])
                if value - reported >= PROGRESS_STEP:
                    reported = value
                    await progress(value)
            elif line.startswith("done "):
                result = json.loads(line[5:])
            elif line:
                other = [*other[-4:], line]
        code = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if code != 0 or result is None:
        tail = other[-1] if other else "no output"
        raise RuntimeError(f"programme failed ({code}): {tail[:300]}")
    return result


async def on_session_ended(services: Services, hub: Fanout, session: str) -> None:
    """A class or consult ended: stop its recording (the programme is built after)."""
    with contextlib.suppress(BrokerError):
        await stop_recording(services, hub, session, "system")


async def session_over(services: Services, session: str) -> bool:
    klass = await services.classes.find(session)
    if klass is not None:
        return klass.state is ClassState.ENDED
    ticket = await services.consults.find(session)
    return ticket is None or ticket.state in (ConsultState.ENDED, ConsultState.CANCELLED)


async def recover_orphans(services: Services, hub: Fanout) -> list[str]:
    """Recordings a stopped node left `recording` although their session is over: stopped,
    and their programme built from the tracks on this node's disk. Those whose tracks are not
    here are left to the node that has them (on the embedded store there is no other node:
    they fail)."""
    recovered = []
    everyone = Viewer("system", Role.OPERATOR)
    for recording in await services.recordings.list(everyone):
        if recording.status is not RecordingStatus.RECORDING or \
                not await session_over(services, recording.session):
            continue
        manifest = services.recordings.storage.work_dir(recording.id) / TRACKS / "manifest.json"
        here = await asyncio.to_thread(manifest.is_file)
        if not here and services.store.name != "memory":
            continue
        stopped = await services.recordings.stop(recording.session, "system")
        if stopped is None or stopped.id != recording.id:
            continue
        if here:
            hub.spawn(build_programme(services, hub, stopped))
        else:
            await services.recordings.fail(recording.id, "its node stopped while recording")
        recovered.append(recording.id)
    return recovered


async def sweep_forever(services: Services, hub: Fanout, retention_days: float,
                        interval_s: float) -> None:
    """Recover orphaned recordings once, then delete recordings older than the retention
    period every `interval_s`."""
    with contextlib.suppress(BrokerError):
        orphans = await recover_orphans(services, hub)
        if orphans:
            log.info("recovered %d recordings left by a stopped node", len(orphans))
    while True:
        try:
            gone = await services.recordings.sweep(retention_days)
            if gone:
                log.info("retention: deleted %d recordings", len(gone))
        except BrokerError as exc:
            log.warning("recording retention sweep failed: %s", exc)
        await asyncio.sleep(interval_s)
