"""`RedisStore`: the shared implementation of `broker.store.Store` on one Redis server.

Several Tongxin nodes pointed at the same Redis (and the same `prefix`) see the same state.
Every name is namespaced: keys live under `<prefix>key:`, maps under `<prefix>map:`, priority
queues (sorted sets) under `<prefix>queue:`, logs (streams) under `<prefix>log:` and pub/sub
channels under `<prefix>`, so the kinds never collide and deployments can share a server.

Failure contract: every operation finishes within `op_timeout` seconds; when Redis cannot be
reached or does not answer it raises `broker.errors.StoreUnavailable`, never a redis-py
exception. Client-side retries are off on purpose (a retried INCR or XADD whose reply was lost
would apply twice); the pool reconnects by itself on the next command once Redis is back.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from typing import Any

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from broker.errors import StoreUnavailable
from broker.redis_subscription import RedisSubscription, unavailable
from broker.store import LogEntry, log_id_key

LOG_FIELD = b"d"
"""The one stream field holding a log entry's bytes."""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# ARGV: expected-present flag, expected, value-present flag, value, ttl in ms ('0': none).
_COMPARE_AND_SET = """
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
if ARGV[3] == '1' then
  if ARGV[5] ~= '0' then
    redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
  else
    redis.call('SET', KEYS[1], ARGV[4])
  end
else
  redis.call('DEL', KEYS[1])
end
return 1
"""


def ttl_millis(ttl: float) -> int:
    """Redis PX value for a TTL in seconds; at least 1 ms (Redis refuses 0 and negatives)."""
    return max(1, round(ttl * 1000))


def glob_escape(text: str) -> str:
    """`text` with Redis glob metacharacters escaped, for a literal SCAN MATCH prefix."""
    return "".join("\\" + ch if ch in "*?[]\\^" else ch for ch in text)


