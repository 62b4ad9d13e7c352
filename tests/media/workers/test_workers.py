"""Rooms on worker processes: placement by load, and a dead worker loses only its own rooms."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from client.clip import ClipTrack, load_clip
from client.peer import FrameLog
from media.workers.pool import choose_worker
from tests.media.relay_harness import running_relay, wait_until


@pytest.mark.parametrize(
    ("loads", "chosen"),
    [
        ({0: (0, 0), 1: (0, 0)}, 0),
        ({0: (2, 1), 1: (0, 0)}, 1),
        ({0: (3, 1), 1: (3, 2)}, 0),
        ({0: (5, 1), 1: (1, 3), 2: (4, 0)}, 1),
        ({1: (9, 9)}, 1),
    ],
)
def test_a_room_goes_to_the_least_loaded_worker(loads: dict, chosen: int) -> None:
    assert choose_worker(loads) == chosen


def test_no_live_worker_means_no_placement() -> None:
    from media.errors import MediaUnavailable

    with pytest.raises(MediaUnavailable):
        choose_worker({})


def light(log: FrameLog, source: str) -> ClipTrack:
    clip = load_clip("vp8", width=320, height=180, bitrate=300_000)
    return ClipTrack(clip, on_frame=log.recorder(source))


@pytest.mark.timeout(150)
async def test_killing_a_worker_loses_only_its_rooms() -> None:
    load_clip("vp8", width=320, height=180, bitrate=300_000)  # cached before the clock starts
    async with running_relay(2) as (service, relay):
        log = FrameLog(keep_order=False)
        clients = {}
        for room in ("r1", "r2"):
            await service.open_room(room, "consult")
            doctor = await relay.join(room, "doctor", "doctor", log)
            clinic = await relay.join(room, "clinic", "clinic", log)
            await doctor.publish({"camera": light(log, "camera")})
            clients[room] = clinic
        r1 = await service.describe_room("r1")
        r2 = await service.describe_room("r2")
        assert r1["worker"]["index"] != r2["worker"]["index"], "two rooms, two workers"
        for clinic in clients.values():
            await wait_until(lambda c=clinic: c.track("doctor", "camera").frames >= 30,
                             what="frames in both rooms")
        health = await service.health()
        assert (health["workers"], health["alive"], health["rooms"]) == (2, 2, 2)
        for _ in range(200):  # each clinic's adaptation ticks within a second or so
            if sum(health["rungs"].values()) == 2:
                break
            await asyncio.sleep(0.05)
            health = await service.health()
        assert sum(health["rungs"].values()) == 2, "one rung figure per subscriber of video"
        assert r1["worker"]["pid"] != os.getpid()

        os.kill(r1["worker"]["pid"], signal.SIGKILL)
        lost = lambda: {(r, p) for r, p, e in relay.events if e["type"] == "room_lost"}  # noqa: E731
        await wait_until(lambda: lost() == {("r1", "doctor"), ("r1", "clinic")},
                         what="room_lost for r1's participants")
        before = clients["r2"].track("doctor", "camera").frames
        await wait_until(lambda: clients["r2"].track("doctor", "camera").frames >= before + 30,
                         what="r2 still flowing")
        assert lost() == {("r1", "doctor"), ("r1", "clinic")}, "r2 was not lost"

        # r1 was re-placed: its participants come back with new connections
        await wait_until(lambda: service._pool is not None and all(
            w.alive for w in service._pool.workers), what="a replacement worker")
        # a replacement on a loaded machine may take a while to answer its first health call
        for _ in range(300):
            health = await service.health()
            if health["alive"] == 2:
                break
            await asyncio.sleep(0.1)
        assert (health["alive"], health["rooms"]) == (2, 2)
        pids = health["pids"]
        await clients["r1"].close()
        doctor = await relay.join("r1", "doctor", "doctor", log)
        clinic = await relay.join("r1", "clinic", "clinic", log)
        await doctor.publish({"camera": light(log, "camera")})
        await wait_until(lambda: clinic.track("doctor", "camera").frames >= 30,
                         what="frames in the re-placed room")
        assert relay.errors == []
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
