"""`RedisSubscription`: events published on Redis channels, buffered for one subscriber.

It implements `broker.store.Subscription` for `broker.redis_store.RedisStore`, on a redis-py
`PubSub` of its own and a background reader task filling a bounded buffer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from broker.errors import StoreUnavailable
from broker.store import Event
from broker.subscription_buffer import SUBSCRIPTION_BUFFER, BufferedSubscription

__all__ = ["SUBSCRIPTION_BUFFER", "RedisSubscription", "unavailable"]

log = logging.getLogger(__name__)

SUBSCRIPTION_POLL = 1.0
"""Seconds the reader waits for a message before checking the connection's health."""


def unavailable(what: str, exc: BaseException) -> StoreUnavailable:
    """The `StoreUnavailable` raised when the redis operation `what` failed with `exc`."""
    return StoreUnavailable(f"redis {what} failed: {type(exc).__name__}: {exc}")


class RedisSubscription(BufferedSubscription):
    """Events from some channels, read by a background task into a bounded buffer.

    Each subscription holds one Redis connection. When that connection is lost, buffered
    events are still returned, then `get` and iteration raise `StoreUnavailable`: events
    published meanwhile are gone, so the caller re-subscribes and re-reads the state it needs.
    """

    def __init__(
        self,
        client: Redis,
        channels: tuple[str, ...],
        *,
        prefix: str,
        op_timeout: float,
        registry: set[RedisSubscription],
    ) -> None:
        """Subscribe `client` to `prefix` + each channel on entering; `registry` holds the
        subscription while it is open (its store ends every open one when it closes)."""
        super().__init__()
        self._client = client
        self._channels = tuple(dict.fromkeys(channels))
        self._prefix = prefix
        self._op_timeout = op_timeout
        self._registry = registry
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._failure: StoreUnavailable | None = None

    def _deliver(self, message: dict[str, Any]) -> None:
        channel = bytes(message["channel"]).decode().removeprefix(self._prefix)
        self._push(Event(channel, bytes(message["data"])))

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            # a fresh exception each time: re-raising one instance grows its traceback
            raise StoreUnavailable(self._failure.message) from self._failure.__cause__

    async def __aenter__(self) -> RedisSubscription:
        if not self._channels:
            return self
        names = [self._prefix + c for c in self._channels]
        self._pubsub = self._client.pubsub()
        try:
            # Wait for every SUBSCRIBE to be acknowledged: a publish after this returns is seen.
            async with asyncio.timeout(self._op_timeout):
                await self._pubsub.subscribe(*names)
                confirmed: set[bytes] = set()
                while len(confirmed) < len(names):
                    message = await self._pubsub.get_message(timeout=self._op_timeout)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        confirmed.add(bytes(message["channel"]))
                    elif message["type"] == "message":
                        self._deliver(message)
        except (TimeoutError, RedisError, OSError) as exc:
            await self._close_pubsub()
            raise unavailable("subscribe", exc) from exc
        except BaseException:
            await self._close_pubsub()
            raise
        self._reader = asyncio.create_task(self._read(self._pubsub), name="redis-subscription")
        self._registry.add(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, reason: StoreUnavailable | None = None) -> None:
        """Stop receiving; buffered events stay readable, then `reason` (if any) is raised."""
        if reason is not None and self._failure is None:
            self._failure = reason
            self._ready.set()
        self._registry.discard(self)
        reader, self._reader = self._reader, None
        try:
            if reader is not None:
                reader.cancel()
                try:
                    await reader
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise
        finally:
            # Also when the consumer itself is being cancelled (a hub watcher ending with its
            # session): skipped, the connection stayed subscribed, one per ended session.
            await self._close_pubsub()

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                await pubsub.aclose()
            except (RedisError, OSError):
                pass  # the connection is dropped either way

    async def _read(self, pubsub: PubSub) -> None:
        try:
            while True:
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=SUBSCRIPTION_POLL
                )
                if message is not None and message["type"] == "message":
                    self._deliver(message)
        except (RedisError, OSError) as exc:
            self._failure = unavailable("subscription", exc)
            self._ready.set()
        except Exception as exc:
            # A reader that died silently would leave its consumer waiting forever.
            log.exception("redis subscription reader failed")
            self._failure = unavailable("subscription", exc)
            self._ready.set()

