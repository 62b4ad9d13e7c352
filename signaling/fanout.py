"""The hub as the session code sees it: a `typing.Protocol` that `SessionHub` satisfies.

Session state, frame handlers and recording control reach this node's connections through
this small face (who is connected, send to one, broadcast to a session, follow a store
channel, run something in the background) rather than through `signaling.hub` itself, so the
hub can depend on them without them depending back on the hub.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from media.backend import MediaBackend
from signaling import messages as m
from signaling.connection import Connection
from signaling.metrics import NodeMetrics
from signaling.placement import Placement

if TYPE_CHECKING:  # signaling.serving reads session_view, which sees the hub as a Fanout
    from signaling.serving import ServingRooms

LinkReport = dict[str, Any]
"""A participant's last link report (client) or adaptation decision (relay)."""
LinkReports = dict[str, dict[str, LinkReport]]
"""Session -> participant -> its last `LinkReport`."""
EventHandler = Callable[[bytes], Awaitable[None]]
"""Called with each event published on a followed store channel."""


class Fanout(Protocol):
    """What handlers may see and do of this node's connections; see the module docstring."""

    @property
    def media(self) -> MediaBackend | None:
        """The media relay (None on an API-only node)."""

    @property
    def metrics(self) -> NodeMetrics: ...

    @property
    def placement(self) -> Placement | None:
        """Where rooms live when several nodes share the store (None: every room is here)."""

    @property
    def serving(self) -> ServingRooms | None:
        """The rooms this node serves when rooms may span nodes (None: one node)."""

    @property
    def links(self) -> LinkReports: ...

    @property
    def by_participant(self) -> Mapping[str, Connection]:
        """The current connection of each participant joined on this node."""

    def local_members(self, session_id: str) -> list[Connection]:
        """This node's open connections in the media session `session_id`."""

    def broadcast(self, session_id: str, frame: m.ServerFrame) -> None: ...

    def send_to(self, participant_id: str, frame: m.ServerFrame) -> bool:
        """Send to the participant's connection on this node; False when it has none."""

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run `coro` in the background, logging (not raising) its failure."""

    def watch(self, channel: str, on_event: EventHandler) -> None:
        """Follow a store channel (once per channel, whoever asks first)."""

    def unwatch(self, channel: str) -> None: ...
