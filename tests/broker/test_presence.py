"""Presence: heartbeats keep it, goodbyes and silence end it, arrivals and goodbyes are events."""

from __future__ import annotations

import pytest

from broker.clock import ManualClock
from broker.events import PresenceChanged, decode_event, session_channel
from broker.models import Role
from broker.presence import PresenceBoard
from broker.store import Store
from tests.helpers.waiting import wait_until


@pytest.mark.timeout(30)
async def test_arrival_heartbeat_and_goodbye(store: Store) -> None:
    clock = ManualClock(1000.0)
    board = PresenceBoard(store, clock)
    async with store.subscribe(session_channel("s1")) as sub:
        assert await board.mark_present("s1", "room1", Role.ASSISTANT) is True
        clock.advance(5)
        assert await board.mark_present("s1", "room1", Role.ASSISTANT) is False  # heartbeat
        present = await board.present("s1", ["room1", "room2"])
        assert list(present) == ["room1"] and present["room1"].since == 1000.0
        assert await board.mark_absent("s1", "room1") is True
        assert await board.mark_absent("s1", "room1") is False
        events = []
        for _ in range(2):
            event = await sub.get(timeout=5)
            assert event is not None
            events.append(decode_event(event.data))
    assert [(e.participant_id, e.present) for e in events if isinstance(e, PresenceChanged)] == [
        ("room1", True),
        ("room1", False),
    ]
    assert await board.present("s1", ["room1"]) == {}


@pytest.mark.timeout(30)
async def test_silence_ends_presence_when_the_key_expires(store: Store) -> None:
    board = PresenceBoard(store, ManualClock(), ttl_s=0.3)
    await board.mark_present("s1", "room1", Role.ASSISTANT)

    async def gone() -> bool:
        return await board.present("s1", ["room1"]) == {}

    await wait_until(gone, within=10, what="presence expiry")
    assert await board.mark_present("s1", "room1", Role.ASSISTANT) is True  # a new arrival


async def test_extras_are_remembered_for_listings(store: Store) -> None:
    board = PresenceBoard(store, ManualClock())
    await board.mark_present("s1", "obs-2", Role.OBSERVER, extra=True)
    await board.mark_present("s1", "obs-1", Role.OBSERVER, extra=True)
    await board.mark_present("s1", "room1", Role.ASSISTANT)
    assert await board.extras("s1") == ["obs-1", "obs-2"]
    assert await board.extras("s2") == []
