"""Media worker processes seen from signaling: placement, calls, and what happens when one dies.

Each room lives on one worker, the least loaded when it opened. A worker's death is noticed
through its process sentinel (or its socket closing): pending calls fail with `WorkerLost`,
every participant of its rooms gets a `room_lost` event, the rooms are re-opened on live
workers (their spotlight, mutes and data budgets re-applied as participants come back) and a
replacement process is started.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

from media.errors import MediaError, MediaUnavailable, UnknownRoom, WorkerLost
from media.workers.channel import Channel, Event, open_socket
from media.workers.worker import worker_main

logger = logging.getLogger(__name__)

CALL_TIMEOUT = 30.0
START_TIMEOUT = 120.0
STOP_TIMEOUT = 5.0

EventCallback = Callable[[str, str, dict[str, Any]], None]


def summed_rungs(per_worker: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Subscribers on each rung over all workers."""
    total: dict[str, int] = {}
    for rungs in per_worker:
        for rung, n in rungs.items():
            total[rung] = total.get(rung, 0) + int(n)
    return total


def choose_worker(loads: Mapping[int, tuple[int, int]]) -> int:
    """The worker to place a new room on: fewest participants, then fewest rooms, then index.

    `loads` maps a live worker's index to (participants, rooms).
    """
    if not loads:
        raise MediaUnavailable("no media worker is alive")
    return min(loads, key=lambda index: (*loads[index], index))


@dataclass
class _RoomRecord:
    """What the parent remembers of a room, to re-open it elsewhere."""

    kind: str
    worker: _Worker
    participants: set[str] = field(default_factory=set)
    spotlight: str | None = None
    muted: set[str] = field(default_factory=set)
    data_budgets: dict[str, float] = field(default_factory=dict)
    """Participant -> data budget (MB per hour), re-applied when it joins again."""
    recording: tuple[str, str] | None = None
    """(recording id, directory) while the room is recorded: carried on where it reopens."""


class _Worker:
    """One worker process and the socket to it."""

    def __init__(self, index: int, process: BaseProcess) -> None:
        self.index = index
        self.process = process
        self.alive = True
        self.channel: Channel | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid


