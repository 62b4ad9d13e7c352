"""WebSocket frames about media: publish, answer, request_offer, data_saver, and the relay's
events.

Thin translations between the protocol and the media backend (media.backend.MediaBackend):
`MediaFrames` handles the media frames, `media_event_frame` turns a relay event into
the client's frame. The data saver: a participant's own budget (`data_saver` frame) is kept
in the store (`data_budget_map`), so it survives a reconnect; without one, the site's
default (`Site.data_budget_mb_h`, set by the operator) applies; `apply_data_budget` tells the
relay whichever holds, on entering the session and on every change. Permission checks happen
here because only signaling knows the caller's credential.
"""

from __future__ import annotations

import math
from typing import Any

from broker.errors import Conflict, Forbidden, InvalidInput
from media.backend import MediaBackend
from media.errors import MediaUserError
from signaling import messages as m
from signaling.connection import Connection, Identity
from signaling.fanout import Fanout
from signaling.services import Services

SOURCE_PERMISSION = {
    "mic": "publish_audio",
    "camera": "publish_video",
    "screen": "publish_screen",
}


SITE_ROLES = frozenset({"assistant", "clinic"})
"""Roles whose participant id is a site of the directory (a classroom, a clinic)."""


def data_budget_map(session_id: str) -> str:
    """Store map of the participants' own data budgets (participant id -> MB per hour)."""
    return f"data_budget:{session_id}"


async def effective_budget(
    services: Services, session_id: str, participant_id: str, role: str
) -> float | None:
    """The participant's own budget, else its site's default, else None."""
    raw = await services.store.map_get(data_budget_map(session_id), participant_id)
    if raw is not None:
        try:
            own = float(raw)
        except ValueError:
            own = math.nan
        if math.isfinite(own):
            return own
    if role in SITE_ROLES:
        site = await services.directory.find_site(participant_id)
        if site is not None and site.data_budget_mb_h is not None:
            return float(site.data_budget_mb_h)
    return None


async def apply_data_budget(
    services: Services, media: MediaBackend, session_id: str, participant_id: str, role: str
) -> None:
    """Tell the relay the budget that holds for the participant (None clears it)."""
    budget = await effective_budget(services, session_id, participant_id, role)
    try:
        await media.set_data_budget(session_id, participant_id, budget)
    except MediaUserError as exc:  # a limit the relay refuses: say so, keep the session
        raise InvalidInput(str(exc), code="invalid_budget") from None


def in_media_session(conn: Connection) -> str:
    """The media session of `conn`, or Conflict when it is not in one."""
    if conn.identity is None or conn.media_session is None:
        raise Conflict("not in a session: join a class or enter a consult first",
                       code="not_in_session")
    return conn.media_session


def joined(conn: Connection) -> Identity:
    """The identity of a joined connection (frames after `join` always have one)."""
    assert conn.identity is not None
    return conn.identity


def check_publish(permissions: frozenset[str], sources: dict[str, str], sdp: str) -> None:
    """Refuse a publish the credential does not allow, or an SDP that is absurdly large."""
    sections = m.count_media_sections(sdp)
    if sections == 0:
        raise InvalidInput("the offer has no media section", code="invalid_sdp")
    if sections > m.MAX_MEDIA_SECTIONS:
        raise InvalidInput(f"the offer has {sections} media sections (limit "
                           f"{m.MAX_MEDIA_SECTIONS})", code="invalid_sdp")
    for source in sources.values():
        needed = SOURCE_PERMISSION[source]
        if needed not in permissions:
            raise Forbidden(f"this link may not publish {source}", code="forbidden")


class MediaFrames:
    """Handlers of `publish`, `answer`, `request_offer` and `data_saver`, one method each."""

    def __init__(self, hub: Fanout, services: Services) -> None:
        self.hub = hub
        self.services = services

    def relay(self) -> MediaBackend:
        """The media relay, or Conflict on a node without one."""
        media = self.hub.media
        if media is None:
            raise Conflict("this server has no media relay", code="media_unavailable")
        return media

    async def publish(self, conn: Connection, frame: m.Publish) -> None:
        room = in_media_session(conn)
        identity = joined(conn)
        check_publish(identity.permissions, dict(frame.sources), frame.sdp)
        answer = await self.relay().publish(room, identity.participant_id, frame.sdp,
                                            dict(frame.sources))
        conn.send(m.ServerAnswer(sdp=answer))

    async def answer(self, conn: Connection, frame: m.Answer) -> None:
        room = in_media_session(conn)
        await self.relay().subscriber_answer(room, joined(conn).participant_id, frame.sdp)

    async def request_offer(self, conn: Connection, frame: m.RequestOffer) -> None:
        room = in_media_session(conn)
        await self.relay().request_offer(room, joined(conn).participant_id)

    async def data_saver(self, conn: Connection, frame: m.DataSaverFrame) -> None:
        """Set or clear my own data budget (the frame's type bounds it: 5..2000 MB/h)."""
        room = in_media_session(conn)
        identity = joined(conn)
        media = self.relay()
        budgets = data_budget_map(room)
        if frame.mb_per_hour is None:
            await self.services.store.map_delete(budgets, identity.participant_id)
        else:
            value = repr(float(frame.mb_per_hour)).encode()
            await self.services.store.map_set(budgets, identity.participant_id, value)
        await apply_data_budget(self.services, media, room, identity.participant_id,
                                identity.role)


def media_event_frame(event: dict[str, Any]) -> m.ServerFrame | None:
    """The client frame for one media backend event (None when the client need not know)."""
    kind = event.get("type")
    if kind == "offer":
        return m.Offer(sdp=str(event["sdp"]), tracks=dict(event.get("tracks") or {}))
    if kind == "room_lost":
        return m.Reconnect(reason="the media relay for this session restarted")
    if kind == "link":
        return m.Link(
            participant=str(event.get("participant", "")),
            rung=str(event.get("rung", "full")),
            estimate_kbps=event.get("estimate_kbps"),
            loss_pct=event.get("loss_pct"),
            rtt_ms=event.get("rtt_ms"),
            reason=str(event.get("reason", "")),
            paused=[str(track) for track in event.get("paused") or ()],
        )
    if kind == "layers":
        source, active = event.get("source"), event.get("active")
        if source not in ("camera", "screen") or not isinstance(active, list):
            return None
        ceilings = event.get("max_kbps")
        return m.Layers(
            source=source,
            active=[str(rid) for rid in active if isinstance(rid, str)],
            max_kbps={
                rid: float(kbps)
                for rid, kbps in (ceilings.items() if isinstance(ceilings, dict) else ())
                if isinstance(rid, str) and _number(kbps) is not None and kbps > 0
            },
        )
    if kind == "data":
        return m.DataUsage(
            used_mb=_number(event.get("used_mb")) or 0.0,
            elapsed_s=_number(event.get("elapsed_s")) or 0.0,
            budget_mb_h=_number(event.get("budget_mb_h")),
            allowed_mb=_number(event.get("allowed_mb")),
            ceiling_kbps=_number(event.get("ceiling_kbps")),
            verdict=_verdict(event.get("verdict")),
        )
    if kind == "media_state" and event.get("state") == "failed":
        return m.Notice(level="warning", code="media_failed",
                        message="the media connection failed; reconnecting",
                        detail={"direction": str(event.get("direction", ""))})
    return None


def _number(value: Any) -> float | None:
    """A finite number from a relay event, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _verdict(value: Any) -> Any:
    return value if value in ("under", "limiting", "below_audio") else None
