"""A room served by two nodes linked by the trunk (two `MediaService`s in one process, real
aiortc participants, real UDP on loopback): publishers on one node reach subscribers on the
other, keyframe requests cross back, a peer removed or silent takes its participants along,
and what does not come from a peer, or does not open, is dropped and counted."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from client.clip import ClipTrack, load_clip
from client.peer import FrameLog, PeerClient
from media.service import MediaService
from media.trunk.endpoint import split_address
from media.trunk.wire import Kind, Sealer
from tests.media.relay_harness import RelayHarness, wait_until

pytestmark = pytest.mark.timeout(180)

SECRET = b"cluster secret shared by every node"


def small_tracks(
    log: FrameLog, sources: tuple[str, ...], keyframe_interval: int = 60
) -> dict[str, ClipTrack]:
    """Light clips (320x180 VP8 at 300 kbit/s, Opus)."""
    video = load_clip(
        "vp8", width=320, height=180, bitrate=300_000, keyframe_interval=keyframe_interval
    )
    audio = load_clip("opus")
    return {
        s: ClipTrack(audio if s == "mic" else video, on_frame=log.recorder(s)) for s in sources
    }


async def frames_flow(client: PeerClient, participant: str, source: str, frames: int = 10) -> None:
    start = client.track(participant, source).frames
    await wait_until(
        lambda: client.track(participant, source).frames >= start + frames,
        what=f"{frames} frames of {participant}:{source} at {client.participant_id}",
    )


class Nodes:
    """Two nodes of one cluster, each with a harness answering its participants' offers."""

    def __init__(self, origin: MediaService, edge: MediaService) -> None:
        self.origin = RelayHarness(origin)
        self.edge = RelayHarness(edge)

    async def open_linked(self, room_id: str, kind: str) -> tuple[str, str]:
        """Open the room on both nodes and link their trunks; their trunk addresses."""
        origin, edge = self.origin.service, self.edge.service
        await origin.open_room(room_id, kind)
        await edge.open_room(room_id, kind)
        at_origin = await origin.open_trunk(room_id)
        at_edge = await edge.open_trunk(room_id)
        assert await origin.open_trunk(room_id) == at_origin, "idempotent"
        await origin.set_trunk_peers(room_id, {"edge": at_edge})
        await edge.set_trunk_peers(room_id, {"origin": at_origin})
        return at_origin, at_edge


async def started(workers: int, node_id: str) -> MediaService:
    service = MediaService(workers, node_id=node_id, trunk_secret=SECRET)
    await service.start()
    return service


@pytest.fixture
async def nodes() -> AsyncIterator[Nodes]:
    pair = Nodes(await started(0, "origin"), await started(0, "edge"))
    yield pair
    for harness in (pair.origin, pair.edge):
        await harness.close()
        await harness.service.stop()


def local_track(service: MediaService, room_id: str, participant: str, source: str):  # type: ignore[no-untyped-def]
    """The `InboundTrack` a node forwards for `participant`'s `source` (local or remote)."""
    assert service._local is not None
    room = service._local.rooms[room_id]
    tracks, _roles = room._published()
    return tracks[(participant, source)]


async def test_a_teacher_on_the_origin_reaches_classrooms_on_the_edge(nodes: Nodes) -> None:
    await nodes.open_linked("class-1", "class")
    log = FrameLog(keep_order=False)
    teacher = await nodes.origin.join("class-1", "t", "teacher", log)
    rooms = [await nodes.edge.join("class-1", name, "classroom", log) for name in ("a", "b")]
    await teacher.publish(small_tracks(log, ("mic", "camera")))
    for room in rooms:
        await wait_until(lambda room=room: room.receiving() == {("t", "mic"), ("t", "camera")},
                         what="the edge's classrooms offered the teacher")
        await frames_flow(room, "t", "camera")
        await frames_flow(room, "t", "mic")
        assert room.track("t", "camera").keyframe_sizes, "a decodable start"

    described = await nodes.edge.service.describe_room("class-1")
    assert described["participants"]["t"] == {
        "remote": "origin", "role": "teacher", "publishing": ["camera", "mic"],
    }
    assert described["participants"]["a"]["receiving"] == ["t:camera", "t:mic"]
    # each packet crossed once, however many subscribers the edge serves
    for source in ("mic", "camera"):
        sent = local_track(nodes.origin.service, "class-1", "t", source).packets
        arrived = local_track(nodes.edge.service, "class-1", "t", source).packets
        assert 0 < arrived <= sent
    origin_trunk = (await nodes.origin.service.describe_room("class-1"))["trunk"]
    teacher_packets = sum(
        local_track(nodes.origin.service, "class-1", "t", s).packets for s in ("mic", "camera")
    )
    assert origin_trunk["sent"] < teacher_packets + 100, "one datagram a packet (+ announces)"
    assert nodes.origin.errors == [] and nodes.edge.errors == []


