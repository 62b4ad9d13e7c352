"""Which node holds a room's media, when several nodes share one Redis.

Each node registers itself as `node:<id>` (its URL, load, media role and region, as JSON) with a
short time to live and refreshes it every `HEARTBEAT_S`; a node whose key has expired is dead.
A room is placed on one node, its origin, by an atomic compare-and-set of `room:<id>:node`:
the least-loaded live node that may hold rooms (media role `origin` or `any`; an `edge` node
only when no other is alive), this node on a tie. The holder refreshes that key while it holds
the room. When the holder dies, the next node asked about the room sees a dead holder and
places the room again. Nodes that do not hold a room send its participants a `redirect` frame
(signaling/ws_session.py), unless the room spans nodes and they serve it too
(signaling/spanning.py, signaling/serving.py).

`choose_node` and `choose_origin` are the pure decisions; `Placement` is the thin I/O around
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

import msgspec

from broker.errors import StoreUnavailable
from broker.store import Store
from signaling.cancellation import cancel_and_wait

log = logging.getLogger("tongxin.placement")

NODE_TTL_S = 3.0
"""A node whose registration is older than this is dead."""
HEARTBEAT_S = 1.0
"""How often a node refreshes its registration and its rooms."""
BEATING_S = 2 * HEARTBEAT_S
"""A node that has not refreshed its registration for this long has missed a heartbeat: no new
participant is sent to it."""
ROOM_TTL_S = 10.0
"""A room key not refreshed by its holder for this long is free to take."""
PLACE_ATTEMPTS = 4

LoadSource = Callable[[], tuple[int, int]]
"""(rooms, participants) this node carries now."""
BeatHook = Callable[[], Awaitable[None]]


class NodeLoad(msgspec.Struct, frozen=True):
    """One live node as registered in the store."""

    id: str
    url: str
    rooms: int = 0
    participants: int = 0
    role: str = "any"
    """Its media role: `origin`, `edge` or `any` (signaling/spanning.py)."""
    region: str | None = None
    """Its region (a directory region path or name), when configured."""
    span_after: int | None = None
    """Its `span_after` setting (signaling/spanning.py): a room's origin's value is the one
    every node applies to that room (None: a node from before the setting)."""


def node_key(node_id: str) -> str:
    return f"node:{node_id}"


def room_key(room_id: str) -> str:
    return f"room:{room_id}:node"


def choose_node(nodes: Iterable[NodeLoad], prefer: str | None = None) -> NodeLoad | None:
    """The least-loaded node (fewest participants, then rooms); `prefer` wins ties."""
    return min(nodes, key=lambda n: (n.participants, n.rooms, n.id != prefer, n.id),
               default=None)


def choose_origin(nodes: Iterable[NodeLoad], prefer: str | None = None) -> NodeLoad | None:
    """The node to hold a room: `choose_node` among the nodes that may hold rooms (not
    `edge`), or among all of them when only edge nodes are alive."""
    alive = list(nodes)
    holders = [n for n in alive if n.role != "edge"] or alive
    return choose_node(holders, prefer=prefer)


class Placement:
    """This node's registration and its rooms; see the module docstring."""

    def __init__(self, store: Store, node_id: str, url: str,
                 load: LoadSource | None = None, *, role: str = "any",
                 region: str | None = None, span_after: int | None = None) -> None:
        self.store = store
        self.node_id = node_id
        self.url = url.rstrip("/")
        self.load: LoadSource = load or (lambda: (0, 0))
        self.role = role
        self.region = region
        self.span_after = span_after
        self.held: set[str] = set()
        self.on_beat: BeatHook | None = None
        """Run after each heartbeat (the serving registry refreshes itself there)."""
        self._beat: asyncio.Task[None] | None = None
        self._decoder = msgspec.json.Decoder(NodeLoad)

    @property
    def me(self) -> NodeLoad:
        rooms, participants = self.load()
        return NodeLoad(self.node_id, self.url, max(rooms, len(self.held)), participants,
                        role=self.role, region=self.region, span_after=self.span_after)

    async def start(self) -> None:
        await self._register()
        self._beat = asyncio.get_running_loop().create_task(self._beat_forever())

    async def stop(self, graceful: bool = True) -> None:
        """Stop refreshing; `graceful` also frees this node's rooms and registration at once
        (otherwise they expire, as when the node crashes)."""
        if self._beat is not None:
            await cancel_and_wait(self._beat)
            self._beat = None
        if graceful:
            with contextlib.suppress(StoreUnavailable):
                for room in list(self.held):
                    await self.store.release(room_key(room), self.node_id)
                await self.store.delete(node_key(self.node_id))
        self.held.clear()

    async def _register(self) -> None:
        await self.store.set(node_key(self.node_id), msgspec.json.encode(self.me),
                             ttl=NODE_TTL_S)

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self._register()
                for room in list(self.held):
                    mine = self.node_id.encode()
                    if not await self.store.compare_and_set(room_key(room), mine, mine,
                                                            ttl=ROOM_TTL_S):
                        self.held.discard(room)  # placed elsewhere while we were away
                if self.on_beat is not None:
                    await self.on_beat()
            except StoreUnavailable:
                continue
            except Exception:
                log.exception("placement heartbeat failed")

    async def node(self, node_id: str) -> NodeLoad | None:
        raw = await self.store.get(node_key(node_id))
        if raw is None:
            return None
        try:
            return self._decoder.decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None

    async def live_nodes(self, *, beating: bool = False) -> list[NodeLoad]:
        """The registered nodes; `beating`: only those that refreshed their registration
        within `BEATING_S` (a node that just died is left out before its key expires)."""
        nodes = []
        for key in await self.store.keys("node:"):
            node_id = key.removeprefix("node:")
            if beating and node_id != self.node_id:
                left = await self.store.ttl(key)
                if left is None or left < NODE_TTL_S - BEATING_S:
                    continue
            found = await self.node(node_id)
            if found is not None:
                nodes.append(found)
        return nodes

    async def place(self, room_id: str) -> NodeLoad:
        """The live node holding `room_id`, placing it first when nobody (alive) holds it."""
        key = room_key(room_id)
        for _ in range(PLACE_ATTEMPTS):
            raw = await self.store.get(key)
            if raw is not None:
                holder_id = raw.decode()
                if holder_id == self.node_id:
                    self.held.add(room_id)
                    return self.me
                holder = await self.node(holder_id)
                if holder is not None:
                    return holder
            others = [n for n in await self.live_nodes() if n.id != self.node_id]
            chosen = choose_origin([*others, self.me], prefer=self.node_id)
            assert chosen is not None
            if await self.store.compare_and_set(key, raw, chosen.id.encode(), ttl=ROOM_TTL_S):
                if chosen.id == self.node_id:
                    self.held.add(room_id)
                log.info("room placed", extra={"room": room_id, "node": chosen.id})
                return chosen
        raise StoreUnavailable("could not place the room; retry")

    async def release(self, room_id: str) -> None:
        """This node no longer holds `room_id` (the session ended)."""
        if room_id in self.held:
            self.held.discard(room_id)
            with contextlib.suppress(StoreUnavailable):
                await self.store.release(room_key(room_id), self.node_id)
