"""The rooms this node serves, and the store's registry of who serves each class room.

Every node serving a class room (its origin included) opens the room's media trunk
(`MediaBackend.open_trunk`) and keeps `room:<id>:serve:<node>` = a `ServingRecord` (its trunk
address, how many of the room's participants it serves) with a short time to live, refreshed
by the placement heartbeat. Each heartbeat it reads the room's serving records and hands the
others' trunk addresses to its relay (`set_trunk_peers`) when they changed: a dead node's
record expires within `SERVE_TTL_S`, and its participants leave the other nodes' rooms. When the
last participant this node serves leaves, it stops serving: its record goes, and the room is
closed here unless this node is its origin.

The class's controls (the spotlight and the muted participants) live in the store; every
serving node applies them to its own relay when the session changes and again after someone
joined here (a participant leaving a room takes its spotlight and mute along). A relay with the
room's trunk open keeps them for participants it has not seen yet (they may publish through
another node); one it refuses is tried again on the next heartbeats.
Consults never span, so they are served without a trunk or a record.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

import msgspec

from broker.errors import StoreUnavailable
from media.backend import MediaBackend
from media.errors import MediaError, MediaUserError
from signaling.placement import Placement
from signaling.services import Services
from signaling.session_view import muted_map

log = logging.getLogger("tongxin.serving")

SERVE_TTL_S = 3.0
"""A serving record not refreshed for this long is gone (its node is dead)."""


class ServingRecord(msgspec.Struct, frozen=True):
    """One node serving one room, as registered in the store."""

    trunk: str
    """Where that node's relay takes this room's trunk datagrams ("host:port")."""
    participants: int = 0
    """How many of the room's participants that node serves."""
    members: list[str] = []
    """Which ones (a participant who comes back through another node returns to its seat)."""


def serve_prefix(room_id: str) -> str:
    return f"room:{room_id}:serve:"


def serve_key(room_id: str, node_id: str) -> str:
    return serve_prefix(room_id) + node_id


@dataclass
class ServedRoom:
    """One room this node serves."""

    kind: str
    members: set[str] = field(default_factory=set)
    """Participants whose media this node carries in the room."""
    trunk: str | None = None
    """This node's trunk address for the room (class rooms only)."""
    peers: dict[str, str] | None = None
    """The trunk peers last handed to the relay (None: not yet)."""
    spotlight: str | None = None
    muted: frozenset[str] = frozenset()
    """The controls last applied to the relay."""
    stale: bool = True
    """The relay may not have them (someone joined here, or an apply was refused): apply all
    again."""


