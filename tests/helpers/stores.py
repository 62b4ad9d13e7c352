"""Small things tests of `Store` users share: namespaces and extra handles on one store."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from broker.store import Store

StoreHandleFactory = Callable[[], Awaitable[Store]]
"""Opens one more handle on the data of a test's `store` (another node, for Redis)."""


def unique_prefix() -> str:
    """A Redis namespace no other test uses, so tests share one server without interfering."""
    return f"test:{uuid.uuid4().hex[:12]}:"