async def test_a_keyframe_request_on_the_edge_reaches_the_publisher(nodes: Nodes) -> None:
    await nodes.open_linked("class-2", "class")
    log = FrameLog(keep_order=False)
    teacher = await nodes.origin.join("class-2", "t", "teacher", log)
    first = await nodes.edge.join("class-2", "a", "classroom", log)
    tracks = small_tracks(log, ("camera",), keyframe_interval=10_000)  # one keyframe a loop
    await teacher.publish(tracks)
    await frames_flow(first, "t", "camera")
    asked = tracks["camera"].keyframe_requests
    plis = local_track(nodes.origin.service, "class-2", "t", "camera").plis_sent

    late = await nodes.edge.join("class-2", "b", "classroom", log)
    await frames_flow(late, "t", "camera")
    await wait_until(lambda: bool(late.track("t", "camera").keyframe_sizes),
                     what="a keyframe for the late subscriber")
    assert tracks["camera"].keyframe_requests > asked
    assert local_track(nodes.origin.service, "class-2", "t", "camera").plis_sent > plis


async def test_a_classroom_on_the_edge_reaches_the_teacher_on_the_origin(nodes: Nodes) -> None:
    await nodes.open_linked("class-3", "class")
    log = FrameLog(keep_order=False)
    teacher = await nodes.origin.join("class-3", "t", "teacher", log)
    classroom = await nodes.edge.join("class-3", "a", "classroom", log)
    await teacher.publish(small_tracks(log, ("mic", "camera")))
    await classroom.publish(small_tracks(log, ("mic", "camera")))
    await frames_flow(teacher, "a", "camera")
    await frames_flow(teacher, "a", "mic")
    await frames_flow(classroom, "t", "camera")
    assert teacher.receiving() == {("a", "mic"), ("a", "camera")}

    # the spotlight and mutes name remote participants as local ones
    await nodes.origin.service.set_muted("class-3", "a", True)
    await wait_until(lambda: teacher.receiving() == {("a", "camera")},
                     what="the muted classroom's microphone withdrawn")


async def test_a_removed_peer_takes_its_participants_along(nodes: Nodes) -> None:
    await nodes.open_linked("class-4", "class")
    log = FrameLog(keep_order=False)
    teacher = await nodes.origin.join("class-4", "t", "teacher", log)
    classroom = await nodes.edge.join("class-4", "a", "classroom", log)
    await teacher.publish(small_tracks(log, ("mic", "camera")))
    await frames_flow(classroom, "t", "camera")

    await nodes.edge.service.set_trunk_peers("class-4", {})
    await wait_until(lambda: classroom.receiving() == set(),
                     what="the teacher's tracks withdrawn from the edge's classroom")
    described = await nodes.edge.service.describe_room("class-4")
    assert "t" not in described["participants"]


async def test_a_silent_peer_takes_its_participants_along(nodes: Nodes) -> None:
    await nodes.open_linked("consult-1", "consult")
    log = FrameLog(keep_order=False)
    doctor = await nodes.origin.join("consult-1", "doctor", "doctor", log)
    clinic = await nodes.edge.join("consult-1", "clinic", "clinic", log)
    await doctor.publish(small_tracks(log, ("mic",)))
    await frames_flow(clinic, "doctor", "mic")

    await nodes.origin.service.close_room("consult-1")  # the origin goes quiet
    await wait_until(lambda: clinic.receiving() == set(), timeout=15.0,
                     what="the silent origin's doctor gone from the edge")
    described = await nodes.edge.service.describe_room("consult-1")
    assert described["participants"].keys() == {"clinic"}


async def test_strangers_and_forgeries_are_dropped_and_counted(nodes: Nodes) -> None:
    at_origin, at_edge = await nodes.open_linked("consult-2", "consult")
    log = FrameLog(keep_order=False)
    doctor = await nodes.origin.join("consult-2", "doctor", "doctor", log)
    clinic = await nodes.edge.join("consult-2", "clinic", "clinic", log)
    await doctor.publish(small_tracks(log, ("mic", "camera")))
    await frames_flow(clinic, "doctor", "camera")

    rogue = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rogue.bind(("127.0.0.1", 0))
    rogue_address = f"127.0.0.1:{rogue.getsockname()[1]}"
    edge_address = split_address(at_edge)
    try:
        for _ in range(5):  # not a peer (yet)
            rogue.sendto(b"\x01" + b"\x00" * 40, edge_address)
        await wait_until(
            lambda: nodes.edge.service._local.rooms["consult-2"].trunk.endpoint.unknown >= 5,  # type: ignore[union-attr]
            what="datagrams from a stranger counted",
        )
        await nodes.edge.service.set_trunk_peers(
            "consult-2", {"origin": at_origin, "rogue": rogue_address}
        )
        forged = [
            b"",
            b"garbage",
            b"\x01" + b"\x00" * 100,
            Sealer(b"another cluster", "consult-2", "rogue").seal(Kind.ANNOUNCE, b"{}"),
            Sealer(SECRET, "consult-2", "origin").seal(Kind.ANNOUNCE, b"{}"),  # claims origin
            Sealer(SECRET, "another room", "rogue").seal(Kind.MEDIA, b"\x00" * 40),
        ]
        for datagram in forged:
            rogue.sendto(datagram, edge_address)
        # sealed right but nonsense inside: opens, then goes nowhere
        nonsense = Sealer(SECRET, "consult-2", "rogue")
        for kind in Kind:
            rogue.sendto(nonsense.seal(kind, b"\xff\x00nonsense"), edge_address)
        await wait_until(
            lambda: (
                nodes.edge.service._local.rooms["consult-2"].trunk.endpoint.rejected  # type: ignore[union-attr]
                >= len(forged)
            ),
            what="forged datagrams counted",
        )
        await asyncio.sleep(0.2)
        described = await nodes.edge.service.describe_room("consult-2")
        assert described["trunk"]["rejected"] == len(forged)
        assert described["participants"].keys() == {"clinic", "doctor"}
        await frames_flow(clinic, "doctor", "camera")  # the room carries on
        await frames_flow(clinic, "doctor", "mic")
    finally:
        rogue.close()


