"""Room placement: the least-loaded live node gets a room, exactly one placement wins a race,
and a dead holder's rooms are placed again (on both stores)."""

from __future__ import annotations

import asyncio

import pytest

from broker.store import Store
from signaling.placement import NodeLoad, Placement, choose_node, node_key

A = NodeLoad("a", "http://a", rooms=0, participants=0)


@pytest.mark.parametrize(("nodes", "prefer", "chosen"), [
    ([], None, None),
    ([A], None, "a"),
    ([NodeLoad("a", "u", 1, 10), NodeLoad("b", "u", 3, 4)], None, "b"),
    ([NodeLoad("a", "u", 1, 4), NodeLoad("b", "u", 0, 4)], None, "b"),
    ([NodeLoad("a", "u", 0, 0), NodeLoad("b", "u", 0, 0)], None, "a"),
    ([NodeLoad("a", "u", 0, 0), NodeLoad("b", "u", 0, 0)], "b", "b"),
    ([NodeLoad("a", "u", 0, 0), NodeLoad("b", "u", 0, 1)], "b", "a"),
])
def test_choose_node_takes_the_least_loaded_and_prefers_itself_on_a_tie(nodes, prefer, chosen):
    found = choose_node(nodes, prefer=prefer)
    assert (found.id if found else None) == chosen


async def test_racing_nodes_agree_on_one_holder_and_a_dead_holder_is_replaced(store: Store):
    nodes = [Placement(store, name, f"http://{name}") for name in ("a", "b", "c")]
    for node in nodes:
        await node.start()
    try:
        holders = await asyncio.gather(*(n.place("class-1") for n in nodes))
        assert len({h.id for h in holders}) == 1
        holder = next(n for n in nodes if n.node_id == holders[0].id)
        assert holder.held == {"class-1"}

        await holder.stop(graceful=False)
        await store.delete(node_key(holder.node_id))  # as when its registration expires
        survivors = [n for n in nodes if n is not holder]
        again = await asyncio.gather(*(n.place("class-1") for n in survivors))
        assert len({h.id for h in again}) == 1 and again[0].id != holder.node_id
    finally:
        for node in nodes:
            await node.stop()


async def test_a_node_that_leaves_gracefully_frees_its_rooms_at_once(store: Store):
    a = Placement(store, "a", "http://a")
    b = Placement(store, "b", "http://b")
    await a.start()
    await b.start()
    try:
        assert (await a.place("consult-1")).id == "a"
        assert (await b.place("consult-1")).id == "a"
        await a.stop()
        assert await store.get(node_key("a")) is None
        assert (await b.place("consult-1")).id == "b"
    finally:
        await a.stop()
        await b.stop()


async def test_a_node_that_missed_its_heartbeat_is_not_offered_for_new_participants(
        store: Store):
    a = Placement(store, "a", "http://a")
    b = Placement(store, "b", "http://b")
    await a.start()
    await b.start()
    try:
        assert {n.id for n in await a.live_nodes(beating=True)} == {"a", "b"}
        await b.stop(graceful=False)  # b stops beating; its key lives on for a while
        registration = await store.get(node_key("b"))
        assert registration is not None
        await store.set(node_key("b"), registration, ttl=0.5)  # as if it beat 2.5 s ago
        assert {n.id for n in await a.live_nodes()} == {"a", "b"}
        assert {n.id for n in await a.live_nodes(beating=True)} == {"a"}
    finally:
        await a.stop()
        await b.stop()
