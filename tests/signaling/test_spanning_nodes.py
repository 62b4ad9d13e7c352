"""A class spanning three nodes on one real redis-server: the origin holds the teacher, two
edge nodes serve the classrooms, and the media crosses between them over the trunk.
Classrooms on both edges see and hear the teacher; a classroom whose edge dies is served by
the other edge again; a classroom called on from one edge is seen on the other, and one the
teacher mutes is muted on every node; a classroom joining through the origin is sent to the
edge of its site's region; an edge whose media worker dies opens its trunk again."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from broker.demo import DemoLinks, load_demo
from client.participant import RemoteParticipant
from client.ws import SignalingClient
from signaling.appkeys import HUB
from signaling.serving import serve_prefix
from tests.helpers.cluster import Node, NodeStarter, clip_tracks
from tests.helpers.waiting import wait_until

pytestmark = [pytest.mark.timeout(150), pytest.mark.redis]


NodeFactory = Callable[..., Awaitable[Node]]


@pytest.fixture
async def start_node(redis_url: str, aiohttp_server, tmp_path) -> AsyncIterator[NodeFactory]:
    """Start a node with a media role; its classes span to edges at once (span_after 0)."""
    starter = NodeStarter(redis_url, aiohttp_server, tmp_path)

    async def start(name: str, role: str, region: str | None = None,
                    workers: int = 0, span_after: int = 0) -> Node:
        return await starter.start(name, role, region, workers, span_after=span_after)

    try:
        yield start
    finally:
        await starter.kill_all()


@dataclass
class SpannedClass:
    origin: Node
    edges: list[Node]
    demo: DemoLinks
    teacher: RemoteParticipant
    classrooms: list[RemoteParticipant]
    """One classroom per edge, joined through that edge's address."""

    async def close(self) -> None:
        for p in (self.teacher, *self.classrooms):
            await p.close()


async def spanned_class(start_node: NodeFactory, edge_workers: int = 0) -> SpannedClass:
    origin = await start_node("origin", "origin")
    edges = [await start_node("edge-1", "edge", workers=edge_workers),
             await start_node("edge-2", "edge")]
    s = origin.services
    demo = await load_demo(s.directory, s.classes, s.consults, s.tokens, s.clock())
    teacher = RemoteParticipant(origin.base_url)
    teacher.track_factory = clip_tracks
    await teacher.join_token(demo.host_token)
    await teacher.signaling.expect("session")
    await teacher.publish(clip_tracks())
    classrooms = []
    for edge, token in zip(edges, list(demo.classroom_tokens.values()), strict=False):
        # a classroom's link may land on any node: here each on one edge, the origin known
        classroom = RemoteParticipant(edge.base_url, fallback_urls=(origin.base_url,))
        classroom.track_factory = clip_tracks
        await classroom.join_token(token)
        await classroom.signaling.expect("session", timeout=15)
        await classroom.publish(clip_tracks())
        classrooms.append(classroom)
    return SpannedClass(origin, edges, demo, teacher, classrooms)


def hears_and_sees(receiver: RemoteParticipant, sender: RemoteParticipant) -> bool:
    return (receiver.frames_from(sender.id, "camera") > 10
            and receiver.frames_from(sender.id, "mic") > 10)


def served_by(node: Node) -> set[str]:
    """Participants whose media `node` carries in any room."""
    serving = node.server.app[HUB].serving
    assert serving is not None
    return {pid for room in serving.rooms.values() for pid in room.members}


async def test_classrooms_on_two_edges_see_and_hear_the_teacher_on_the_origin(start_node):
    c = await spanned_class(start_node)
    try:
        assert (await c.edges[0].placement.place(c.demo.class_id)).id == "origin"
        for classroom, edge in zip(c.classrooms, c.edges, strict=True):
            assert classroom.moves == 0 and classroom.signaling.base_url == edge.base_url
            assert served_by(edge) == {classroom.id}
        assert served_by(c.origin) == {c.teacher.id}
        serving = await c.origin.store.keys(serve_prefix(c.demo.class_id))
        assert len(serving) == 3  # the origin and both edges registered their trunks
        await wait_until(lambda: all(hears_and_sees(room, c.teacher) for room in c.classrooms),
                         within=30, what="both edges' classrooms see and hear the teacher")
        described = await c.edges[1].media.describe_room(c.demo.class_id)
        assert described["participants"][c.teacher.id]["remote"] == "origin"
    finally:
        await c.close()


