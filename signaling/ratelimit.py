"""Token-bucket rate limiting per client address and per token.

`take` is the pure decision (bucket, now, rate, burst -> allowed, retry-after, new bucket);
`RateLimiter` keeps buckets in a bounded dict so a flood of addresses cannot grow memory.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Bucket:
    """Tokens left and when they were counted."""

    tokens: float
    at: float


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after_s: float
    bucket: Bucket


def take(bucket: Bucket | None, now: float, rate_per_s: float, burst: float) -> Decision:
    """Spend one token from `bucket` refilled at `rate_per_s` up to `burst`."""
    if bucket is None:
        bucket = Bucket(burst, now)
    tokens = min(burst, bucket.tokens + max(0.0, now - bucket.at) * rate_per_s)
    if tokens >= 1.0:
        return Decision(True, 0.0, Bucket(tokens - 1.0, now))
    wait = (1.0 - tokens) / rate_per_s if rate_per_s > 0 else math.inf
    return Decision(False, wait, Bucket(tokens, now))


class RateLimiter:
    """Buckets by key (address or token id), at most `max_keys` remembered (LRU)."""

    def __init__(self, per_minute: int, burst: int | None = None, max_keys: int = 50_000) -> None:
        self.rate_per_s = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(10, per_minute // 6))
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()

    def check(self, key: str, now: float) -> Decision:
        decision = take(self._buckets.get(key), now, self.rate_per_s, self.burst)
        self._buckets[key] = decision.bucket
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return decision
