"""WebSocket frames about media: publish, answer, request_offer, link reports, ping.

Thin translations between the protocol and the media backend (media.backend.MediaBackend);
permission checks happen here because only signaling knows the caller's credential.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from broker.errors import Conflict, Forbidden, InvalidInput
from signaling import messages as m
from signaling.connection import Connection

if TYPE_CHECKING:
    from signaling.hub import SessionHub

SOURCE_PERMISSION = {
    "mic": "publish_audio",
    "camera": "publish_video",
    "screen": "publish_screen",
}


def in_media_session(conn: Connection) -> str:
    """The media session of `conn`, or Conflict when it is not in one."""
    if conn.identity is None or conn.media_session is None:
        raise Conflict("not in a session: join a class or enter a consult first",
                       code="not_in_session")
    return conn.media_session


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


async def on_publish(hub: SessionHub, conn: Connection, frame: m.Publish) -> None:
    room = in_media_session(conn)
    assert conn.identity is not None
    check_publish(conn.identity.permissions, dict(frame.sources), frame.sdp)
    answer = await hub.media.publish(room, conn.identity.participant_id, frame.sdp,
                                     dict(frame.sources))
    conn.send(m.ServerAnswer(sdp=answer))


async def on_answer(hub: SessionHub, conn: Connection, frame: m.Answer) -> None:
    room = in_media_session(conn)
    assert conn.identity is not None
    await hub.media.subscriber_answer(room, conn.identity.participant_id, frame.sdp)


async def on_request_offer(hub: SessionHub, conn: Connection, frame: m.RequestOffer) -> None:
    room = in_media_session(conn)
    assert conn.identity is not None
    await hub.media.request_offer(room, conn.identity.participant_id)


async def on_ping(hub: SessionHub, conn: Connection, frame: m.Ping) -> None:
    conn.send(m.Pong(t=frame.t))


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
    if kind == "media_state" and event.get("state") == "failed":
        return m.Notice(level="warning", code="media_failed",
                        message="the media connection failed; reconnecting",
                        detail={"direction": str(event.get("direction", ""))})
    return None