async def test_a_worker_process_node_links_with_an_in_process_one() -> None:
    pair = Nodes(await started(1, "origin"), await started(0, "edge"))
    try:
        await pair.open_linked("class-5", "class")
        log = FrameLog(keep_order=False)
        teacher = await pair.origin.join("class-5", "t", "teacher", log)
        classroom = await pair.edge.join("class-5", "a", "classroom", log)
        teacher_on_edge = await pair.edge.join("class-5", "t2", "teacher", log)
        room_on_origin = await pair.origin.join("class-5", "b", "classroom", log)
        await teacher.publish(small_tracks(log, ("mic", "camera")))
        await room_on_origin.publish(small_tracks(log, ("mic", "camera")))
        await frames_flow(classroom, "t", "camera")
        await frames_flow(classroom, "t", "mic")
        await frames_flow(teacher_on_edge, "b", "camera")
        described = await pair.origin.service.describe_room("class-5")
        assert "worker" in described and described["trunk"]["node"] == "origin"
        assert described["participants"].keys() == {"t", "b"}, "publishers only cross"
    finally:
        for harness in (pair.origin, pair.edge):
            await harness.close()
            await harness.service.stop()


async def test_a_room_spanning_workers_is_served_across_nodes_through_its_home() -> None:
    spanning = MediaService(2, node_id="origin", trunk_secret=SECRET, span_after=1)
    await spanning.start()
    pair = Nodes(spanning, await started(0, "edge"))
    try:
        await pair.open_linked("class-6", "class")
        log = FrameLog(keep_order=False)
        teacher = await pair.edge.join("class-6", "t", "teacher", log)
        rooms = [await pair.origin.join("class-6", name, "classroom", log) for name in "abc"]
        await teacher.publish(small_tracks(log, ("mic", "camera")))
        for room in rooms:
            await frames_flow(room, "t", "camera")
            await frames_flow(room, "t", "mic")
        described = await spanning.describe_room("class-6")
        placed = {pid: e["worker"] for pid, e in described["participants"].items()
                  if "worker" in e}
        assert set(placed.values()) == {0, 1} and described["participants"]["t"]["remote"] == "edge"
        home = described["worker"]["index"]

        far = next(r for r in rooms if placed[r.participant_id] != home)
        for service in (spanning, pair.edge.service):
            await service.set_spotlight("class-6", far.participant_id)
        await far.publish(small_tracks(log, ("camera",)))
        await frames_flow(teacher, far.participant_id, "camera")  # span -> home -> edge
        near = next(r for r in rooms if placed[r.participant_id] == home)
        await frames_flow(near, far.participant_id, "camera")
        on_edge = await pair.edge.service.describe_room("class-6")
        assert on_edge["participants"][far.participant_id] == {
            "remote": "origin", "role": "classroom", "publishing": ["camera"],
        }
        assert pair.origin.errors == [] and pair.edge.errors == []
    finally:
        for harness in (pair.origin, pair.edge):
            await harness.close()
            await harness.service.stop()


async def test_h264_crosses_with_its_codec_parameters(nodes: Nodes) -> None:
    await nodes.open_linked("consult-3", "consult")
    log = FrameLog(keep_order=False)
    doctor = await nodes.origin.join("consult-3", "doctor", "doctor", log)
    clinic = await nodes.edge.join("consult-3", "clinic", "clinic", log)
    clip = load_clip("h264", width=320, height=180, bitrate=300_000)
    await doctor.publish({"camera": ClipTrack(clip, on_frame=log.recorder("camera"))},
                         codecs={"camera": "h264"})
    await frames_flow(clinic, "doctor", "camera")
    assert clinic.track("doctor", "camera").codec == "h264"
    origin_codec = local_track(nodes.origin.service, "consult-3", "doctor", "camera").codec
    edge_codec = local_track(nodes.edge.service, "consult-3", "doctor", "camera").codec
    assert edge_codec.parameters == origin_codec.parameters
    assert edge_codec.rtcpFeedback == origin_codec.rtcpFeedback
