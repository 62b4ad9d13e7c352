"""The media side as signaling sees it: a `typing.Protocol` that `MediaService` satisfies.

Events reach the callback given to `on_event` as `(room_id, participant_id, event)`, on the
signaling process's event loop, as JSON-able dicts:

- `{"type": "offer", "sdp": str, "tracks": {mid: {"participant": id, "source": src}},
  "connection": int}`: the relay's offer for the participant's down connection; a new
  `connection` number means a new peer connection (create one before applying the offer).
- `{"type": "media_state", "state": "connected"|"disconnected"|"failed",
  "direction": "up"|"down"}`
- `{"type": "room_lost"}`: the room's worker died; the room is re-opened on another worker,
  and the participant must reconnect (join, publish and receive again).
- `{"type": "link", ...}`: downlink quality and the adaptation rung (`reason` is
  `data_saver` when the participant's data budget, not its link, caused a step down).
- `{"type": "layers", "source": "camera", "active": [rid, ...]}`: to a simulcast publisher,
  the layers someone watches (`media.adapt.dynacast`); the others should be paused.
- `{"type": "data", "used_mb", "elapsed_s", "budget_mb_h", "allowed_mb", "ceiling_kbps",
  "verdict"}`: what the participant was sent since it joined and its data budget
  (`media.adapt.data_saver`), every few seconds and when the budget changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

MediaEventCallback = Callable[[str, str, dict[str, Any]], None]


class MediaBackend(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Close every peer connection cleanly and stop the workers."""

    async def health(self) -> dict[str, Any]:
        """{"workers": N, "alive": M, "rooms": R, "participants": P}; raises if unusable."""

    async def open_room(self, room_id: str, kind: str) -> None:
        """Open a "class" or "consult" room (idempotent)."""

    async def close_room(self, room_id: str) -> None: ...

    async def join(self, room_id: str, participant_id: str, role: str) -> None: ...

    async def leave(self, room_id: str, participant_id: str) -> None: ...

    async def publish(
        self, room_id: str, participant_id: str, offer_sdp: str, sources: dict[str, str]
    ) -> str:
        """Apply the participant's up offer (`sources`: mid -> "mic"|"camera"|"screen")."""

    async def subscriber_answer(self, room_id: str, participant_id: str, answer_sdp: str) -> None:
        ...

    async def request_offer(self, room_id: str, participant_id: str) -> None:
        """Emit the down offer again, or a new connection's offer if none is pending."""

    async def set_spotlight(self, room_id: str, participant_id: str | None) -> None: ...

    async def set_muted(self, room_id: str, participant_id: str, muted: bool) -> None: ...

    async def set_data_budget(
        self, room_id: str, participant_id: str, mb_per_hour: float | None
    ) -> None:
        """Keep the participant's downlink within a data budget (None: none); MediaUserError
        when out of range (`media.adapt.data_budget`). The participant then gets `data`
        events: MB used since it joined, the budget, whether the budget limits it."""

    async def start_recording(self, room_id: str, recording_id: str, directory: str) -> None:
        """Record the room's tracks into `directory` (files + manifest.json, see
        media/recording/recorder.py)."""

    async def stop_recording(self, room_id: str) -> dict[str, Any] | None:
        """Stop recording the room; its manifest once the files are closed (None: none on)."""

    async def open_trunk(self, room_id: str) -> str:
        """Open the room's trunk endpoint (the room must be open; idempotent) and return its
        address "host:port": where other nodes send this room's trunk datagrams."""

    async def set_trunk_peers(self, room_id: str, peers: Mapping[str, str]) -> None:
        """The other nodes serving the room now: node id -> their trunk "host:port". Replaces
        the previous set. This room's local publications cross to each peer once; the peers'
        publications appear here as remote participants. A peer dropped from the set (or
        silent for TRUNK_SILENCE_S) takes its remote participants with it (they leave the
        local room)."""

    def on_event(self, callback: MediaEventCallback) -> None: ...
