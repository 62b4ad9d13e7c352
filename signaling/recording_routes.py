"""The recording REST routes, the playback files and the share links.

API routes are declared on their own `ApiRoutes` table (so /api/openapi.json lists them):
turning recording on or off for a session, the clinic's consent, the library (list, one,
share, delete) and `GET /api/v1/watch/<share token>` for the public player page. Playback files
are served from `/media/recordings/<playback token>/<name>` with relative URLs inside the
playlists, so a plain <video> or hls.js needs no headers; the playback token is short-lived and
names one recording, and names are one safe path segment (no traversal). In the background
while the app runs: recordings a stopped node left behind are recovered once, then the
retention sweep runs every hour.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from aiohttp import web
from msgspec import Meta, Struct

from broker.errors import Forbidden, NotFound, Unauthorized
from broker.models import Role
from broker.recording_storage import safe_name
from broker.recording_tokens import PLAYBACK_AUDIENCE, WATCH_AUDIENCE
from broker.recordings import (
    Recording,
    Viewer,
    iso_time,
    recording_view,
    valid_day,
    visible_to,
)
from signaling import recording_control
from signaling.api import ApiRoutes, Call, RouteSpec
from signaling.appkeys import HUB, SERVICES
from signaling.cancellation import cancel_and_wait
from signaling.http_errors import ApiError
from signaling.routes import ANY_ROLE, OPERATOR, actor_of, authenticate, services_of

recording_api = ApiRoutes()
PLAYBACK_TTL_S = 6 * 3600.0
"""How long a playback URL in a REC works (the page asks again after that)."""
SWEEP_INTERVAL_S = 3600.0
SWEEPER = web.AppKey("recording_sweeper", asyncio.Task)
CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/mp4",
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
}


class RecordBody(Struct, forbid_unknown_fields=True):
    on: bool


class ConsentBody(Struct, forbid_unknown_fields=True):
    granted: bool


class ShareBody(Struct, forbid_unknown_fields=True):
    expires_in_s: Annotated[int, Meta(ge=60, le=2_592_000)]


class RenditionView(Struct):
    name: str
    bandwidth: int
    width: int
    height: int


class RecordingView(Struct):
    """REC of the contract."""

    id: str
    session: str
    kind: str
    title: str
    subject: str
    teacher: str
    host_id: str
    started_at: str
    ended_at: str | None
    duration_s: float | None
    status: str
    progress: float
    renditions: list[RenditionView]
    poster_url: str | None
    playback_url: str | None


class RecordingAnswer(Struct):
    recording: RecordingView | None


class ConsentAnswer(Struct):
    granted: bool
    recording: RecordingView | None


class RecordingList(Struct):
    recordings: list[RecordingView]


class ShareAnswer(Struct):
    url: str
    expires_at: str


def view(call: Call[Any], recording: Recording | None) -> dict[str, Any] | None:
    if recording is None:
        return None
    token, _ = services_of(call).recording_tokens.issue(recording.id, PLAYBACK_AUDIENCE,
                                                        PLAYBACK_TTL_S)
    return recording_view(recording, playback_token=token)


async def viewer_of(call: Call[Any]) -> Viewer:
    claims = call.claims
    school = None
    if claims.role is Role.ASSISTANT:
        site = await services_of(call).directory.find_site(claims.sub)
        school = site.parent_site_id if site is not None else None
    return Viewer(id=claims.sub, role=claims.role, school=school)


async def visible_recording(call: Call[Any]) -> Recording:
    recording = await services_of(call).recordings.find(call.param("recording_id"))
    if recording is None or not visible_to(recording, await viewer_of(call)):
        raise NotFound("no such recording")
    return recording


# --- recording a live session -------------------------------------------------------------------
@recording_api.route("POST", "/api/v1/sessions/{session}/recording", summary="Turn recording "
                     "of a live class or consult on or off (its teacher or doctor)",
                     tag="recordings", roles=ANY_ROLE, request=RecordBody,
                     response=RecordingAnswer)
async def set_session_recording(call: Call[RecordBody]) -> dict[str, Any]:
    claims = call.claims
    session = call.param("session")
    if claims.role.value not in ("teacher", "doctor"):
        raise Forbidden("only the teacher or the doctor may record")
    recording = await recording_control.set_recording(
        services_of(call), call.request.app[HUB], session, claims.sub, claims.role.value,
        call.body.on, via_api=True)
    if not call.body.on:
        recording = None
    return {"recording": view(call, recording)}


@recording_api.route("POST", "/api/v1/consults/{consult_id}/consent", summary="The clinic's "
                     "consent to recording the consult (audited)", tag="recordings",
                     roles={"clinic"}, request=ConsentBody, response=ConsentAnswer)
async def give_consent(call: Call[ConsentBody]) -> dict[str, Any]:
    recording = await recording_control.answer_consent(
        services_of(call), call.request.app[HUB], call.param("consult_id"), call.claims.sub,
        call.body.granted)
    return {"granted": call.body.granted, "recording": view(call, recording)}


# --- the library ---------------------------------------------------------------------------------
@recording_api.route("GET", "/api/v1/recordings", summary="Recordings the caller may see, "
                     "newest first", tag="recordings", roles=ANY_ROLE, response=RecordingList,
                     query={"kind": "class|consult", "teacher": "teacher id or name",
                            "subject": "subject", "q": "words in title, subject or teacher",
                            "from": "YYYY-MM-DD (UTC, inclusive)",
                            "to": "YYYY-MM-DD (UTC, inclusive)"})
async def list_recordings(call: Call[None]) -> dict[str, Any]:
    kind = call.query("kind") or None
    if kind not in (None, "class", "consult"):
        raise ApiError(400, "invalid_query", "kind: expected class or consult")
    days = {}
    for name in ("from", "to"):
        value = call.query(name) or None
        if value is not None and not valid_day(value):
            raise ApiError(400, "invalid_query", f"{name}: expected YYYY-MM-DD")
        days[name] = value
    found = await services_of(call).recordings.list(
        await viewer_of(call), kind=kind, teacher=call.query("teacher") or None,
        subject=call.query("subject") or None, q=call.query("q") or None,
        day_from=days["from"], day_to=days["to"])
    return {"recordings": [view(call, r) for r in found]}


@recording_api.route("GET", "/api/v1/recordings/{recording_id}", summary="One recording",
                     tag="recordings", roles=ANY_ROLE, response=RecordingView)
async def get_recording(call: Call[None]) -> dict[str, Any] | None:
    return view(call, await visible_recording(call))


@recording_api.route("POST", "/api/v1/recordings/{recording_id}/share", summary="A link to "
                     "watch the recording without signing in, until it expires",
                     tag="recordings", roles=ANY_ROLE, request=ShareBody, response=ShareAnswer)
async def share_recording(call: Call[ShareBody]) -> dict[str, Any]:
    recording = await visible_recording(call)
    token, expires_at = services_of(call).recording_tokens.issue(
        recording.id, WATCH_AUDIENCE, float(call.body.expires_in_s))
    return {"url": f"/watch/{token}", "expires_at": iso_time(expires_at)}


@recording_api.route("DELETE", "/api/v1/recordings/{recording_id}", summary="Delete a "
                     "recording and its files (operator)", tag="recordings", roles=OPERATOR,
                     status=204)
async def delete_recording(call: Call[None]) -> None:
    recording = await visible_recording(call)
    await services_of(call).recordings.delete(recording.id, call.claims.role,
                                              actor_of(call).id)


@recording_api.route("GET", "/api/v1/watch/{token}", summary="The shared recording (public; "
                     "the share token is the credential)", tag="recordings",
                     response=RecordingView)
async def watch(call: Call[None]) -> dict[str, Any] | None:
    services = services_of(call)
    recording_id = services.recording_tokens.verify(call.param("token"), WATCH_AUDIENCE)
    recording = await services.recordings.find(recording_id)
    if recording is None:
        raise NotFound("this recording was deleted")
    return view(call, recording)


# --- playback files --------------------------------------------------------------------------
async def playback_file(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    name = request.match_info["name"]
    recording_id = services.recording_tokens.verify(request.match_info["token"],
                                                    PLAYBACK_AUDIENCE)
    suffix = name[name.rfind("."):] if "." in name else ""
    if not safe_name(name) or suffix not in CONTENT_TYPES:
        raise NotFound("no such file")
    if await services.recordings.find(recording_id) is None:
        raise Unauthorized("this recording was deleted")
    data = await services.recordings.storage.read(recording_id, name)
    if data is None:
        raise NotFound("no such file")
    cache = "no-cache" if suffix == ".m3u8" else "private, max-age=3600"
    return web.Response(body=data, content_type=CONTENT_TYPES[suffix],
                        headers={"Cache-Control": cache})


# --- wiring ---------------------------------------------------------------------------------
def install_recording_routes(app: web.Application) -> list[RouteSpec]:
    """Add the recording routes, the playback files and the retention sweep; the specs."""
    recording_api.install(app, authenticate)
    app.router.add_get("/media/recordings/{token}/{name}", playback_file)

    async def start_sweeper(app: web.Application) -> None:
        services = app[SERVICES]
        app[SWEEPER] = asyncio.get_running_loop().create_task(recording_control.sweep_forever(
            services, app[HUB], services.config.recording_retention_days, SWEEP_INTERVAL_S))

    async def stop_sweeper(app: web.Application) -> None:
        task = app.get(SWEEPER)
        if task is not None:
            await cancel_and_wait(task)

    app.on_startup.append(start_sweeper)
    app.on_cleanup.append(stop_sweeper)
    return recording_api.specs
