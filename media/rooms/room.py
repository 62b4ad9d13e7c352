"""One class or consult on the relay: its participants' connections, routed by `routing.route`.

Whenever something routing depends on changes (a track comes or goes, someone joins or
leaves, the spotlight moves, a classroom is muted) the room recomputes who receives what and
hands each participant's downlink its new set of tracks. With a trunk open (`media.trunk`),
the publishers other nodes serve take part in routing as remote participants (publishers
with their role, never receivers) and the local publications cross to those nodes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from media.adapt.budget import Priority
from media.errors import MediaUserError, UnknownParticipant
from media.forward.forwarder import InboundTrack
from media.peers.config import PeerConfig
from media.peers.downlink import Downlink
from media.peers.uplink import Uplink
from media.recording.recorder import RoomRecorder
from media.rooms.routing import ROOM_KINDS, SOURCES, route, routing_role
from media.trunk.remote import RemoteParticipant, Trunk

logger = logging.getLogger(__name__)

LEAD_ROLES = frozenset({"teacher", "doctor"})
"""Routing roles whose microphone and camera come first in every subscriber's budget."""

Event = dict[str, Any]
RoomEventCallback = Callable[[str, Event], None]
"""(participant id, event)."""


@dataclass
class _Participant:
    role: str
    downlink: Downlink
    uplink: Uplink | None = None