class ServingRooms:
    """See the module docstring."""

    def __init__(self, services: Services, media: MediaBackend, placement: Placement) -> None:
        self.services = services
        self.store = services.store
        self.media = media
        self.placement = placement
        self.rooms: dict[str, ServedRoom] = {}
        self._decoder = msgspec.json.Decoder(ServingRecord)

    @property
    def node_id(self) -> str:
        return self.placement.node_id

    # --- joining and leaving ----------------------------------------------------------------
    async def serve(self, room_id: str, kind: str, participant_id: str) -> None:
        """This node now carries `participant_id` in the (open) room: open its trunk and
        register as serving it, then tell the relay who else does."""
        room = self.rooms.setdefault(room_id, ServedRoom(kind))
        room.members.add(participant_id)
        room.stale = True  # a participant who left took its spotlight and mute along
        if kind != "class":
            return
        if room.trunk is None:
            room.trunk = await self.media.open_trunk(room_id)
        await self._register(room_id, room)
        await self.sync_peers(room_id)

    async def reopen(self, room_id: str) -> None:
        """The relay opened the room again (its worker died): a new trunk, peers told again."""
        room = self.rooms.get(room_id)
        if room is None or room.kind != "class":
            return
        room.trunk = await self.media.open_trunk(room_id)
        room.peers = None
        room.stale = True
        await self._register(room_id, room)
        await self.sync_peers(room_id)

    async def release(self, room_id: str, participant_id: str) -> None:
        """`participant_id` left this node's media of the room; the last one out ends this
        node's serving (and closes the room here when another node is its origin)."""
        room = self.rooms.get(room_id)
        if room is None:
            return
        room.members.discard(participant_id)
        if room.members:
            if room.trunk is not None:
                with contextlib.suppress(StoreUnavailable):
                    await self._register(room_id, room)
            return
        await self.forget(room_id)
        if room_id not in self.placement.held:
            with contextlib.suppress(MediaError):
                await self.media.close_room(room_id)

    async def forget(self, room_id: str) -> None:
        """Stop serving the room (its session ended, or nobody here is in it)."""
        room = self.rooms.pop(room_id, None)
        if room is not None and room.trunk is not None:
            with contextlib.suppress(StoreUnavailable):
                await self.store.delete(serve_key(room_id, self.node_id))

    async def stop(self) -> None:
        """This node is shutting down cleanly: its records go at once."""
        for room_id in list(self.rooms):
            await self.forget(room_id)

    # --- the registry -------------------------------------------------------------------------
    async def _register(self, room_id: str, room: ServedRoom) -> None:
        if room.trunk is None:
            return
        record = ServingRecord(room.trunk, len(room.members), sorted(room.members))
        await self.store.set(serve_key(room_id, self.node_id), msgspec.json.encode(record),
                             ttl=SERVE_TTL_S)

    async def servers(self, room_id: str) -> dict[str, ServingRecord]:
        """Node id -> its record, for every node serving the room now."""
        found = {}
        prefix = serve_prefix(room_id)
        for key in await self.store.keys(prefix):
            raw = await self.store.get(key)
            if raw is None:
                continue
            try:
                found[key.removeprefix(prefix)] = self._decoder.decode(raw)
            except (msgspec.ValidationError, msgspec.DecodeError):
                continue
        return found

    async def server_of(self, room_id: str, participant_id: str) -> str | None:
        """The other node whose record says it carries `participant_id` in the room (its seat
        is there, kept for the resume grace even while its connection is away)."""
        for node, record in (await self.servers(room_id)).items():
            if node != self.node_id and participant_id in record.members:
                return node
        return None

    async def participants_on(self, room_id: str, node_id: str) -> int:
        """How many of the room's participants `node_id` serves (0 when it serves none)."""
        if node_id == self.node_id:
            room = self.rooms.get(room_id)
            return len(room.members) if room is not None else 0
        raw = await self.store.get(serve_key(room_id, node_id))
        if raw is None:
            return 0
        try:
            return self._decoder.decode(raw).participants
        except (msgspec.ValidationError, msgspec.DecodeError):
            return 0

    async def sync_peers(self, room_id: str) -> None:
        """Hand the relay the other serving nodes' trunk addresses, when they changed."""
        room = self.rooms.get(room_id)
        if room is None or room.trunk is None:
            return
        peers = {node: record.trunk for node, record in (await self.servers(room_id)).items()
                 if node != self.node_id}
        if peers == room.peers:
            return
        await self.media.set_trunk_peers(room_id, peers)
        room.peers = peers
        log.info("trunk peers", extra={"room": room_id, "peers": sorted(peers)})

    # --- the class's controls -----------------------------------------------------------------
    async def apply_controls(self, room_id: str) -> None:
        """Apply the class's spotlight and muted participants (from the store) to this node's
        relay when they changed, or all of them when the relay may have lost them. One the
        relay refuses (that participant is not in this node's room yet) is tried again on
        the next heartbeat."""
        room = self.rooms.get(room_id)
        if room is None or room.kind != "class":
            return
        klass = await self.services.classes.find(room_id)
        if klass is None:
            return
        spotlight = klass.spotlight
        muted = frozenset(await self.store.map_all(muted_map(room_id)))
        stale, room.stale = room.stale, False
        if stale or spotlight != room.spotlight:
            try:
                await self.media.set_spotlight(room_id, spotlight)
            except MediaUserError:
                room.stale = True
        changed = muted ^ room.muted
        for pid in (muted | room.muted) if stale else changed:
            try:
                await self.media.set_muted(room_id, pid, pid in muted)
            except MediaUserError:  # nothing to unmute there; a mute is tried again
                room.stale = room.stale or pid in muted
        room.spotlight, room.muted = spotlight, muted

    # --- the heartbeat ------------------------------------------------------------------------
    async def beat(self) -> None:
        """Refresh this node's records, follow the other serving nodes, apply the controls."""
        for room_id in list(self.rooms):
            room = self.rooms.get(room_id)
            if room is None or room.kind != "class":
                continue
            try:
                await self._register(room_id, room)
                await self.sync_peers(room_id)
                if room.stale:
                    await self.apply_controls(room_id)
            except StoreUnavailable:
                raise
            except MediaError as exc:
                log.warning("serving refresh failed", extra={"room": room_id,
                                                             "error": repr(exc)})
