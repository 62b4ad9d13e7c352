"""Calls and events between Tongxin processes over a stream socket (length-prefixed msgpack).

Used between signaling and its media workers, and by the relay benchmark between its parts.
The calling side holds a `Channel` (`call(op, *args)` -> the value or the raised error);
the serving side runs `serve_calls`, answering each call concurrently and pushing `Event`s.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import struct
from collections.abc import Callable
from typing import Any

import msgspec

from media import errors

logger = logging.getLogger(__name__)

LENGTH = struct.Struct("!I")
MAX_FRAME = 16 * 1024 * 1024


class Call(msgspec.Struct, tag="call"):
    """Run `op(*args)` on the serving side."""

    id: int
    op: str
    args: list[Any]


class Reply(msgspec.Struct, tag="reply"):
    """The outcome of call `id`: `value`, or an error of class `error_type`."""

    id: int
    value: Any = None
    error_type: str = ""
    error: str = ""


class Event(msgspec.Struct, tag="event"):
    """A room event for one participant."""

    room_id: str
    participant_id: str
    event: dict[str, Any]


Message = Call | Reply | Event

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Message)


def encode(message: Message) -> bytes:
    data = _ENCODER.encode(message)
    return LENGTH.pack(len(data)) + data


async def read_message(reader: asyncio.StreamReader) -> Message:
    """The next message; `asyncio.IncompleteReadError` when the other side is gone."""
    (size,) = LENGTH.unpack(await reader.readexactly(LENGTH.size))
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes is too large")
    return _DECODER.decode(await reader.readexactly(size))


def error_reply(call_id: int, exc: BaseException) -> Reply:
    return Reply(call_id, error_type=type(exc).__name__, error=str(exc))


def raise_for(reply: Reply) -> Any:
    """The reply's value, or its error raised as the matching `media.errors` class."""
    if not reply.error_type:
        return reply.value
    cls = getattr(errors, reply.error_type, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.MediaError)):
        raise errors.MediaError(f"{reply.error_type}: {reply.error}")
    raise cls(reply.error)


EventHandler = Callable[[Event], None]


class Channel:
    """The calling side of a connection: calls with replies, and events pushed to a handler."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_event: EventHandler,
        on_closed: Callable[[], None] = lambda: None,
        name: str = "peer",
    ) -> None:
        self.name = name
        self._writer = writer
        self._on_event = on_event
        self._on_closed = on_closed
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._ids = itertools.count(1)
        self.open = True
        self._reading = asyncio.create_task(self._read(reader))

    async def call(self, op: str, *args: Any, timeout: float = 30.0) -> Any:
        if not self.open:
            raise errors.WorkerLost(f"{self.name} is gone")
        call_id = next(self._ids)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        try:
            self._writer.write(encode(Call(call_id, op, list(args))))
            reply = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise errors.MediaError(f"{self.name} did not answer {op} in time") from None
        finally:
            self._pending.pop(call_id, None)
        return raise_for(reply)

    def fail_pending(self, exc: Exception) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(exc)
        self._pending.clear()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                message = await read_message(reader)
                if isinstance(message, Reply):
                    future = self._pending.get(message.id)
                    if future is not None and not future.done():
                        future.set_result(message)
                elif isinstance(message, Event):
                    self._on_event(message)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, msgspec.DecodeError):
            pass
        self.open = False
        self.fail_pending(errors.WorkerLost(f"{self.name} closed the connection"))
        self._on_closed()

    def close(self) -> None:
        self.open = False
        self._reading.cancel()
        self._writer.close()


Dispatch = Callable[[str, list[Any]], Any]
"""(op, args) -> a value or an awaitable of one; raises for errors."""


async def serve_calls(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    dispatch: Dispatch,
    stop: asyncio.Event | None = None,
) -> None:
    """Answer calls (concurrently) until the other side goes away or `stop` is set."""
    tasks: set[asyncio.Task[None]] = set()

    async def handle(call: Call) -> None:
        try:
            result = dispatch(call.op, call.args)
            if inspect.isawaitable(result):
                result = await result
            reply = Reply(call.id, value=result)
        except Exception as exc:
            if not isinstance(exc, errors.MediaUserError):
                logger.exception("call %s failed", call.op)
            reply = error_reply(call.id, exc)
        if not writer.is_closing():
            writer.write(encode(reply))

    async def read_calls() -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                message = await read_message(reader)
                if isinstance(message, Call):
                    task = asyncio.create_task(handle(message))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)

    reading = asyncio.create_task(read_calls())
    waits: set[asyncio.Future[Any]] = {reading}
    if stop is not None:
        waits.add(asyncio.ensure_future(stop.wait()))
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for future in waits:
        future.cancel()
    if tasks:
        await asyncio.wait(set(tasks), timeout=5.0)


def push_event(writer: asyncio.StreamWriter, room_id: str, participant_id: str,
               event: dict[str, Any]) -> None:
    """Send an event to the calling side (dropped once the connection is closing)."""
    if not writer.is_closing():
        writer.write(encode(Event(room_id, participant_id, event)))


async def open_socket(sock: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(sock=sock)

