"""Media worker processes seen from signaling: placement, calls, and what happens when one dies.

Each room opens on one worker, its home, the least loaded when it opened. A big room spans
workers (`place_participant`): once its home carries more than `span_after` of its
participants, the room is opened on another worker too, the two linked by the trunk
(`media.trunk`, loopback, the pool's own secret: each worker's publications cross to the
others once), and new participants go to the room's least-loaded worker. The pool keeps
participant -> worker; a participant's calls go to its worker, room-wide ones (spotlight,
mutes) to all of them. Across nodes, the home's trunk is the room's (`open_trunk`).

A worker's death is noticed through its process sentinel (or its socket closing): pending
calls fail with `WorkerLost`, every participant of the rooms it was home to gets a
`room_lost` event, those rooms are re-opened on live workers (their spotlight, mutes and data
budgets re-applied as participants come back) and a replacement process is started. A worker
a room only spanned to loses only the participants placed on it.
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

from media.errors import MediaError, MediaUnavailable, MediaUserError, UnknownRoom, WorkerLost
from media.workers.channel import Channel, Event, open_socket
from media.workers.worker import worker_main

logger = logging.getLogger(__name__)

CALL_TIMEOUT = 30.0
START_TIMEOUT = 120.0
STOP_TIMEOUT = 5.0
SPAN_AFTER = 200
"""A room's home worker carrying more of its participants than this spans it to another."""

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


def place_participant(
    room_counts: Mapping[int, int],
    home: int,
    elsewhere: Mapping[int, tuple[int, int]],
    span_after: int,
) -> int:
    """The worker a new participant of a room goes to. `room_counts`: the workers hosting the
    room -> its participants there; `elsewhere`: the live workers not hosting it -> (all
    participants, rooms). The home until it carries more than `span_after`; then the room's
    least-loaded worker, or a new worker (the least-loaded elsewhere, the caller opens the
    room there) when every worker of the room carries more than `span_after`."""
    if room_counts.get(home, 0) <= span_after:
        return home
    least = min(room_counts, key=lambda index: (room_counts[index], index))
    if room_counts[least] > span_after and elsewhere:
        return choose_worker(elsewhere)
    return least