class RedisStore:
    """`Store` on Redis; see the module docstring."""

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "tx:",
        op_timeout: float = 2.0,
        connect_timeout: float = 1.0,
        max_connections: int = 64,
        max_subscriptions: int = 10_000,
    ) -> None:
        """Build the client; no I/O happens until the first operation.

        `op_timeout` bounds every operation (waiting for a pooled connection, connecting and
        the command itself); `connect_timeout` bounds one TCP connect. `max_connections` caps
        command connections (callers beyond it wait); each live subscription holds one more.
        """
        if op_timeout <= 0 or connect_timeout <= 0:
            raise ValueError("op_timeout and connect_timeout must be positive")
        self.prefix = prefix
        self.op_timeout = op_timeout
        common: dict[str, Any] = {
            "socket_connect_timeout": min(connect_timeout, op_timeout),
            "socket_keepalive": True,
            "retry": Retry(NoBackoff(), 0),
            "decode_responses": False,
        }
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=op_timeout,
            socket_timeout=op_timeout,
            **common,
        )
        self._client: Redis = Redis.from_pool(pool)
        pubsub_pool = ConnectionPool.from_url(
            url,
            max_connections=max_subscriptions,
            socket_timeout=op_timeout,
            health_check_interval=max(5.0, op_timeout),
            **common,
        )
        self._pubsub_client: Redis = Redis.from_pool(pubsub_pool)
        self._release = self._client.register_script(_RELEASE)
        self._compare_and_set = self._client.register_script(_COMPARE_AND_SET)
        self._subscriptions: set[RedisSubscription] = set()
        """Open subscriptions, ended by `close`."""

    @classmethod
    async def connect(cls, url: str, **kw: Any) -> RedisStore:
        """A `RedisStore` that has answered a PING; raises `StoreUnavailable` otherwise."""
        store = cls(url, **kw)
        try:
            await store.ping()
        except BaseException:
            await store.close()
            raise
        return store

    # --- names ----------------------------------------------------------------------------
    def _key(self, key: str) -> str:
        return f"{self.prefix}key:{key}"

    def _map(self, name: str) -> str:
        return f"{self.prefix}map:{name}"

    def _queue(self, name: str) -> str:
        return f"{self.prefix}queue:{name}"

    def _log(self, name: str) -> str:
        return f"{self.prefix}log:{name}"

    async def _call(self, what: str, awaitable: Awaitable[Any]) -> Any:
        """Await one Redis command within the operation timeout, as StoreUnavailable on failure.

        Replies are typed Any: redis-py's annotations cannot say this client was made with
        decode_responses=False, so every reply here is bytes (or ints, lists of them) and each
        caller converts it to the store contract's type on the spot."""
        try:
            async with asyncio.timeout(self.op_timeout):
                return await awaitable
        except TimeoutError as exc:
            raise StoreUnavailable(
                f"redis {what} did not finish within {self.op_timeout:g} s"
            ) from exc
        except (RedisError, OSError) as exc:
            if isinstance(exc, RedisConnectionError):
                await self._drop_idle_connections()
            raise unavailable(what, exc) from exc

    async def _drop_idle_connections(self) -> None:
        """After a lost connection the idle ones are most likely dead too (Redis restarted):
        close them, so the next operations connect afresh instead of each failing once."""
        try:
            await self._client.connection_pool.disconnect(inuse_connections=False)
        except (RedisError, OSError):
            pass  # they are being dropped either way

    # --- lifecycle --------------------------------------------------------------------------
    async def ping(self) -> None:
        await self._call("ping", self._client.ping())

    async def close(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.close(StoreUnavailable("the redis store was closed"))
        for client in (self._client, self._pubsub_client):
            try:
                await client.aclose()
            except (RedisError, OSError):
                pass  # closing a pool whose server is gone must not fail shutdown

    # --- keys -----------------------------------------------------------------------------
    async def get(self, key: str) -> bytes | None:
        value = await self._call("get", self._client.get(self._key(key)))
        return None if value is None else bytes(value)

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        px = None if ttl is None else ttl_millis(ttl)
        await self._call("set", self._client.set(self._key(key), bytes(value), px=px))

    async def delete(self, key: str) -> bool:
        return bool(await self._call("delete", self._client.delete(self._key(key))))

    async def ttl(self, key: str) -> float | None:
        millis = await self._call("ttl", self._client.pttl(self._key(key)))
        return None if millis < 0 else millis / 1000.0

    async def claim(self, key: str, owner: str, *, ttl: float | None = None) -> bool:
        px = None if ttl is None else ttl_millis(ttl)
        done = await self._call(
            "claim", self._client.set(self._key(key), owner.encode(), nx=True, px=px)
        )
        return bool(done)

    async def release(self, key: str, owner: str) -> bool:
        done = await self._call(
            "release", self._release(keys=[self._key(key)], args=[owner.encode()])
        )
        return bool(done)

    async def compare_and_set(
        self, key: str, expected: bytes | None, value: bytes | None, *, ttl: float | None = None
    ) -> bool:
        args = [
            b"0" if expected is None else b"1",
            b"" if expected is None else bytes(expected),
            b"0" if value is None else b"1",
            b"" if value is None else bytes(value),
            b"0" if ttl is None else str(ttl_millis(ttl)).encode(),
        ]
        done = await self._call(
            "compare_and_set", self._compare_and_set(keys=[self._key(key)], args=args)
        )
        return bool(done)

    async def incr(self, key: str, amount: int = 1) -> int:
        try:
            return int(await self._call("incr", self._client.incrby(self._key(key), amount)))
        except StoreUnavailable as exc:
            if isinstance(exc.__cause__, ResponseError) and "not an integer" in str(exc):
                raise ValueError(f"{key!r} does not hold an integer") from exc.__cause__
            raise

    async def keys(self, prefix: str) -> list[str]:
        namespace = self._key("")
        pattern = glob_escape(namespace + prefix) + "*"

        async def scan() -> list[str]:
            found: set[str] = set()
            async for raw in self._client.scan_iter(match=pattern, count=1000):
                found.add(bytes(raw).decode().removeprefix(namespace))
            return sorted(found)

        listed: list[str] = await self._call("keys", scan())
        return listed

    # --- maps -----------------------------------------------------------------------------
    async def map_set(self, name: str, field: str, value: bytes) -> None:
        await self._call("map_set", self._client.hset(self._map(name), field, bytes(value)))

    async def map_get(self, name: str, field: str) -> bytes | None:
        value = await self._call("map_get", self._client.hget(self._map(name), field))
        return None if value is None else bytes(value)

    async def map_delete(self, name: str, field: str) -> bool:
        return bool(await self._call("map_delete", self._client.hdel(self._map(name), field)))

    async def map_all(self, name: str) -> dict[str, bytes]:
        fields = await self._call("map_all", self._client.hgetall(self._map(name)))
        return {bytes(f).decode(): bytes(v) for f, v in fields.items()}

    # --- priority queues (sorted sets: equal scores order by member bytes, as in memory) --
    async def queue_push(self, queue: str, member: str, score: float) -> None:
        if math.isnan(score):
            raise ValueError("a queue score must be a number, not NaN")
        await self._call(
            "queue_push", self._client.zadd(self._queue(queue), {member: float(score)})
        )

    async def queue_remove(self, queue: str, member: str) -> bool:
        return bool(await self._call("queue_remove", self._client.zrem(self._queue(queue), member)))

    async def queue_items(self, queue: str, *, limit: int | None = None) -> list[tuple[str, float]]:
        if limit is not None and limit <= 0:
            return []
        end = -1 if limit is None else limit - 1
        items = await self._call(
            "queue_items", self._client.zrange(self._queue(queue), 0, end, withscores=True)
        )
        return [(bytes(m).decode(), float(s)) for m, s in items]

    async def queue_rank(self, queue: str, member: str) -> int | None:
        rank = await self._call("queue_rank", self._client.zrank(self._queue(queue), member))
        return None if rank is None else int(rank)

    async def queue_len(self, queue: str) -> int:
        return int(await self._call("queue_len", self._client.zcard(self._queue(queue))))

    async def queue_pop_first(self, queue: str) -> tuple[str, float] | None:
        popped = await self._call("queue_pop_first", self._client.zpopmin(self._queue(queue)))
        if not popped:
            return None
        member, score = popped[0]
        return bytes(member).decode(), float(score)

    # --- publish / subscribe ------------------------------------------------------------
    async def publish(self, channel: str, data: bytes) -> None:
        await self._call("publish", self._client.publish(self.prefix + channel, bytes(data)))

    def subscribe(self, *channels: str) -> RedisSubscription:
        return RedisSubscription(
            self._pubsub_client,
            channels,
            prefix=self.prefix,
            op_timeout=self.op_timeout,
            registry=self._subscriptions,
        )

    # --- append-only log (streams) --------------------------------------------------------
    async def log_append(self, log: str, data: bytes, *, max_len: int | None = None) -> str:
        if max_len is not None and max_len < 0:
            raise ValueError("max_len must not be negative")
        entry_id = await self._call(
            "log_append",
            self._client.xadd(
                self._log(log), {LOG_FIELD: bytes(data)}, maxlen=max_len, approximate=False
            ),
        )
        return bytes(entry_id).decode()

    async def log_read(
        self, log: str, *, after: str | None = None, limit: int = 100
    ) -> list[LogEntry]:
        if limit <= 0:
            return []
        if after is None:
            start = "-"
        else:
            ms, seq = log_id_key(after)  # ValueError on a malformed id, as in memory
            start = f"({ms}-{seq}"
        entries = await self._call(
            "log_read", self._client.xrange(self._log(log), min=start, max="+", count=limit)
        )
        return [LogEntry(bytes(i).decode(), bytes(fields[LOG_FIELD])) for i, fields in entries]

    async def log_len(self, log: str) -> int:
        return int(await self._call("log_len", self._client.xlen(self._log(log))))
