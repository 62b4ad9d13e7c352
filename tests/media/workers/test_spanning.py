"""A big room across worker processes of one node (media/workers/pool.py): where a new
participant goes, and subscribers on two workers all receiving one publisher."""

from __future__ import annotations

import os
import signal

import pytest

from client.clip import ClipTrack, load_clip
from client.peer import FrameLog
from media.workers.pool import place_participant
from tests.media.relay_harness import running_relay, wait_until


@pytest.mark.parametrize(
    ("room_counts", "home", "elsewhere", "span_after", "chosen"),
    [
        ({0: 0}, 0, {1: (0, 0)}, 1, 0),  # an empty room: its home
        ({0: 1}, 0, {1: (0, 0)}, 1, 0),  # at the threshold: still the home
        ({0: 2}, 0, {1: (5, 3), 2: (1, 1)}, 1, 2),  # over: a new worker, the least loaded
        ({0: 2}, 0, {}, 1, 0),  # over, but no other worker: the home
        ({0: 2, 1: 1}, 0, {2: (0, 0)}, 1, 1),  # the room's least-loaded worker has room
        ({0: 3, 1: 2}, 0, {2: (0, 0)}, 1, 2),  # every worker of the room is over
        ({0: 3, 1: 2}, 0, {}, 1, 1),  # ... and no other: the room's least loaded
        ({0: 2, 1: 2}, 0, {}, 1, 0),  # a tie: the lower index
        ({0: 150, 1: 10}, 0, {2: (0, 0)}, 200, 0),  # far from the default threshold
        ({1: 0, 0: 201}, 1, {}, 200, 1),
    ],
)
def test_where_a_new_participant_goes(
    room_counts: dict[int, int],
    home: int,
    elsewhere: dict[int, tuple[int, int]],
    span_after: int,
    chosen: int,
) -> None:
    assert place_participant(room_counts, home, elsewhere, span_after) == chosen


@pytest.mark.timeout(180)
async def test_a_room_over_two_workers_reaches_every_subscriber() -> None:
    clip = load_clip("vp8", width=320, height=180, bitrate=300_000)
    async with running_relay(2, span_after=1) as (service, relay):
        await service.open_room("big", "class")
        log = FrameLog(keep_order=False)
        teacher = await relay.join("big", "t", "teacher", log)
        rooms = [await relay.join("big", "a", "classroom", log)]
        await service.set_muted("big", "a", True)  # the room spans after: the mute carries over
        rooms += [await relay.join("big", name, "classroom", log) for name in ("b", "c")]
        await teacher.publish({
            "camera": ClipTrack(clip, on_frame=log.recorder("camera")),
            "mic": ClipTrack(load_clip("opus"), on_frame=log.recorder("mic")),
        })
        for room in rooms:
            for source in ("camera", "mic"):
                await wait_until(
                    lambda room=room, source=source: room.track("t", source).frames >= 10,
                    what=f"frames of t:{source} at {room.participant_id}",
                )
        described = await service.describe_room("big")
        workers = {pid: entry["worker"] for pid, entry in described["participants"].items()}
        assert sorted(described["workers"]) == [0, 1]
        assert set(workers.values()) == {0, 1}, workers
        assert workers["t"] == described["worker"]["index"]
        assert described["participants"].keys() == {"t", "a", "b", "c"}
        assert described["muted"] == ["a"]
        health = await service.health()
        assert (health["rooms"], health["participants"]) == (1, 4)

        # a publisher placed on the other worker crosses back to the home's participants
        far = next(r for r in rooms if workers[r.participant_id] != workers["t"])
        await service.set_spotlight("big", far.participant_id)
        await far.publish({"camera": ClipTrack(clip, on_frame=log.recorder("camera"))})
        near = next(r for r in rooms if workers[r.participant_id] == workers["t"])
        for client in (teacher, near):
            await wait_until(
                lambda client=client: client.track(far.participant_id, "camera").frames >= 10,
                what=f"the far classroom's camera at {client.participant_id}",
            )
        await service.leave("big", far.participant_id)
        await wait_until(lambda: (far.participant_id, "camera") not in teacher.receiving(),
                         what="the far classroom gone from the teacher's offer")
        assert relay.errors == []


@pytest.mark.timeout(180)
async def test_losing_a_worker_the_room_spans_to_loses_only_its_participants() -> None:
    clip = load_clip("vp8", width=320, height=180, bitrate=300_000)
    async with running_relay(2, span_after=1) as (service, relay):
        await service.open_room("big", "class")
        log = FrameLog(keep_order=False)
        teacher = await relay.join("big", "t", "teacher", log)
        rooms = [await relay.join("big", name, "classroom", log) for name in ("a", "b", "c")]
        await teacher.publish({"camera": ClipTrack(clip, on_frame=log.recorder("camera"))})
        described = await service.describe_room("big")
        home = described["worker"]["index"]
        placed = {pid: e["worker"] for pid, e in described["participants"].items()}
        away = {pid for pid, index in placed.items() if index != home}
        assert away, placed
        span_index = placed[next(iter(away))]
        pid = (await service.health())["pids"][span_index]

        os.kill(pid, signal.SIGKILL)
        lost = lambda: {p for r, p, e in relay.events if e["type"] == "room_lost"}  # noqa: E731
        await wait_until(lambda: lost() == away, what=f"room_lost for {sorted(away)} only")
        for room in rooms:
            if room.participant_id not in away:
                before = room.track("t", "camera").frames
                await wait_until(
                    lambda room=room, before=before: (
                        room.track("t", "camera").frames >= before + 10
                    ),
                    what=f"frames go on at {room.participant_id}",
                )
        described = await service.describe_room("big")
        assert described["participants"].keys() == {"t"} | {
            r.participant_id for r in rooms if r.participant_id not in away
        }
        # the lost participants come back (as signaling makes them), on a live worker
        for name in sorted(away):
            client = relay.clients[("big", name)]
            await client.close()
            again = await relay.join("big", name, "classroom", log)
            await wait_until(lambda again=again: again.track("t", "camera").frames >= 10,
                             what=f"{name} receiving again")
        health = await service.health()
        assert (health["rooms"], health["participants"]) == (1, 4)