async def test_classrooms_of_a_dead_edge_are_served_by_the_other_edge_again(start_node):
    c = await spanned_class(start_node)
    moving, staying = c.classrooms
    try:
        await wait_until(lambda: all(hears_and_sees(room, c.teacher) for room in c.classrooms),
                         within=30, what="both edges' classrooms see and hear the teacher")
        moves = moving.moves
        killed = time.monotonic()
        await c.edges[0].kill()

        def back_on_the_other_edge() -> bool:
            return (moving.moves > moves and moving.signaling.base_url == c.edges[1].base_url
                    and hears_and_sees(moving, c.teacher))

        # the brief's bound: a dead edge's classrooms receive media again within 10 s
        await wait_until(back_on_the_other_edge, within=10,
                         what="the moved classroom sees and hears the teacher on edge-2")
        print(f"\nedge failover: media flowing again {time.monotonic() - killed:.2f} s after "
              f"the edge died ({moving.moves - moves} moves)")
        assert served_by(c.edges[1]) == {moving.id, staying.id}
        assert hears_and_sees(staying, c.teacher)
    finally:
        await c.close()


async def test_a_classroom_called_on_from_one_edge_is_seen_on_the_other(start_node):
    c = await spanned_class(start_node)
    called, watching = c.classrooms
    try:
        await wait_until(lambda: all(hears_and_sees(room, c.teacher) for room in c.classrooms),
                         within=30, what="both edges' classrooms see and hear the teacher")
        assert watching.frames_from(called.id, "camera") == 0  # not called on yet
        await c.teacher.send({"type": "spotlight", "participant": called.id})
        await watching.signaling.expect("session", where=lambda f: f["spotlight"] == called.id)
        await wait_until(lambda: watching.frames_from(called.id, "camera") > 10, within=30,
                         what="the classroom on edge-2 sees the one called on, on edge-1")
        await wait_until(lambda: c.teacher.frames_from(called.id, "camera") > 10, within=30,
                         what="the teacher sees the classroom called on")
        spotlight = (await c.edges[1].media.describe_room(c.demo.class_id))["spotlight"]
        assert spotlight == called.id
    finally:
        await c.close()


async def test_a_classroom_joining_through_the_origin_is_sent_to_the_edge_of_its_region(
        start_node):
    origin = await start_node("origin", "origin")
    await start_node("edge-1", "edge", "兰州市")  # first by id among equally loaded edges
    near = await start_node("edge-2", "edge", "渭源县")  # the demo's classrooms are there
    s = origin.services
    demo = await load_demo(s.directory, s.classes, s.consults, s.tokens, s.clock())
    teacher = RemoteParticipant(origin.base_url)
    classroom = RemoteParticipant(origin.base_url)
    try:
        await teacher.join_token(demo.host_token)
        await teacher.signaling.expect("session")
        await classroom.join_token(next(iter(demo.classroom_tokens.values())))
        redirect = await classroom.signaling.expect("redirect")
        assert redirect["url"] == near.base_url
        await classroom.signaling.expect("session", timeout=15)
        assert classroom.signaling.base_url == near.base_url and classroom.moves == 1
        assert served_by(near) == {classroom.id}
    finally:
        await teacher.close()
        await classroom.close()


async def test_nodes_configured_with_different_span_after_follow_the_origins(start_node):
    # the origin spans at once; the edge, left at the default, would keep 100 on the origin:
    # each applying its own, they sent a classroom back and forth (300 moves in 8 s)
    origin = await start_node("origin", "origin", span_after=0)
    edge = await start_node("edge-1", "edge", span_after=100)
    s = origin.services
    demo = await load_demo(s.directory, s.classes, s.consults, s.tokens, s.clock())
    teacher = RemoteParticipant(origin.base_url)
    classroom = RemoteParticipant(edge.base_url)  # its link reaches the edge first
    try:
        await teacher.join_token(demo.host_token)
        await teacher.signaling.expect("session")
        await classroom.join_token(next(iter(demo.classroom_tokens.values())))
        await classroom.signaling.expect("session", timeout=15)
        assert classroom.signaling.base_url == edge.base_url and classroom.moves == 0
        assert served_by(edge) == {classroom.id}
        assert (await origin.placement.node("edge-1")).span_after == 100  # registered
    finally:
        await teacher.close()
        await classroom.close()


