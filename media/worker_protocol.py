"""Messages between signaling and a media worker process: length-prefixed msgpack frames.

The parent sends `Call`s; the worker answers each with a `Reply` (in any order) and pushes
`Event`s whenever a room has something to tell a participant.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgspec

from media import errors

LENGTH = struct.Struct("!I")
MAX_FRAME = 16 * 1024 * 1024


class Call(msgspec.Struct, tag="call"):
    """Run `op(*args)` on the worker's `RoomHost`."""

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

OPERATIONS = frozenset(
    {
        "open_room", "close_room", "join", "leave", "publish", "subscriber_answer",
        "request_offer", "set_spotlight", "set_muted", "describe_room", "load", "close",
    }
)
"""What a `Call` may ask of the worker's `RoomHost`."""

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
        cls = errors.MediaError
        raise cls(f"{reply.error_type}: {reply.error}")
    raise cls(reply.error)
