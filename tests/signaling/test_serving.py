"""The serving registry (signaling/serving.py) of two nodes on one store, with real relays:
each registers its trunk, learns the other's on a heartbeat, forgets a node whose record
expired, and stops serving (closing the room unless it holds it) when its last participant
leaves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker.memory_store import MemoryStore
from media.service import MediaService
from signaling.config import ServeConfig
from signaling.placement import Placement
from signaling.services import Services
from signaling.serving import ServingRooms, serve_key

ROOM = "class-1"


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[tuple[ServingRooms, ServingRooms]]:
    store = MemoryStore()
    made: list[tuple[ServingRooms, MediaService]] = []
    secret = b"s" * 32
    for name in ("a", "b"):
        media = MediaService(workers=0, node_id=name, trunk_secret=secret)
        await media.start()
        services = Services(ServeConfig(media_workers=0, demo=False, data_dir=tmp_path),
                            store, media)
        made.append((ServingRooms(services, media, Placement(store, name, f"http://{name}")),
                     media))
    try:
        yield made[0][0], made[1][0]
    finally:
        for _, media in made:
            await media.stop()
        await store.close()


async def open_and_serve(node: ServingRooms, participant: str) -> None:
    await node.media.open_room(ROOM, "class")
    await node.serve(ROOM, "class", participant)


async def test_serving_nodes_register_their_trunks_and_learn_each_other(nodes):
    a, b = nodes
    a.placement.held.add(ROOM)  # a is the room's origin
    await open_and_serve(a, "teacher")
    await open_and_serve(b, "room-1")
    trunks = {n.node_id: (n.rooms[ROOM].trunk or "") for n in (a, b)}
    assert all(":" in t for t in trunks.values())
    assert b.rooms[ROOM].peers == {"a": trunks["a"]}  # a joiner learns the others at once
    assert a.rooms[ROOM].peers is not None and a.rooms[ROOM].peers == {}
    await a.beat()  # ...the others on their next heartbeat
    assert a.rooms[ROOM].peers == {"b": trunks["b"]}
    assert await a.participants_on(ROOM, "b") == 1
    await open_and_serve(b, "room-2")
    assert await a.participants_on(ROOM, "b") == 2
    assert await a.participants_on(ROOM, "nobody") == 0


async def test_a_node_whose_record_expired_leaves_the_others_peers(nodes):
    a, b = nodes
    await open_and_serve(a, "teacher")
    await open_and_serve(b, "room-1")
    await a.beat()
    assert set(a.rooms[ROOM].peers or {}) == {"b"}
    await a.store.delete(serve_key(ROOM, "b"))  # as when b dies and its record expires
    await a.beat()
    assert a.rooms[ROOM].peers == {}


async def test_the_last_participant_out_ends_serving_and_an_edge_closes_the_room(nodes):
    a, b = nodes
    a.placement.held.add(ROOM)
    await open_and_serve(a, "teacher")
    await open_and_serve(b, "room-1")
    await open_and_serve(b, "room-2")
    await b.release(ROOM, "room-1")
    assert await a.store.get(serve_key(ROOM, "b")) is not None
    await b.release(ROOM, "room-2")
    assert ROOM not in b.rooms
    assert await a.store.get(serve_key(ROOM, "b")) is None
    assert (await b.media.health())["rooms"] == 0  # not its room: closed here
    await a.release(ROOM, "teacher")
    assert await a.store.get(serve_key(ROOM, "a")) is None
    assert (await a.media.health())["rooms"] == 1  # the origin keeps its room open


async def test_consults_never_open_a_trunk(nodes):
    a, _ = nodes
    await a.media.open_room("consult-1", "consult")
    await a.serve("consult-1", "consult", "clinic")
    assert a.rooms["consult-1"].trunk is None
    assert await a.store.keys("room:consult-1:serve:") == []


async def test_every_serving_node_applies_the_class_controls_kept_in_the_store(nodes):
    from broker.demo import load_demo
    from broker.models import Actor, Role
    from signaling.session_view import muted_map

    _, b = nodes
    s = b.services
    demo = await load_demo(s.directory, s.classes, s.consults, s.tokens, s.clock())
    room, called, quiet = demo.class_id, *list(demo.classroom_tokens)[:2]
    await b.media.open_room(room, "class")
    for pid in (called, quiet):
        await b.serve(room, "class", pid)
        await b.media.join(room, pid, "assistant")
    klass = await s.classes.get(room)
    teacher = Actor(klass.teacher_id, Role.TEACHER)
    await s.classes.join(room, teacher)
    await s.classes.set_spotlight(room, called, teacher)
    await s.store.map_set(muted_map(room), quiet, b"1")
    await s.store.map_set(muted_map(room), "elsewhere", b"1")  # may publish through the trunk
    await b.apply_controls(room)
    described = await b.media.describe_room(room)
    assert described["spotlight"] == called
    assert described["muted"] == sorted([quiet, "elsewhere"])
    assert not b.rooms[room].stale

    await b.media.leave(room, called)  # back on this node: the relay forgot its spotlight
    await b.serve(room, "class", called)
    await b.media.join(room, called, "assistant")
    await s.store.map_delete(muted_map(room), quiet)
    await b.apply_controls(room)
    described = await b.media.describe_room(room)
    assert described["spotlight"] == called and described["muted"] == ["elsewhere"]
