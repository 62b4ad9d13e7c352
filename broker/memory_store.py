"""`MemoryStore`: the embedded, single-process implementation of `broker.store.Store`.

Everything lives in dicts on the event loop's thread; each method runs without awaiting in
the middle, so every operation is atomic with respect to other coroutines. Expiry is lazy
(checked on access) against an injectable monotonic clock.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable

from broker.store import Event, LogEntry, log_id_key
from broker.subscription_buffer import SUBSCRIPTION_BUFFER, BufferedSubscription

__all__ = ["SUBSCRIPTION_BUFFER", "MemoryStore", "MemorySubscription"]


class MemorySubscription(BufferedSubscription):
    """A bounded queue of events for one subscriber of a `MemoryStore`."""

    def __init__(self, store: MemoryStore, channels: tuple[str, ...]) -> None:
        super().__init__()
        self._store = store
        self._channels = channels

    def _deliver(self, event: Event) -> None:
        self._push(event)

    async def __aenter__(self) -> MemorySubscription:
        for channel in self._channels:
            self._store._subscribers.setdefault(channel, set()).add(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for channel in self._channels:
            subs = self._store._subscribers.get(channel)
            if subs is not None:
                subs.discard(self)
                if not subs:
                    del self._store._subscribers[channel]


class MemoryStore:
    """In-process store; see the module docstring."""

    name = "memory"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._values: dict[str, bytes] = {}
        self._expiry: dict[str, float] = {}
        self._maps: dict[str, dict[str, bytes]] = {}
        self._queues: dict[str, dict[str, float]] = {}
        self._logs: dict[str, list[LogEntry]] = {}
        self._log_seq: dict[str, tuple[int, int]] = {}
        self._subscribers: dict[str, set[MemorySubscription]] = {}

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # --- keys -------------------------------------------------------------------------
    def _live(self, key: str) -> bytes | None:
        deadline = self._expiry.get(key)
        if deadline is not None and deadline <= self._clock():
            self._values.pop(key, None)
            self._expiry.pop(key, None)
            return None
        return self._values.get(key)

    def _put(self, key: str, value: bytes, ttl: float | None) -> None:
        self._values[key] = bytes(value)
        if ttl is None:
            self._expiry.pop(key, None)
        else:
            self._expiry[key] = self._clock() + ttl

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        self._put(key, value, ttl)

    async def delete(self, key: str) -> bool:
        existed = self._live(key) is not None
        self._values.pop(key, None)
        self._expiry.pop(key, None)
        return existed

    async def ttl(self, key: str) -> float | None:
        if self._live(key) is None:
            return None
        deadline = self._expiry.get(key)
        return None if deadline is None else max(0.0, deadline - self._clock())

    async def claim(self, key: str, owner: str, *, ttl: float | None = None) -> bool:
        if self._live(key) is not None:
            return False
        self._put(key, owner.encode(), ttl)
        return True

    async def release(self, key: str, owner: str) -> bool:
        if self._live(key) != owner.encode():
            return False
        await self.delete(key)
        return True

    async def compare_and_set(
        self, key: str, expected: bytes | None, value: bytes | None, *, ttl: float | None = None
    ) -> bool:
        if self._live(key) != expected:
            return False
        if value is None:
            await self.delete(key)
        else:
            self._put(key, value, ttl)
        return True

    async def incr(self, key: str, amount: int = 1) -> int:
        current = self._live(key)
        value = int(current or b"0") + amount
        deadline = self._expiry.get(key)
        self._values[key] = str(value).encode()
        if deadline is not None:
            self._expiry[key] = deadline
        return value

    async def keys(self, prefix: str) -> list[str]:
        return sorted(
            k for k in list(self._values) if k.startswith(prefix) and self._live(k) is not None
        )

    # --- maps ---------------------------------------------------------------------------
    async def map_set(self, name: str, field: str, value: bytes) -> None:
        self._maps.setdefault(name, {})[field] = bytes(value)

    async def map_get(self, name: str, field: str) -> bytes | None:
        return self._maps.get(name, {}).get(field)

    async def map_delete(self, name: str, field: str) -> bool:
        fields = self._maps.get(name)
        if not fields or field not in fields:
            return False
        del fields[field]
        if not fields:
            del self._maps[name]
        return True

    async def map_all(self, name: str) -> dict[str, bytes]:
        return dict(self._maps.get(name, {}))

    # --- priority queues ------------------------------------------------------------------
    def _sorted(self, queue: str) -> list[tuple[str, float]]:
        members = self._queues.get(queue, {})
        return sorted(members.items(), key=lambda item: (item[1], item[0]))

    async def queue_push(self, queue: str, member: str, score: float) -> None:
        if math.isnan(score):
            raise ValueError("a queue score must be a number, not NaN")
        self._queues.setdefault(queue, {})[member] = float(score)

    async def queue_remove(self, queue: str, member: str) -> bool:
        members = self._queues.get(queue)
        if not members or member not in members:
            return False
        del members[member]
        if not members:
            del self._queues[queue]
        return True

    async def queue_items(
        self, queue: str, *, limit: int | None = None
    ) -> list[tuple[str, float]]:
        items = self._sorted(queue)
        return items if limit is None else items[: max(0, limit)]

    async def queue_rank(self, queue: str, member: str) -> int | None:
        members = self._queues.get(queue, {})
        if member not in members:
            return None
        key = (members[member], member)
        return bisect.bisect_left([(s, m) for m, s in self._sorted(queue)], key)

    async def queue_len(self, queue: str) -> int:
        return len(self._queues.get(queue, {}))

    async def queue_pop_first(self, queue: str) -> tuple[str, float] | None:
        items = self._sorted(queue)
        if not items:
            return None
        member, score = items[0]
        await self.queue_remove(queue, member)
        return member, score

    # --- publish / subscribe ----------------------------------------------------------------
    async def publish(self, channel: str, data: bytes) -> None:
        event = Event(channel, bytes(data))
        for sub in list(self._subscribers.get(channel, ())):
            sub._deliver(event)

    def subscribe(self, *channels: str) -> MemorySubscription:
        return MemorySubscription(self, channels)

    # --- append-only log ------------------------------------------------------------------
    async def log_append(self, log: str, data: bytes, *, max_len: int | None = None) -> str:
        if max_len is not None and max_len < 0:
            raise ValueError("max_len must not be negative")
        ms = int(time.time() * 1000)
        last_ms, last_seq = self._log_seq.get(log, (0, -1))
        seq = last_seq + 1 if ms <= last_ms else 0
        ms = max(ms, last_ms)
        self._log_seq[log] = (ms, seq)
        entry = LogEntry(f"{ms}-{seq}", bytes(data))
        entries = self._logs.setdefault(log, [])
        entries.append(entry)
        if max_len is not None and len(entries) > max_len:
            del entries[: len(entries) - max_len]
        return entry.id

    async def log_read(
        self, log: str, *, after: str | None = None, limit: int = 100
    ) -> list[LogEntry]:
        entries = self._logs.get(log, [])
        if after is not None:
            keys = [log_id_key(e.id) for e in entries]
            start = bisect.bisect_right(keys, log_id_key(after))
        else:
            start = 0
        return entries[start : start + max(0, limit)]

    async def log_len(self, log: str) -> int:
        return len(self._logs.get(log, []))
