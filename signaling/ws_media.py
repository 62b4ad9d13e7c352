"""WebSocket frames about media: publish, answer, request_offer, and the relay's events.

Thin translations between the protocol and the media backend (media.backend.MediaBackend):
`MediaFrames` handles the three media frames, `media_event_frame` turns a relay event into
the client's frame. Permission checks happen here because only signaling knows the caller's
credential.
"""

from __future__ import annotations

from typing import Any

from broker.errors import Conflict, Forbidden, InvalidInput
from media.backend import MediaBackend
from signaling import messages as m
from signaling.connection import Connection, Identity
from signaling.fanout import Fanout

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
    """Handlers of `publish`, `answer` and `request_offer`, one method each."""

    def __init__(self, hub: Fanout) -> None:
        self.hub = hub

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