async def test_a_classroom_muted_by_the_teacher_is_muted_on_every_serving_node(start_node):
    c = await spanned_class(start_node)
    muted, other = c.classrooms
    try:
        await wait_until(lambda: all(hears_and_sees(room, c.teacher) for room in c.classrooms),
                         within=30, what="both edges' classrooms see and hear the teacher")
        await c.teacher.send({"type": "mute", "participant": muted.id, "muted": True})

        async def muted_everywhere() -> bool:
            for node in (c.origin, *c.edges):
                described = await node.media.describe_room(c.demo.class_id)
                if described["muted"] != [muted.id]:
                    return False
            return True

        # its own edge, the origin and the other edge (where it is a remote publisher)
        await wait_until(muted_everywhere, within=15, what="the classroom muted on all nodes")
        assert not [f for f in c.teacher.signaling.history if f["type"] == "error"]
        await c.teacher.send({"type": "mute", "participant": muted.id, "muted": False})

        async def unmuted_everywhere() -> bool:
            return all([(await node.media.describe_room(c.demo.class_id))["muted"] == []
                        for node in (c.origin, *c.edges)])

        await wait_until(unmuted_everywhere, within=15, what="the classroom unmuted everywhere")
        assert hears_and_sees(other, c.teacher)
    finally:
        await c.close()


async def test_a_classroom_coming_back_through_the_origin_returns_to_its_seat_on_its_edge(
        start_node):
    c = await spanned_class(start_node)
    seated = c.classrooms[1]  # on edge-2; edge-1 would win a choice among equal edges
    again = SignalingClient(c.origin.base_url, follow=False)
    try:
        again.grant = seated.signaling.grant  # the same credential, e.g. after a network change
        await again.connect()
        redirect = await again.expect("redirect")
        assert redirect["url"] == c.edges[1].base_url
    finally:
        await again.close()
        await c.close()


@pytest.mark.slow
async def test_an_edge_whose_media_worker_died_opens_its_trunk_again(start_node):
    """The edge's room is placed again on a live worker of that edge (`room_lost`): its trunk
    is opened there and registered again, and the classroom hears the teacher again."""
    c = await spanned_class(start_node, edge_workers=2)
    edge, classroom = c.edges[0], c.classrooms[0]
    try:
        await wait_until(lambda: all(hears_and_sees(room, c.teacher) for room in c.classrooms),
                         within=30, what="both edges' classrooms see and hear the teacher")
        serving = edge.server.app[HUB].serving
        assert serving is not None
        trunk = serving.rooms[c.demo.class_id].trunk
        pids = (await edge.media.health())["pids"]
        holder = max(pids, key=socket_count)  # the room's worker; the other one takes the room
        assert socket_count(holder) > min(socket_count(p) for p in pids), "the room's worker"
        os.kill(holder, signal.SIGKILL)
        await wait_until(lambda: classroom.reconnects > 0, within=30,
                         what="the edge's classroom told to reconnect")
        await wait_until(lambda: serving.rooms[c.demo.class_id].trunk != trunk, within=30,
                         what="the edge's trunk opened again")
        await wait_until(lambda: hears_and_sees(classroom, c.teacher), within=30,
                         what="the classroom hears the teacher again through the new trunk")
        await wait_until(lambda: c.teacher.frames_from(classroom.id, "camera") > 10, within=30,
                         what="the teacher sees the classroom again")
    finally:
        await c.close()



def socket_count(pid: int) -> int:
    """Sockets a process holds: a worker carrying a room holds its peer connections' and its
    trunk's besides the one to the node."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count