class Room:
    """The relay's state for one room: participants, their tracks, spotlight and mutes."""

    def __init__(
        self, room_id: str, kind: str, config: PeerConfig, emit: RoomEventCallback
    ) -> None:
        if kind not in ROOM_KINDS:
            raise MediaUserError(f"unknown room kind {kind!r}")
        self.room_id = room_id
        self.kind = kind
        self.spotlight: str | None = None
        self.muted: set[str] = set()
        self._config = config
        self._emit = emit
        self._participants: dict[str, _Participant] = {}
        self.recorder: RoomRecorder | None = None
        """The recording in progress (media/recording/recorder.py), if any."""
        self.trunk: Trunk | None = None
        """The room's trunk to the other nodes serving it (`media.trunk`), once opened."""
        self._trunk_opening = asyncio.Lock()

    @property
    def participant_ids(self) -> list[str]:
        return list(self._participants)

    async def join(self, participant_id: str, role: str) -> None:
        try:
            routing_role(self.kind, role)
        except ValueError as exc:
            raise MediaUserError(str(exc)) from None
        existing = self._participants.get(participant_id)
        if existing is not None:
            existing.role = role
        else:
            downlink = Downlink(
                participant_id,
                self._config,
                functools.partial(self._emit, participant_id),
                self._priority,
            )
            self._participants[participant_id] = _Participant(role, downlink)
        self._reroute()

    async def leave(self, participant_id: str) -> None:
        participant = self._participants.pop(participant_id, None)
        if participant is None:
            return
        if self.spotlight == participant_id:
            self.spotlight = None
        self.muted.discard(participant_id)
        self._reroute()
        await self._close_participant(participant)

    async def publish(self, participant_id: str, offer_sdp: str, sources: dict[str, str]) -> str:
        participant = self._get(participant_id)
        bad = sorted(set(sources.values()) - set(SOURCES))
        if bad:
            raise MediaUserError(f"unknown sources {bad}; expected some of {list(SOURCES)}")
        if participant.uplink is None:

            def uplink_state(state: str) -> None:
                self._emit(participant_id, {"type": "media_state", "state": state,
                                            "direction": "up"})

            participant.uplink = Uplink(
                participant_id, self._config, self._reroute, uplink_state,
                functools.partial(self._emit, participant_id),
            )
        return await participant.uplink.handle_offer(offer_sdp, sources)

    async def subscriber_answer(self, participant_id: str, answer_sdp: str) -> None:
        await self._get(participant_id).downlink.apply_answer(answer_sdp)

    async def request_offer(self, participant_id: str) -> None:
        await self._get(participant_id).downlink.request_offer()

    def set_spotlight(self, participant_id: str | None) -> None:
        if participant_id is not None:
            self._known(participant_id)
        self.spotlight = participant_id
        self._reroute()

    def set_muted(self, participant_id: str, muted: bool) -> None:
        self._known(participant_id)
        if muted:
            self.muted.add(participant_id)
        else:
            self.muted.discard(participant_id)
        self._reroute()

    def set_data_budget(self, participant_id: str, mb_per_hour: float | None) -> None:
        """Keep the participant's downlink within `mb_per_hour` (None: no budget)."""
        try:
            self._get(participant_id).downlink.data_saver.set_budget(mb_per_hour)
        except ValueError as exc:
            raise MediaUserError(str(exc)) from None

    def start_recording(self, recorder: RoomRecorder) -> None:
        """Tap every published track into `recorder` (and those published later)."""
        if self.recorder is not None:
            self.recorder.stop()
        self.recorder = recorder
        self._sync_recorder()

    def stop_recording(self) -> RoomRecorder | None:
        """Untap the tracks; the recorder's writer finishes in the background."""
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            recorder.stop()
        return recorder

    async def open_trunk(self, host: str | None, node_id: str, secret: bytes) -> str:
        """Open the room's trunk endpoint on `host` (idempotent); its "host:port"."""
        async with self._trunk_opening:
            if self.trunk is None:
                trunk = Trunk(self, node_id, secret)
                await trunk.open(host)
                self.trunk = trunk
            return self.trunk.address

    async def set_trunk_peers(
        self, peers: Mapping[str, str], siblings: Iterable[str] = ()
    ) -> None:
        """The other nodes serving the room now (node id -> trunk "host:port"); `siblings`
        those that are other workers of this node (`media.trunk.remote.Trunk.set_peers`)."""
        if self.trunk is None:
            raise MediaUserError(f"room {self.room_id!r} has no trunk open")
        try:
            await self.trunk.set_peers(peers, siblings)
        except (ValueError, OSError) as exc:
            raise MediaUserError(f"bad trunk peers: {exc}") from None

    # -- what the trunk asks (`media.trunk.remote.TrunkRoom`) -------------------------------

    def local_publishers(self) -> list[tuple[str, str, list[InboundTrack]]]:
        """(id, role, published tracks) of each local participant publishing something."""
        found = []
        for pid, participant in self._participants.items():
            tracks = [t for t in self._tracks_of(participant) if not t.closed]
            if tracks:
                found.append((pid, participant.role, tracks))
        return found

    def is_local(self, participant_id: str) -> bool:
        return participant_id in self._participants

    def remote_changed(self) -> None:
        self._reroute()

    async def close(self) -> None:
        trunk, self.trunk = self.trunk, None
        if trunk is not None:
            await trunk.close()
        self.stop_recording()
        participants = list(self._participants.values())
        self._participants.clear()
        for participant in participants:
            await self._close_participant(participant)

    def describe(self) -> dict[str, Any]:
        """What the room forwards right now (for health checks, debugging and tests)."""
        remote: dict[str, Any] = {
            pid: {
                "remote": p.node,
                "role": p.role,
                "publishing": sorted(p.tracks),
            }
            for pid, p in self._remote().items()
        }
        described: dict[str, Any] = {
            "kind": self.kind,
            "spotlight": self.spotlight,
            "muted": sorted(self.muted),
            "participants": {
                pid: {
                    "role": p.role,
                    "publishing": sorted(t.source for t in self._tracks_of(p)),
                    "up": p.uplink.connection_state if p.uplink else "new",
                    "down": p.downlink.connection_state,
                    "receiving": sorted(
                        f"{s.track.participant_id}:{s.track.source}"
                        for s in p.downlink.streams
                        if s.track is not None
                    ),
                    "transceivers": p.downlink.transceiver_count,
                    "data_budget_mb_h": p.downlink.data_saver.budget_mb_h,
                }
                for pid, p in self._participants.items()
            },
        }
        described["participants"].update(remote)
        if self.trunk is not None:
            described["trunk"] = self.trunk.describe()
        return described

    def rungs(self) -> dict[str, int]:
        """How many subscribers are on each rung (those receiving video and decided)."""
        counts: dict[str, int] = {}
        for participant in self._participants.values():
            rung = participant.downlink.adaptation.rung
            if rung is not None:
                counts[str(rung)] = counts.get(str(rung), 0) + 1
        return counts

    def outbound_streams(self, participant_id: str) -> list[Any]:
        """The participant's outbound streams (adaptation reads their link figures)."""
        return self._get(participant_id).downlink.streams

    # -- internals ---------------------------------------------------------------------------

    def _get(self, participant_id: str) -> _Participant:
        participant = self._participants.get(participant_id)
        if participant is None:
            raise UnknownParticipant(f"{participant_id!r} has not joined room {self.room_id!r}")
        return participant

    def _known(self, participant_id: str) -> None:
        """UnknownParticipant unless the participant is here, or (with a trunk open) may be
        served by another node: one that has not published yet is known to none here."""
        if self.trunk is None:
            self._get(participant_id)

    @staticmethod
    def _tracks_of(participant: _Participant) -> list[InboundTrack]:
        return list(participant.uplink.tracks.values()) if participant.uplink else []

    def _remote(self) -> dict[str, RemoteParticipant]:
        """The publishers other nodes serve (none without a trunk)."""
        return self.trunk.remote_participants() if self.trunk is not None else {}

    def _published(self) -> tuple[dict[tuple[str, str], InboundTrack], dict[str, str]]:
        """Every track routing may hand out, local and remote, and every publisher's role."""
        tracks: dict[tuple[str, str], InboundTrack] = {}
        roles = {pid: p.role for pid, p in self._participants.items()}
        for pid, participant in self._participants.items():
            for track in self._tracks_of(participant):
                tracks[(pid, track.source)] = track
        for pid, remote in self._remote().items():
            roles[pid] = remote.role
            for source, track in remote.tracks.items():
                tracks[(pid, source)] = track
        return tracks, roles

    def _priority(self, track: InboundTrack) -> Priority:
        """Priority of a track inside a subscriber's budget (see `budget.Priority`)."""
        publisher = self._participants.get(track.participant_id)
        role_name = publisher.role if publisher is not None else None
        if role_name is None:
            remote = self._remote().get(track.participant_id)
            role_name = remote.role if remote is not None else None
        role = ""
        if role_name is not None:
            try:
                role = routing_role(self.kind, role_name)
            except ValueError:
                role = ""
        lead = role in LEAD_ROLES
        if track.kind == "audio":
            return Priority.LEAD_AUDIO if lead else Priority.AUDIO
        if track.source == "screen":
            return Priority.SCREEN
        if lead or track.participant_id == self.spotlight:
            return Priority.SPEAKER_VIDEO
        return Priority.OTHER_VIDEO

    def _reroute(self) -> None:
        tracks, roles = self._published()
        roles = {pid: role for pid, role in roles.items() if _valid_role(self.kind, role)}
        published: dict[str, list[str]] = {}
        for pid, source in tracks:
            published.setdefault(pid, []).append(source)
        routes = route(self.kind, roles, published, self.spotlight, self.muted)
        for pid, participant in self._participants.items():
            wanted = sorted(routes.get(pid, ()), key=lambda r: (r[0], SOURCES.index(r[1])))
            participant.downlink.set_tracks([tracks[r] for r in wanted])
        self._sync_recorder()
        if self.trunk is not None:
            self.trunk.local_changed()

    def _sync_recorder(self) -> None:
        """Tell the recording (if any) the published tracks, roles and spotlight now."""
        if self.recorder is None:
            return
        tracks, roles = self._published()
        self.recorder.sync(tracks, roles, self.spotlight)

    async def _close_participant(self, participant: _Participant) -> None:
        if participant.uplink is not None:
            await participant.uplink.close()
        await participant.downlink.close()


def _valid_role(kind: str, role: str) -> bool:
    """Whether `role` has a place in a `kind` room (a remote node may announce anything)."""
    try:
        routing_role(kind, role)
    except ValueError:
        return False
    return True
