"""A Redis subscription gives its connection back however its consumer ends, including when
the consuming task is cancelled (as a hub watcher is when its session ends): a subscription
left behind holds a Redis connection for the life of the node."""

from __future__ import annotations

import asyncio

import pytest

from broker.redis_store import RedisStore
from tests.helpers.waiting import wait_until

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]


async def test_cancelling_the_consumer_unsubscribes_and_closes_the_connection(
    redis_url: str,
) -> None:
    store = RedisStore(redis_url, prefix="subscription-test:")
    subscribed = asyncio.Event()

    async def consume() -> None:
        async with store.subscribe("session:s1") as sub:
            subscribed.set()
            async for _event in sub:
                pass

    async def subscribers() -> int:
        counts = await store._client.pubsub_numsub("subscription-test:session:s1")
        return int(counts[0][1])

    try:
        for _ in range(3):
            task = asyncio.get_running_loop().create_task(consume())
            await asyncio.wait_for(subscribed.wait(), 10)
            assert await subscribers() == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            subscribed.clear()

            async def none_left() -> bool:
                return await subscribers() == 0

            await wait_until(none_left, within=10, what="the cancelled consumer unsubscribed")
    finally:
        await store.close()
