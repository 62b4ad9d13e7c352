"""`BufferedSubscription`: the part every `Subscription` shares, whatever the store.

Events for one subscriber wait in a bounded buffer (when it is full the oldest is dropped and
counted, so a slow reader cannot grow memory), and `get` waits for the next one. The store's
subscription (memory, Redis) subscribes, pushes what arrives with `_push`, and says through
`_raise_if_failed` when no more events will come.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from broker.store import Event

SUBSCRIPTION_BUFFER = 1024
"""Events a subscriber may fall behind by before the oldest are dropped."""


class BufferedSubscription:
    """A bounded buffer of events and the wait for the next; see the module docstring."""

    def __init__(self) -> None:
        self._events: deque[Event] = deque(maxlen=SUBSCRIPTION_BUFFER)
        self._ready = asyncio.Event()
        self.dropped = 0
        """Events lost because the reader fell more than `SUBSCRIPTION_BUFFER` behind."""

    def _push(self, event: Event) -> None:
        if len(self._events) == self._events.maxlen:
            self.dropped += 1
        self._events.append(event)
        self._ready.set()

    def _raise_if_failed(self) -> None:
        """Raise when the subscription has ended and the buffer is empty (default: never)."""

    async def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None when `timeout` seconds pass without one."""
        while not self._events:
            self._raise_if_failed()
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return None
        return self._events.popleft()

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            event = await self.get()
            if event is not None:
                yield event
