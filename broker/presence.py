"""`PresenceBoard`: who is connected to a session now, kept alive by heartbeats.

One store key per present participant, `presence:<session>:<participant>`, expiring unless a
heartbeat refreshes it, so a participant whose node dies stops being present by itself; a
`presence` event goes out on `session:<id>` when someone arrives or says goodbye. Extra
participants (observers, who are not known in advance) are remembered in the map
`presence:extra:<session>` so listings never scan keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from msgspec import Struct

from broker.clock import Clock
from broker.events import PresenceChanged, encode_event, session_channel
from broker.models import Role, decode_as, encode
from broker.store import Store

PRESENCE_TTL_S = 30.0
"""Seconds a participant stays present without a heartbeat (heartbeats come every ~10 s)."""


def presence_key(session_id: str, participant_id: str) -> str:
    return f"presence:{session_id}:{participant_id}"


def extras_map(session_id: str) -> str:
    return f"presence:extra:{session_id}"


class Presence(Struct, frozen=True):
    """What a presence key holds."""

    role: Role
    """The participant's role in the session."""
    since: float
    """When this stretch of presence began, epoch seconds."""


class PresenceBoard:
    """Presence of participants in sessions; see the module docstring."""

    def __init__(self, store: Store, clock: Clock, *, ttl_s: float = PRESENCE_TTL_S) -> None:
        self._store = store
        self._clock = clock
        self.ttl_s = ttl_s

    async def mark_present(
        self, session_id: str, participant_id: str, role: Role, *, extra: bool = False
    ) -> bool:
        """Heartbeat: the participant is connected. True when it just became present (then a
        `presence` event goes out). `extra` remembers it for `extras` (observers)."""
        now = self._clock()
        key = presence_key(session_id, participant_id)
        fresh = encode(Presence(role, now))
        if await self._store.claim(key, fresh.decode(), ttl=self.ttl_s):
            if extra:
                await self._store.map_set(extras_map(session_id), participant_id, b"")
            await self._store.publish(
                session_channel(session_id),
                encode_event(
                    PresenceChanged(
                        at=now,
                        session=session_id,
                        participant_id=participant_id,
                        role=role,
                        present=True,
                    )
                ),
            )
            return True
        current = await self._store.get(key)  # keep `since` of the running stretch
        await self._store.set(key, current or fresh, ttl=self.ttl_s)
        return False

    async def mark_absent(self, session_id: str, participant_id: str) -> bool:
        """The participant said goodbye; True when it was present (a `presence` event)."""
        key = presence_key(session_id, participant_id)
        raw = await self._store.get(key)
        if raw is None or not await self._store.delete(key):
            return False
        await self._store.publish(
            session_channel(session_id),
            encode_event(
                PresenceChanged(
                    at=self._clock(),
                    session=session_id,
                    participant_id=participant_id,
                    role=decode_as(raw, Presence).role,
                    present=False,
                )
            ),
        )
        return True

    async def present(self, session_id: str, participant_ids: Sequence[str]) -> dict[str, Presence]:
        """Which of `participant_ids` are present, with their presence."""
        raws = await asyncio.gather(
            *(self._store.get(presence_key(session_id, p)) for p in participant_ids)
        )
        return {
            p: decode_as(raw, Presence)
            for p, raw in zip(participant_ids, raws, strict=True)
            if raw is not None
        }

    async def extras(self, session_id: str) -> list[str]:
        """Participants marked `extra` in this session (present or not any more), sorted."""
        return sorted(await self._store.map_all(extras_map(session_id)))