@dataclass
class _RoomRecord:
    """What the parent remembers of a room, to re-open it elsewhere."""

    kind: str
    worker: _Worker
    """The room's home (where it opened; its trunk is the room's across nodes)."""
    participants: set[str] = field(default_factory=set)
    placement: dict[str, _Worker] = field(default_factory=dict)
    """Participant -> the worker serving it (absent: the home)."""
    spans: dict[int, _Worker] = field(default_factory=dict)
    """The other workers the room is open on, by index."""
    trunk_addresses: dict[int, str] = field(default_factory=dict)
    """Worker index -> the room's trunk address there (once opened)."""
    trunk_peers: dict[str, str] = field(default_factory=dict)
    """The other nodes serving the room (`set_trunk_peers`), re-applied when relinked."""
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
        span_after: int = SPAN_AFTER,
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
        self.span_after = span_after
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
        spanned = [(room_id, r) for room_id, r in self._rooms.items()
                   if r.worker is not worker and r.spans.get(worker.index) is worker]
        task = asyncio.ensure_future(self._recover(worker, lost, spanned))
        self._respawns.add(task)
        task.add_done_callback(self._respawns.discard)

    async def _recover(
        self,
        dead: _Worker,
        lost: list[tuple[str, _RoomRecord]],
        spanned: list[tuple[str, _RoomRecord]],
    ) -> None:
        for room_id, record in lost:
            for participant_id in sorted(record.participants):
                self._emit(room_id, participant_id, {"type": "room_lost"})
            for span in record.spans.values():  # the room starts over on one worker
                if span is not dead:
                    with contextlib.suppress(MediaError, asyncio.TimeoutError):
                        await self._call(span, "close_room", room_id)
        for room_id, record in spanned:
            gone = sorted(pid for pid, w in record.placement.items() if w is dead)
            for participant_id in gone:
                del record.placement[participant_id]
                record.participants.discard(participant_id)
                self._emit(room_id, participant_id, {"type": "room_lost"})
            record.spans.pop(dead.index, None)
            record.trunk_addresses.pop(dead.index, None)
            with contextlib.suppress(MediaError, asyncio.TimeoutError):
                await self._link(room_id, record)
        live = {i: w for i, w in self._workers.items() if w.alive}
        if live:
            for room_id, record in lost:
                del self._rooms[room_id]
                with contextlib.suppress(MediaError):
                    await self.open_room(room_id, record.kind)
                    reopened = self._rooms[room_id]
                    reopened.spotlight, reopened.muted = record.spotlight, set(record.muted)
                    reopened.data_budgets = dict(record.data_budgets)
                    reopened.trunk_peers = dict(record.trunk_peers)
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
                    reopened.trunk_peers = dict(record.trunk_peers)
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
            "rooms": len(self._rooms),
            "participants": sum(load["participants"] for load in answered),
            "rungs": summed_rungs(load.get("rungs") or {} for load in answered),
            "transcoders": sum(int(load.get("transcoders", 0)) for load in answered),
            "pids": [w.pid for w in self.workers],
        }

    def _loads(self) -> dict[int, tuple[int, int]]:
        """Live worker -> (participants, rooms) it serves."""
        loads = {i: (0, 0) for i, w in self._workers.items() if w.alive}
        for record in self._rooms.values():
            counts = self._room_counts(record)
            for index, people in counts.items():
                if index in loads:
                    had_people, rooms = loads[index]
                    loads[index] = (had_people + people, rooms + 1)
        return loads

    @staticmethod
    def _room_counts(record: _RoomRecord) -> dict[int, int]:
        """The workers hosting the room -> its participants there."""
        counts = {record.worker.index: 0, **{index: 0 for index in record.spans}}
        for participant_id in record.participants:
            worker = record.placement.get(participant_id, record.worker)
            counts[worker.index] = counts.get(worker.index, 0) + 1
        return counts

    def _workers_of(self, record: _RoomRecord) -> list[_Worker]:
        """Every live worker the room is open on, the home first."""
        return [w for w in (record.worker, *record.spans.values()) if w.alive]

    def _serving(self, record: _RoomRecord, participant_id: str) -> _Worker:
        return record.placement.get(participant_id, record.worker)

    async def _place(self, room_id: str, record: _RoomRecord, participant_id: str) -> _Worker:
        """The worker serving `participant_id` (a new one placed, the room spanned if need be)."""
        placed = record.placement.get(participant_id)
        if placed is not None and placed.alive:
            return placed
        counts = {i: n for i, n in self._room_counts(record).items()
                  if self._workers.get(i) is not None and self._workers[i].alive}
        counts.setdefault(record.worker.index, 0)
        elsewhere = {i: load for i, load in self._loads().items() if i not in counts}
        index = place_participant(counts, record.worker.index, elsewhere, self.span_after)
        worker = self._workers[index]
        if worker is not record.worker and index not in record.spans:
            await self._span(room_id, record, worker)
        return worker

    def _trunk_node(self, record: _RoomRecord, worker: _Worker) -> str:
        """The worker's name on the room's trunk (the home's is the node's own)."""
        return self.node_id if worker is record.worker else f"{self.node_id}#w{worker.index}"

    async def _open_trunk_on(self, room_id: str, record: _RoomRecord, worker: _Worker) -> str:
        address = record.trunk_addresses.get(worker.index)
        if address is None:
            address = str(await self._call(
                worker, "open_trunk", room_id, self._trunk_node(record, worker)
            ))
            record.trunk_addresses[worker.index] = address
        return address

    async def _span(self, room_id: str, record: _RoomRecord, worker: _Worker) -> None:
        """Open the room on one more worker and link it with the others."""
        await self._call(worker, "open_room", room_id, record.kind)
        record.spans[worker.index] = worker
        logger.info("room spans workers room=%s workers=%s", room_id,
                    [w.index for w in self._workers_of(record)])
        await self._link(room_id, record)
        for muted in sorted(record.muted):  # (with its trunk open it takes any participant)
            await self._call(worker, "set_muted", room_id, muted, True)
        if record.spotlight is not None:
            await self._call(worker, "set_spotlight", room_id, record.spotlight)

    async def _link(self, room_id: str, record: _RoomRecord) -> None:
        """Give every worker of the room the others as trunk peers (its siblings); the home
        gets the other nodes too, and relays between them and its siblings."""
        workers = self._workers_of(record)
        if len(workers) < 2 and not record.trunk_addresses:
            return
        addresses = {
            self._trunk_node(record, w): await self._open_trunk_on(room_id, record, w)
            for w in workers
        }
        for worker in workers:
            me = self._trunk_node(record, worker)
            peers = {node: a for node, a in addresses.items() if node != me}
            siblings = sorted(peers)
            if worker is record.worker:
                peers.update(record.trunk_peers)
            await self._call(worker, "set_trunk_peers", room_id, peers, siblings)

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
        if record is not None:
            for worker in self._workers_of(record):
                await self._call(worker, "close_room", room_id)

    async def join(self, room_id: str, participant_id: str, role: str) -> None:
        record = self._record(room_id)
        worker = await self._place(room_id, record, participant_id)
        await self._call(worker, "join", room_id, participant_id, role)
        record.participants.add(participant_id)
        if worker is record.worker:
            record.placement.pop(participant_id, None)
        else:
            record.placement[participant_id] = worker
        if record.spotlight == participant_id:
            await self._call(worker, "set_spotlight", room_id, participant_id)
        if participant_id in record.muted:
            await self._call(worker, "set_muted", room_id, participant_id, True)
        budget = record.data_budgets.get(participant_id)
        if budget is not None:
            await self._call(worker, "set_data_budget", room_id, participant_id, budget)

    async def leave(self, room_id: str, participant_id: str) -> None:
        record = self._record(room_id)
        worker = self._serving(record, participant_id)
        record.participants.discard(participant_id)
        record.placement.pop(participant_id, None)
        await self._call(worker, "leave", room_id, participant_id)

    async def publish(
        self, room_id: str, participant_id: str, offer_sdp: str, sources: dict[str, str]
    ) -> str:
        record = self._record(room_id)
        worker = self._serving(record, participant_id)
        return str(await self._call(worker, "publish", room_id, participant_id, offer_sdp, sources))

    async def subscriber_answer(self, room_id: str, participant_id: str, answer_sdp: str) -> None:
        record = self._record(room_id)
        worker = self._serving(record, participant_id)
        await self._call(worker, "subscriber_answer", room_id, participant_id, answer_sdp)

    async def request_offer(self, room_id: str, participant_id: str) -> None:
        record = self._record(room_id)
        await self._call(self._serving(record, participant_id), "request_offer", room_id,
                         participant_id)

    async def set_spotlight(self, room_id: str, participant_id: str | None) -> None:
        record = self._record(room_id)
        for worker in self._workers_of(record):
            await self._call(worker, "set_spotlight", room_id, participant_id)
        record.spotlight = participant_id

    async def set_muted(self, room_id: str, participant_id: str, muted: bool) -> None:
        record = self._record(room_id)
        for worker in self._workers_of(record):
            await self._call(worker, "set_muted", room_id, participant_id, muted)
        if muted:
            record.muted.add(participant_id)
        else:
            record.muted.discard(participant_id)

    async def set_data_budget(
        self, room_id: str, participant_id: str, mb_per_hour: float | None
    ) -> None:
        record = self._record(room_id)
        await self._call(self._serving(record, participant_id), "set_data_budget", room_id,
                         participant_id, mb_per_hour)
        if mb_per_hour is None:
            record.data_budgets.pop(participant_id, None)
        else:
            record.data_budgets[participant_id] = mb_per_hour

    async def describe_room(self, room_id: str) -> dict[str, Any]:
        """The home's view, with the participants the other workers of the room serve (each
        local participant's entry says its worker)."""
        record = self._record(room_id)
        described = dict(await self._call(record.worker, "describe_room", room_id))
        described["worker"] = {"index": record.worker.index, "pid": record.worker.pid}
        participants = described["participants"]
        for entry in participants.values():
            if "remote" not in entry:
                entry["worker"] = record.worker.index
        for worker in list(record.spans.values()):
            if not worker.alive:
                continue
            there = await self._call(worker, "describe_room", room_id)
            for pid, entry in there["participants"].items():
                if "remote" not in entry:
                    participants[pid] = {**entry, "worker": worker.index}
        described["workers"] = [w.index for w in self._workers_of(record)]
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
        """The room's trunk address across nodes: its home's."""
        record = self._record(room_id)
        address = await self._open_trunk_on(room_id, record, record.worker)
        if record.trunk_peers:
            await self._link(room_id, record)  # reopened after a worker died
        return address

    async def set_trunk_peers(self, room_id: str, peers: Mapping[str, str]) -> None:
        record = self._record(room_id)
        if not record.trunk_addresses.get(record.worker.index):
            raise MediaUserError(f"room {room_id!r} has no trunk open")
        record.trunk_peers = dict(peers)
        await self._link(room_id, record)

    async def _resume_recording(self, room_id: str, lost: _RoomRecord) -> None:
        """A recorded room reopened on another worker records on into the same directory."""
        if lost.recording is not None:
            await self.start_recording(room_id, *lost.recording)

    def _record(self, room_id: str) -> _RoomRecord:
        record = self._rooms.get(room_id)
        if record is None:
            raise UnknownRoom(f"room {room_id!r} is not open")
        return record
