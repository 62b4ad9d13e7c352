"""Two rooms' trunks over real UDP on loopback (media/trunk/remote.py), with stand-in rooms:
a simulcast publication crosses with its layers, each layer's packets land on its layer,
keyframe requests reach the right layer, WANTS mark the layers an edge watches, and a
publication withdrawn or shadowed by a local participant disappears."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media.forward.forwarder import DatagramSink, InboundTrack, OutboundStream
from media.rtp.header import URI_ABS_SEND_TIME, URI_MID, ExtensionLayout
from media.trunk.remote import RemoteParticipant, Trunk
from tests.media.relay_harness import wait_until

SECRET = b"k" * 32
VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
VP8_RTX = RTCRtpCodecParameters(
    mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96}
)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
KEY = b"\x90\x80\x80\x01" + b"\x00\x9d\x01\x2a" + b"K" * 50  # VP8 keyframe start


class StandInRoom:
    """The room side of a trunk (`TrunkRoom`): fixed local publishers, changes counted."""

    def __init__(self, room_id: str) -> None:
        self.room_id = room_id
        self.publishers: list[tuple[str, str, list[InboundTrack]]] = []
        self.local_ids: set[str] = set()
        self.changes = 0

    def local_publishers(self) -> list[tuple[str, str, list[InboundTrack]]]:
        return list(self.publishers)

    def is_local(self, participant_id: str) -> bool:
        return participant_id in self.local_ids

    def remote_changed(self) -> None:
        self.changes += 1


def simulcast_camera(plis: list[int]) -> InboundTrack:
    layers = []
    for rid in ("q", "h", "f"):
        layer = InboundTrack("t", "camera", [VP8, VP8_RTX], send_pli=plis.append)
        layer.rid = rid
        layers.append(layer)
    layers[-1].spatial_layers = tuple(layers)
    return layers[-1]


def packet(seq: int, ssrc: int, payload: bytes = KEY, level: tuple[bool, int] | None = None,
           pt: int = 96) -> RtpPacket:
    built = RtpPacket(payload_type=pt, sequence_number=seq, timestamp=seq * 3000, ssrc=ssrc,
                      payload=payload, marker=1)
    built.extensions.audio_level = level
    return built


class Linked:
    def __init__(self) -> None:
        self.origin_room = StandInRoom("room")
        self.edge_room = StandInRoom("room")
        self.origin = Trunk(self.origin_room, "origin", SECRET)
        self.edge = Trunk(self.edge_room, "edge", SECRET)

    def remote(self, pid: str) -> RemoteParticipant | None:
        return self.edge.remote_participants().get(pid)


@pytest.fixture
async def linked() -> AsyncIterator[Linked]:
    pair = Linked()
    at_origin = await pair.origin.open("127.0.0.1")
    at_edge = await pair.edge.open("127.0.0.1")
    await pair.origin.set_peers({"edge": at_edge, "origin": at_origin})  # itself: ignored
    await pair.edge.set_peers({"origin": at_origin})
    yield pair
    await pair.origin.close()
    await pair.edge.close()


async def test_a_simulcast_publication_crosses_layer_by_layer(linked: Linked) -> None:
    plis: list[int] = []
    camera = simulcast_camera(plis)
    mic = InboundTrack("t", "mic", [OPUS], send_pli=plis.append)
    q, h, f = camera.spatial_layers
    h.held_rates = (100_000.0, 0.0, 0.0, 0.0)
    linked.origin_room.publishers = [("t", "teacher", [mic, camera])]
    linked.origin_room.local_ids = {"t"}
    linked.origin.local_changed()

    await wait_until(lambda: linked.remote("t") is not None and len(linked.remote("t").tracks) == 2,  # type: ignore[union-attr]
                     what="the teacher announced at the edge")
    teacher = linked.remote("t")
    assert teacher is not None and teacher.node == "origin" and teacher.role == "teacher"
    remote_camera = teacher.tracks["camera"]
    remote_layers = remote_camera.spatial_layers
    assert [layer.rid for layer in remote_layers] == ["q", "h", "f"]
    assert remote_layers[-1] is remote_camera and remote_camera.rtx
    assert remote_layers[1].held_rates == (100_000.0, 0.0, 0.0, 0.0)
    assert remote_camera.codec.mimeType == "video/VP8" and remote_camera.codec.payloadType == 96
    assert teacher.tracks["mic"].codec.channels == 2 and teacher.tracks["mic"].kind == "audio"
    assert linked.edge_room.changes >= 1

    for seq, (layer, ssrc) in enumerate(((q, 11), (h, 22), (f, 33)), start=1):
        layer.on_packet(packet(seq, ssrc))
    mic.on_packet(packet(7, 44, b"opus", level=(True, 42), pt=111))
    await wait_until(lambda: all(layer.packets == 1 for layer in remote_layers)
                     and teacher.tracks["mic"].packets == 1, what="one packet per layer")
    assert [layer.ssrc for layer in remote_layers] == [11, 22, 33]
    assert remote_layers[0].from_history(1) is not None, "the edge keeps its own history"
    assert teacher.tracks["mic"].recent == [(7 * 3000, b"opus")]

    # a subscriber at the edge: attaching asks the top layer for a keyframe, switching to
    # the lowest asks that one; the edge then WANTS only the lowest
    sink = DatagramSink()
    sink.connect(lambda data: None)
    stream = OutboundStream("video", ssrc=1111, rtx_ssrc=2222, sink=sink)
    stream.configure(
        ExtensionLayout.negotiated("1", {URI_MID: 1, URI_ABS_SEND_TIME: 3}, "video"), [VP8]
    )
    stream.attach(remote_camera)
    await wait_until(lambda: 33 in plis, what="a keyframe request for the top layer")
    stream.switch_source(remote_layers[0])
    await wait_until(lambda: 11 in plis, what="a keyframe request for the lowest layer")
    await wait_until(lambda: q.watched_remotely, what="the lowest layer watched at the edge")
    assert not h.watched_remotely and not f.watched_remotely

    # withdrawn: the remote tracks close and the participant leaves
    linked.origin_room.publishers = []
    linked.origin.local_changed()
    await wait_until(lambda: linked.remote("t") is None, what="the teacher gone from the edge")
    assert remote_camera.closed and all(layer.closed for layer in remote_layers)
    assert stream.track is None, "the subscriber's stream was detached"
    assert not q.watched_remotely
    assert q.trunk is None and camera.trunk is None


async def test_a_local_participant_shadows_a_remote_one_of_the_same_id(linked: Linked) -> None:
    linked.origin_room.publishers = [
        ("t", "teacher", [InboundTrack("t", "mic", [OPUS], send_pli=lambda ssrc: None)])
    ]
    linked.origin.local_changed()
    await wait_until(lambda: linked.remote("t") is not None, what="the teacher announced")
    linked.edge_room.local_ids = {"t"}  # the teacher reconnected to the edge itself
    assert linked.remote("t") is None
    described = linked.edge.describe()
    assert described["node"] == "edge" and described["peers"].keys() == {"origin"}


async def test_a_packet_lost_on_the_trunk_is_sent_again(linked: Linked) -> None:
    plis: list[int] = []
    camera = InboundTrack("t", "camera", [VP8], send_pli=plis.append)
    linked.origin_room.publishers = [("t", "teacher", [camera])]
    linked.origin.local_changed()
    await wait_until(lambda: linked.remote("t") is not None, what="the teacher announced")
    remote = linked.remote("t").tracks["camera"]  # type: ignore[union-attr]
    delta = b"\x90\x80\x80\x02\x01" + b"D" * 50
    camera.on_packet(packet(1, 5, KEY))
    await wait_until(lambda: remote.packets == 1, what="the first packet across")
    sender, camera.trunk = camera.trunk, None  # the trunk loses 2 and 3 ...
    camera.on_packet(packet(2, 5, delta))
    camera.on_packet(packet(3, 5, delta))
    camera.trunk = sender
    camera.on_packet(packet(4, 5, delta))  # ... which 4 reveals
    await wait_until(lambda: remote.packets == 4, what="the lost packets sent again")
    assert all(remote.from_history(seq) is not None for seq in (1, 2, 3, 4))
    assert linked.edge.nacks_sent == 1 and linked.origin.resent == 2
    assert linked.origin.describe()["resent"] == 2
