"""`tongxin bench broker`: the command-line face of `bench.broker` (flags, store, clean-up).

With `--redis URL` the benchmark writes under a namespace of its own and removes it afterwards,
so it can run against a Redis that holds other data.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from typing import Any

from bench.broker import run_broker_bench
from broker.memory_store import MemoryStore
from broker.store import Store


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis", metavar="URL", help="run on this Redis instead of memory")
    parser.add_argument("--tickets", type=int, default=10_000, help="waiting requests to load")
    parser.add_argument("--experts", type=int, default=2_000, help="on-duty doctors to load")
    parser.add_argument("--claimers", type=int, default=50, help="doctors racing to claim")
    parser.add_argument("--samples", type=int, default=500, help="timed matches each way")


async def _drop_namespace(url: str, prefix: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await client.unlink(*batch)
                batch.clear()
        if batch:
            await client.unlink(*batch)
    finally:
        await client.aclose()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the broker benchmark as the flags say; one dict of figures."""
    for name in ("tickets", "experts", "claimers", "samples"):
        if getattr(args, name) < 1:
            raise SystemExit(f"tongxin bench broker: error: --{name} must be at least 1")
    start = time.perf_counter()

    def progress(message: str) -> None:
        sys.stderr.write(f"[{time.perf_counter() - start:6.1f} s] {message}\n")

    store: Store
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    if args.redis:
        from broker.redis_store import RedisStore

        store = await RedisStore.connect(args.redis, prefix=prefix)
    else:
        store = MemoryStore()
    try:
        return await run_broker_bench(
            store,
            tickets=args.tickets,
            experts=args.experts,
            claimers=args.claimers,
            samples=args.samples,
            progress=progress,
        )
    finally:
        await store.close()
        if args.redis:
            progress("removing the benchmark's keys from Redis")
            await _drop_namespace(args.redis, prefix)