class WorkerPool:
    """`count` worker processes hosting rooms, with the `MediaBackend` operations over them."""

    def __init__(
        self,
        count: int,
        *,
        ice_servers: list[dict[str, Any]],
        udp_host: str | None,
        emit: EventCallback,
        log_level: int = logging.WARNING,
        adaptation: bool = True,
        node_id: str = "local",
        trunk_secret: bytes | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.count = count
        self._ice_servers = ice_servers
        self._udp_host = udp_host
        self._emit = emit
        self._log_level = log_level
        self._adaptation = adaptation
        self.node_id = node_id
        self._trunk_secret = trunk_secret or os.urandom(32)
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[int, _Worker] = {}
        self._rooms: dict[str, _RoomRecord] = {}
        self._ids = itertools.count(1)
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._respawns: set[asyncio.Task[None]] = set()

    @property
    def workers(self) -> list[_Worker]:
        return [self._workers[i] for i in sorted(self._workers)]

    def worker_of(self, room_id: str) -> _Worker:
        record = self._rooms.get(room_id)
        if record is None:
            raise UnknownRoom(f"room {room_id!r} is not open")
        return record.worker

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.gather(*(self._spawn(i) for i in range(self.count)))

    async def _spawn(self, index: int) -> None:
        parent_sock, child_sock = socket.socketpair()
        process = self._context.Process(
            target=worker_main,
            args=(
                child_sock, self._ice_servers, self._udp_host, self._log_level, self._adaptation,
                self.node_id, self._trunk_secret,
            ),
            name=f"tongxin-media-{index}",
            daemon=True,
        )
        process.start()
        child_sock.close()
        worker = _Worker(index, process)
        reader, writer = await open_socket(parent_sock)
        worker.channel = Channel(
            reader, writer, self._on_event, lambda: self._on_exit(worker), f"media worker {index}"
        )
        self._workers[index] = worker
        assert self._loop is not None
        self._loop.add_reader(process.sentinel, self._on_exit, worker)
        await self._call(worker, "load", timeout=START_TIMEOUT)  # imported and serving
        logger.info("media worker %d started pid=%s", index, process.pid)

    async def stop(self) -> None:
        """Close every room (and peer connection) on every worker, then end the processes."""
        self._stopping = True
        for task in list(self._respawns):
            task.cancel()
        workers = [w for w in self._workers.values() if w.alive]
        await asyncio.gather(
            *(self._call_quietly(w, "close") for w in workers), return_exceptions=True
        )
        for worker in self._workers.values():
            await self._end(worker)
        self._workers.clear()
        self._rooms.clear()

    async def _call_quietly(self, worker: _Worker, op: str) -> None:
        with contextlib.suppress(MediaError, asyncio.TimeoutError):
            await self._call(worker, op, timeout=STOP_TIMEOUT)

    async def _end(self, worker: _Worker) -> None:
        assert self._loop is not None
        with contextlib.suppress(Exception):
            self._loop.remove_reader(worker.process.sentinel)
        worker.alive = False
        if worker.channel is not None:
            worker.channel.close()
        process = worker.process
        await asyncio.get_running_loop().run_in_executor(None, process.join, STOP_TIMEOUT)
        if process.is_alive():
            process.terminate()
            await asyncio.get_running_loop().run_in_executor(None, process.join, STOP_TIMEOUT)
        if worker.channel is not None:
            worker.channel.fail_pending(MediaUnavailable("the media service stopped"))

    # -- calls -------------------------------------------------------------------------------

    async def _call(
        self, worker: _Worker, op: str, *args: Any, timeout: float = CALL_TIMEOUT
    ) -> Any:
        if not worker.alive or worker.channel is None:
            raise WorkerLost(f"media worker {worker.index} is gone")
        return await worker.channel.call(op, *args, timeout=timeout)

    def _on_event(self, message: Event) -> None:
        self._emit(message.room_id, message.participant_id, message.event)

    # -- a worker died -----------------------------------------------------------------------

    def _on_exit(self, worker: _Worker) -> None:
        if self._stopping or not worker.alive or self._workers.get(worker.index) is not worker:
            return
        worker.alive = False
        assert self._loop is not None
        with contextlib.suppress(Exception):
            self._loop.remove_reader(worker.process.sentinel)
        logger.error(
            "media worker %d died pid=%s exitcode=%s",
            worker.index, worker.pid, worker.process.exitcode,
        )
        if worker.channel is not None:
            worker.channel.fail_pending(WorkerLost(f"media worker {worker.index} died"))
            worker.channel.close()
        lost = [(room_id, r) for room_id, r in self._rooms.items() if r.worker is worker]
        task = asyncio.ensure_future(self._recover(worker, lost))
        self._respawns.add(task)
        task.add_done_callback(self._respawns.discard)

    async def _recover(self, dead: _Worker, lost: list[tuple[str, _RoomRecord]]) -> None:
        for room_id, record in lost:
            for participant_id in sorted(record.participants):
                self._emit(room_id, participant_id, {"type": "room_lost"})
        live = {i: w for i, w in self._workers.items() if w.alive}
        if live:
            for room_id, record in lost:
                del self._rooms[room_id]
                with contextlib.suppress(MediaError):
                    await self.open_room(room_id, record.kind)
                    reopened = self._rooms[room_id]
                    reopened.spotlight, reopened.muted = record.spotlight, set(record.muted)
                    reopened.data_budgets = dict(record.data_budgets)
                    await self._resume_recording(room_id, record)
        try:
            await self._spawn(dead.index)
        except Exception:
            logger.exception("could not replace media worker %d", dead.index)
            return
        for room_id, record in lost:
            current = self._rooms.get(room_id)
            if current is not None and current.worker is dead:
                del self._rooms[room_id]  # no other worker was alive: it comes back here
            if room_id not in self._rooms:
                with contextlib.suppress(MediaError):
                    await self.open_room(room_id, record.kind)
                    reopened = self._rooms[room_id]
                    reopened.spotlight, reopened.muted = record.spotlight, set(record.muted)
                    reopened.data_budgets = dict(record.data_budgets)
                    await self._resume_recording(room_id, record)

    # -- the backend operations --------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        live = [w for w in self._workers.values() if w.alive]
        loads = await asyncio.gather(
            *(self._call(w, "load", timeout=2.0) for w in live), return_exceptions=True
        )
        answered = [load for load in loads if isinstance(load, dict)]
        if not answered:
            raise MediaUnavailable("no media worker answers")
        return {
            "workers": self.count,
            "alive": len(answered),
            "rooms": sum(load["rooms"] for load in answered),
            "participants": sum(load["participants"] for load in answered),
            "rungs": summed_rungs(load.get("rungs") or {} for load in answered),
            "transcoders": sum(int(load.get("transcoders", 0)) for load in answered),
            "pids": [w.pid for w in self.workers],
        }

    def _loads(self) -> dict[int, tuple[int, int]]:
        loads = {i: (0, 0) for i, w in self._workers.items() if w.alive}
        for record in self._rooms.values():
            if record.worker.alive:
                people, rooms = loads[record.worker.index]
                loads[record.worker.index] = (people + len(record.participants), rooms + 1)
        return loads

    async def open_room(self, room_id: str, kind: str) -> None:
        record = self._rooms.get(room_id)
        if record is not None:
            await self._call(record.worker, "open_room", room_id, kind)
            return
        worker = self._workers[choose_worker(self._loads())]
        self._rooms[room_id] = _RoomRecord(kind, worker)
        try:
            await self._call(worker, "open_room", room_id, kind)
        except Exception:
            self._rooms.pop(room_id, None)
            raise

    async def close_room(self, room_id: str) -> None:
        record = self._rooms.pop(room_id, None)
        if record is not None and record.worker.alive:
            await self._call(record.worker, "close_room", room_id)

    async def join(self, room_id: str, participant_id: str, role: str) -> None:
        record = self._record(room_id)
        await self._call(record.worker, "join", room_id, participant_id, role)
        record.participants.add(participant_id)
        if record.spotlight == participant_id:
            await self._call(record.worker, "set_spotlight", room_id, participant_id)
        if participant_id in record.muted:
            await self._call(record.worker, "set_muted", room_id, participant_id, True)
        budget = record.data_budgets.get(participant_id)
        if budget is not None:
            await self._call(record.worker, "set_data_budget", room_id, participant_id, budget)

    async def leave(self, room_id: str, participant_id: str) -> None:
        record = self._record(room_id)
        record.participants.discard(participant_id)
        await self._call(record.worker, "leave", room_id, participant_id)

    async def publish(
        self, room_id: str, participant_id: str, offer_sdp: str, sources: dict[str, str]
    ) -> str:
        record = self._record(room_id)
        return str(
            await self._call(record.worker, "publish", room_id, participant_id, offer_sdp, sources)
        )

    async def subscriber_answer(self, room_id: str, participant_id: str, answer_sdp: str) -> None:
        record = self._record(room_id)
        await self._call(record.worker, "subscriber_answer", room_id, participant_id, answer_sdp)

    async def request_offer(self, room_id: str, participant_id: str) -> None:
        record = self._record(room_id)
        await self._call(record.worker, "request_offer", room_id, participant_id)

    async def set_spotlight(self, room_id: str, participant_id: str | None) -> None:
        record = self._record(room_id)
        await self._call(record.worker, "set_spotlight", room_id, participant_id)
        record.spotlight = participant_id

    async def set_muted(self, room_id: str, participant_id: str, muted: bool) -> None:
        record = self._record(room_id)
        await self._call(record.worker, "set_muted", room_id, participant_id, muted)
        if muted:
            record.muted.add(participant_id)
        else:
            record.muted.discard(participant_id)

    async def set_data_budget(
        self, room_id: str, participant_id: str, mb_per_hour: float | None
    ) -> None:
        record = self._record(room_id)
        await self._call(record.worker, "set_data_budget", room_id, participant_id, mb_per_hour)
        if mb_per_hour is None:
            record.data_budgets.pop(participant_id, None)
        else:
            record.data_budgets[participant_id] = mb_per_hour

    async def describe_room(self, room_id: str) -> dict[str, Any]:
        record = self._record(room_id)
        described = dict(await self._call(record.worker, "describe_room", room_id))
        described["worker"] = {"index": record.worker.index, "pid": record.worker.pid}
        return described

    async def start_recording(self, room_id: str, recording_id: str, directory: str) -> None:
        record = self._record(room_id)
        await self._call(record.worker, "start_recording", room_id, recording_id, directory)
        record.recording = (recording_id, directory)

    async def stop_recording(self, room_id: str) -> dict[str, Any] | None:
        record = self._record(room_id)
        record.recording = None
        result = await self._call(record.worker, "stop_recording", room_id)
        return dict(result) if result is not None else None

    async def open_trunk(self, room_id: str) -> str:
        record = self._record(room_id)
        return str(await self._call(record.worker, "open_trunk", room_id))

    async def set_trunk_peers(self, room_id: str, peers: Mapping[str, str]) -> None:
        record = self._record(room_id)
        await self._call(record.worker, "set_trunk_peers", room_id, dict(peers))

    async def _resume_recording(self, room_id: str, lost: _RoomRecord) -> None:
        """A recorded room reopened on another worker records on into the same directory."""
        if lost.recording is not None:
            await self.start_recording(room_id, *lost.recording)

    def _record(self, room_id: str) -> _RoomRecord:
        record = self._rooms.get(room_id)
        if record is None:
            raise UnknownRoom(f"room {room_id!r} is not open")
        return record
