"""A class and a consult through the relay with real aiortc participants: each party receives
exactly what routing says, frames keep flowing as the spotlight moves and tracks come and go."""

from __future__ import annotations

import pytest

from client.clip import ClipTrack, load_clip
from client.peer import FrameLog, PeerClient
from media.service import MediaService
from tests.media.relay_harness import RelayHarness, wait_until

pytestmark = pytest.mark.timeout(150)


def small_tracks(log: FrameLog, sources: tuple[str, ...]) -> dict[str, ClipTrack]:
    """Light clips (320x180 VP8 at 300 kbit/s, Opus) to keep the test machine breathing."""
    video = load_clip("vp8", width=320, height=180, bitrate=300_000)
    audio = load_clip("opus")
    return {
        s: ClipTrack(audio if s == "mic" else video, on_frame=log.recorder(s)) for s in sources
    }


def pairs(*specs: str) -> set[tuple[str, str]]:
    return {tuple(s.split(":")) for s in specs}  # type: ignore[misc]


async def wait_receiving(
    client: PeerClient, expected: set[tuple[str, str]], frames: int = 10
) -> None:
    """`client` is offered exactly `expected` and gets `frames` new frames of each."""
    await wait_until(
        lambda: client.receiving() == expected,
        what=f"{client.participant_id} offered {expected}",
    )
    start = {key: client.track(*key).frames for key in expected}
    await wait_until(
        lambda: all(client.track(*key).frames >= start[key] + frames for key in expected),
        what=f"frames of {sorted(expected)} at {client.participant_id}",
    )


@pytest.fixture
async def relay():
    service = MediaService(0)
    await service.start()
    harness = RelayHarness(service)
    yield harness
    await harness.close()
    await service.stop()


async def test_a_class_with_a_moving_spotlight(relay: RelayHarness) -> None:
    service = relay.service
    await service.open_room("class-1", "class")
    log = FrameLog(keep_order=False)
    teacher = await relay.join("class-1", "t", "teacher", log)
    rooms = {name: await relay.join("class-1", name, "assistant", log) for name in "abc"}
    await teacher.publish(small_tracks(log, ("mic", "camera", "screen")))
    for room in rooms.values():
        await room.publish(small_tracks(log, ("mic", "camera")))

    from_teacher = pairs("t:mic", "t:camera", "t:screen")
    every_classroom = pairs("a:mic", "a:camera", "b:mic", "b:camera", "c:mic", "c:camera")
    await wait_receiving(teacher, every_classroom)
    for room in rooms.values():
        await wait_receiving(room, from_teacher)

    await service.set_spotlight("class-1", "a")
    await wait_receiving(rooms["b"], from_teacher | pairs("a:mic", "a:camera"))
    await wait_receiving(rooms["c"], from_teacher | pairs("a:mic", "a:camera"))
    await wait_receiving(rooms["a"], from_teacher, frames=1)
    assert teacher.receiving() == every_classroom

    await service.set_spotlight("class-1", "b")
    await wait_receiving(rooms["a"], from_teacher | pairs("b:mic", "b:camera"))
    await wait_receiving(rooms["c"], from_teacher | pairs("b:mic", "b:camera"))
    await wait_receiving(rooms["b"], from_teacher, frames=1)
    described = await service.describe_room("class-1")
    assert described["participants"]["c"]["transceivers"] == 5, "a's m-lines were reused for b"

    await service.set_muted("class-1", "b", True)
    await wait_receiving(rooms["c"], from_teacher | pairs("b:camera"))
    assert "b:mic" not in (await service.describe_room("class-1"))["participants"]["t"]["receiving"]
    assert relay.errors == []


async def test_a_consult_both_ways_with_a_screen_share_coming_and_going(
    relay: RelayHarness,
) -> None:
    service = relay.service
    await service.open_room("consult-1", "consult")
    log = FrameLog(keep_order=False)
    doctor = await relay.join("consult-1", "doctor", "doctor", log)
    clinic = await relay.join("consult-1", "clinic", "clinic", log)
    operator = await relay.join("consult-1", "op", "operator", log)
    await doctor.publish(small_tracks(log, ("mic", "camera")))
    await clinic.publish(small_tracks(log, ("mic", "camera")))

    await wait_receiving(doctor, pairs("clinic:mic", "clinic:camera"))
    await wait_receiving(clinic, pairs("doctor:mic", "doctor:camera"))
    await wait_receiving(
        operator, pairs("doctor:mic", "doctor:camera", "clinic:mic", "clinic:camera")
    )

    await clinic.publish(small_tracks(log, ("screen",)))
    await wait_receiving(doctor, pairs("clinic:mic", "clinic:camera", "clinic:screen"))
    offers_before = doctor.offers

    await clinic.unpublish("screen")
    await wait_receiving(doctor, pairs("clinic:mic", "clinic:camera"))
    assert doctor.offers > offers_before
    await clinic.publish(small_tracks(log, ("screen",)))
    await wait_receiving(doctor, pairs("clinic:mic", "clinic:camera", "clinic:screen"))
    described = await service.describe_room("consult-1")
    assert described["participants"]["doctor"]["transceivers"] == 3, "the screen m-line was reused"
    assert described["participants"]["clinic"]["publishing"] == ["camera", "mic", "screen"]
    assert relay.errors == []


async def test_leaving_stops_forwarding_and_renegotiates(relay: RelayHarness) -> None:
    service = relay.service
    await service.open_room("consult-2", "consult")
    log = FrameLog(keep_order=False)
    doctor = await relay.join("consult-2", "doctor", "doctor", log)
    clinic = await relay.join("consult-2", "clinic", "clinic", log)
    await clinic.publish(small_tracks(log, ("mic", "camera")))
    await wait_receiving(doctor, pairs("clinic:mic", "clinic:camera"))
    await service.leave("consult-2", "clinic")
    await wait_until(
        lambda: doctor.receiving() == set(), what="the doctor's offer without the clinic"
    )
    health = await service.health()
    assert health["participants"] == 1 and health["rooms"] == 1
    await clinic.close()
