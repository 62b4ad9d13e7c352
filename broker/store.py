"""The `Store` interface: every piece of shared state goes through it.

Two implementations pass the same contract tests (tests/broker/test_store_contract.py):
`broker.memory_store.MemoryStore` (embedded, one process) and `broker.redis_store.RedisStore`
(several nodes sharing one Redis). Values are bytes; the domain encodes them (msgspec JSON).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One entry of an append-only log."""

    id: str
    """Store-assigned id; ids of one log sort in append order (compare with `log_id_key`)."""
    data: bytes
    """The bytes appended."""


@dataclass(frozen=True, slots=True)
class Event:
    """One message received on a subscription."""

    channel: str
    data: bytes


def log_id_key(entry_id: str) -> tuple[int, int]:
    """Sort key of a log id of the form `<millis>-<seq>` (both stores use it)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class Subscription(Protocol):
    """Events published on some channels, from the moment of subscribing.

    Use as `async with store.subscribe("a", "b") as sub: async for event in sub: ...`.
    A slow reader loses the oldest events rather than growing memory without bound.
    """

    async def __aenter__(self) -> Subscription: ...

    async def __aexit__(self, *exc: object) -> None: ...

    def __aiter__(self) -> AsyncIterator[Event]: ...

    async def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None when `timeout` seconds pass without one."""
        ...


@runtime_checkable
class Store(Protocol):
    """What the domain needs from shared state; see the module docstring."""

    name: str
    """`memory` or `redis`."""

    async def ping(self) -> None:
        """Return when the store answers; raise `StoreUnavailable` (quickly) when it does not."""
        ...

    async def close(self) -> None: ...

    # --- keys with optional time to live -------------------------------------------------
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Set `key`; `ttl` seconds later it disappears (None: never)."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove `key`; True when it existed."""
        ...

    async def ttl(self, key: str) -> float | None:
        """Seconds until `key` expires; None when it does not exist or never expires."""
        ...

    async def claim(self, key: str, owner: str, *, ttl: float | None = None) -> bool:
        """Set `key` to `owner` only if absent. Among concurrent claimers exactly one wins."""
        ...

    async def release(self, key: str, owner: str) -> bool:
        """Delete `key` only if `owner` holds it; True when it did."""
        ...

    async def compare_and_set(
        self, key: str, expected: bytes | None, value: bytes | None, *, ttl: float | None = None
    ) -> bool:
        """Atomically replace `key` when it currently holds `expected` (None: absent).

        `value` None deletes the key. Returns True when the swap happened.
        """
        ...

    async def incr(self, key: str, amount: int = 1) -> int:
        """Atomically add `amount` to an integer counter (absent counts as 0); the new value."""
        ...

    async def keys(self, prefix: str) -> list[str]:
        """Live keys starting with `prefix` (for presence listings; not for hot paths)."""
        ...

    # --- maps: a named set of fields (directory tables, rosters) ---------------------------
    async def map_set(self, name: str, field: str, value: bytes) -> None: ...

    async def map_get(self, name: str, field: str) -> bytes | None: ...

    async def map_delete(self, name: str, field: str) -> bool: ...

    async def map_all(self, name: str) -> dict[str, bytes]: ...

    # --- priority queues: lowest score first ------------------------------------------------
    async def queue_push(self, queue: str, member: str, score: float) -> None:
        """Add `member` (or move it) with `score`."""
        ...

    async def queue_remove(self, queue: str, member: str) -> bool:
        """Remove `member`; True when it was there (exactly one concurrent remover wins)."""
        ...

    async def queue_items(
        self, queue: str, *, limit: int | None = None
    ) -> list[tuple[str, float]]:
        """Members with scores, lowest score first (ties by member)."""
        ...

    async def queue_rank(self, queue: str, member: str) -> int | None:
        """0-based position of `member`, None when absent."""
        ...

    async def queue_len(self, queue: str) -> int: ...

    async def queue_pop_first(self, queue: str) -> tuple[str, float] | None:
        """Atomically remove and return the lowest-score member (one winner per member)."""
        ...

    # --- publish / subscribe ----------------------------------------------------------------
    async def publish(self, channel: str, data: bytes) -> None: ...

    def subscribe(self, *channels: str) -> Subscription: ...

    # --- append-only log ------------------------------------------------------------------
    async def log_append(self, log: str, data: bytes, *, max_len: int | None = None) -> str:
        """Append `data`; returns the new entry's id. `max_len` trims the oldest beyond it."""
        ...

    async def log_read(
        self, log: str, *, after: str | None = None, limit: int = 100
    ) -> list[LogEntry]:
        """Entries in append order, starting after id `after` (from the start when None)."""
        ...

    async def log_len(self, log: str) -> int: ...
