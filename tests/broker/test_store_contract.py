"""The `Store` contract, proved on both implementations (the `store` fixture runs each test on
`MemoryStore` and on `RedisStore` against a real redis-server), plus what only Redis can do:
fail fast while the server is down or hung, and recover without being recreated."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Awaitable

import pytest

from bench.processes import free_port
from broker import memory_store, redis_store, redis_subscription
from broker.errors import StoreUnavailable
from broker.memory_store import MemorySubscription
from broker.redis_store import RedisStore
from broker.redis_subscription import RedisSubscription
from broker.store import Event, Store, Subscription, log_id_key
from tests.helpers.redis_server import RedisServerProcess, require_redis_server
from tests.helpers.stores import StoreHandleFactory, unique_prefix
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

CONCURRENT = 50
BUFFER = memory_store.SUBSCRIPTION_BUFFER


async def handles(store_handles: StoreHandleFactory, count: int = 5) -> list[Store]:
    """Several handles on one store's data (separate connection pools for Redis)."""
    return [await store_handles() for _ in range(count)]


# --- keys -------------------------------------------------------------------------------


async def test_get_returns_what_set_stored_and_none_when_absent(store: Store) -> None:
    assert await store.get("k") is None
    await store.set("k", b"\x00v\xff")
    assert await store.get("k") == b"\x00v\xff"
    await store.set("k", b"w")
    assert await store.get("k") == b"w"


async def test_delete_reports_whether_the_key_existed(store: Store) -> None:
    await store.set("k", b"v")
    assert await store.delete("k") is True
    assert await store.get("k") is None
    assert await store.delete("k") is False


async def test_empty_value_is_a_present_key(store: Store) -> None:
    await store.set("empty", b"")
    assert await store.get("empty") == b""
    assert await store.keys("emp") == ["empty"]


async def test_key_with_ttl_disappears_after_it(store: Store) -> None:
    await store.set("short", b"v", ttl=0.3)
    remaining = await store.ttl("short")
    assert remaining is None or 0 <= remaining <= 0.3  # None: a stalled machine let it lapse
    await wait_until(lambda: _is_gone(store, "short"), what="expiry of a 0.3 s key")
    assert await store.ttl("short") is None
    assert await store.keys("sho") == []
    assert await store.delete("short") is False


async def _is_gone(store: Store, key: str) -> bool:
    return await store.get(key) is None


async def test_key_with_long_ttl_is_present_and_reports_it(store: Store) -> None:
    await store.set("long", b"v", ttl=30)
    assert await store.get("long") == b"v"
    remaining = await store.ttl("long")
    assert remaining is not None and 20 < remaining <= 30


async def test_ttl_is_none_for_absent_and_persistent_keys(store: Store) -> None:
    assert await store.ttl("absent") is None
    await store.set("forever", b"v")
    assert await store.ttl("forever") is None


async def test_set_without_ttl_makes_a_key_persistent_again(store: Store) -> None:
    await store.set("k", b"v", ttl=30)
    await store.set("k", b"w")
    assert await store.ttl("k") is None


async def test_keys_lists_live_keys_with_the_prefix_sorted(store: Store) -> None:
    for key in ("presence:b", "presence:a", "other:x", "presenceless"):
        await store.set(key, b"1")
    await store.set("presence:gone", b"1", ttl=0.05)
    await store.map_set("presence:map", "f", b"1")  # maps are not keys
    await store.queue_push("presence:queue", "m", 1)
    await wait_until(lambda: _is_gone(store, "presence:gone"), what="expiry")
    assert await store.keys("presence:") == ["presence:a", "presence:b"]
    assert await store.keys("nothing:") == []
    assert await store.keys("") == ["other:x", "presence:a", "presence:b", "presenceless"]


async def test_keys_prefix_is_literal_not_a_pattern(store: Store) -> None:
    for key in ("a*b", "axb", "q?1", "qx1", "[x]", "x", "back\\slash", "backslash"):
        await store.set(key, b"1")
    assert await store.keys("a*") == ["a*b"]
    assert await store.keys("q?") == ["q?1"]
    assert await store.keys("[x") == ["[x]"]
    assert await store.keys("back\\") == ["back\\slash"]


async def test_names_of_different_kinds_do_not_collide(store: Store) -> None:
    await store.set("same", b"key")
    await store.map_set("same", "f", b"map")
    await store.queue_push("same", "m", 1)
    await store.log_append("same", b"log")
    assert await store.get("same") == b"key"
    assert await store.map_all("same") == {"f": b"map"}
    assert await store.queue_items("same") == [("m", 1.0)]
    assert [e.data for e in await store.log_read("same")] == [b"log"]


async def test_unicode_names_round_trip(store: Store) -> None:
    await store.set("诊室:1", b"v")
    await store.map_set("学校", "教室", b"v")
    await store.queue_push("候诊", "村卫生室", 1)
    assert await store.keys("诊室") == ["诊室:1"]
    assert await store.map_all("学校") == {"教室": b"v"}
    assert await store.queue_items("候诊") == [("村卫生室", 1.0)]


# --- claim / release ------------------------------------------------------------------


async def test_exactly_one_of_50_concurrent_claimers_wins(
    store: Store, store_handles: StoreHandleFactory
) -> None:
    peers = await handles(store_handles)
    results = await asyncio.gather(
        *(peers[i % len(peers)].claim("item", f"owner-{i}", ttl=30) for i in range(CONCURRENT))
    )
    winners = [i for i, won in enumerate(results) if won]
    assert len(winners) == 1
    assert await store.get("item") == f"owner-{winners[0]}".encode()


async def test_release_by_another_owner_fails_and_keeps_the_claim(store: Store) -> None:
    assert await store.claim("item", "alice") is True
    assert await store.claim("item", "bob") is False
    assert await store.release("item", "bob") is False
    assert await store.get("item") == b"alice"
    assert await store.release("item", "alice") is True
    assert await store.get("item") is None
    assert await store.release("item", "alice") is False
    assert await store.claim("item", "bob") is True


async def test_claim_with_ttl_lapses_and_can_be_claimed_again(store: Store) -> None:
    assert await store.claim("item", "alice", ttl=0.3) is True
    remaining = await store.ttl("item")
    assert remaining is None or remaining <= 0.3
    await wait_until(lambda: store.claim("item", "bob"), what="claim after lapse")
    assert await store.get("item") == b"bob"
    assert await store.release("item", "alice") is False


# --- compare and set ------------------------------------------------------------------


async def test_compare_and_set_swaps_only_from_the_expected_value(store: Store) -> None:
    assert await store.compare_and_set("k", b"x", b"v1") is False
    assert await store.get("k") is None
    assert await store.compare_and_set("k", None, b"v1") is True
    assert await store.compare_and_set("k", None, b"v2") is False
    assert await store.compare_and_set("k", b"wrong", b"v2") is False
    assert await store.compare_and_set("k", b"v1", b"v2") is True
    assert await store.get("k") == b"v2"


async def test_compare_and_set_to_none_deletes(store: Store) -> None:
    await store.set("k", b"v")
    assert await store.compare_and_set("k", b"v", None) is True
    assert await store.get("k") is None
    assert await store.compare_and_set("k", None, None) is True  # absent stays absent


async def test_compare_and_set_with_ttl_expires(store: Store) -> None:
    await store.set("k", b"v")
    assert await store.compare_and_set("k", b"v", b"w", ttl=0.3) is True
    remaining = await store.ttl("k")
    assert remaining is None or remaining <= 0.3
    await wait_until(lambda: _is_gone(store, "k"), what="expiry after compare_and_set")


async def test_compare_and_set_distinguishes_empty_from_absent(store: Store) -> None:
    assert await store.compare_and_set("k", b"", b"v") is False
    await store.set("k", b"")
    assert await store.compare_and_set("k", None, b"v") is False
    assert await store.compare_and_set("k", b"", b"v") is True


async def test_exactly_one_of_50_concurrent_swappers_wins(
    store: Store, store_handles: StoreHandleFactory
) -> None:
    await store.set("state", b"waiting")
    peers = await handles(store_handles)
    results = await asyncio.gather(
        *(
            peers[i % len(peers)].compare_and_set("state", b"waiting", f"by-{i}".encode())
            for i in range(CONCURRENT)
        )
    )
    winners = [i for i, won in enumerate(results) if won]
    assert len(winners) == 1
    assert await store.get("state") == f"by-{winners[0]}".encode()


# --- counters ------------------------------------------------------------------------


async def test_incr_counts_from_zero_by_amount(store: Store) -> None:
    assert await store.incr("n") == 1
    assert await store.incr("n", 5) == 6
    assert await store.incr("n", -10) == -4
    assert await store.get("n") == b"-4"


async def test_incr_keeps_the_ttl(store: Store) -> None:
    await store.set("n", b"1", ttl=30)
    assert await store.incr("n") == 2
    remaining = await store.ttl("n")
    assert remaining is not None and remaining > 20


async def test_100_concurrent_increments_count_100(
    store: Store, store_handles: StoreHandleFactory
) -> None:
    peers = await handles(store_handles)
    results = await asyncio.gather(*(peers[i % len(peers)].incr("n") for i in range(100)))
    assert sorted(results) == list(range(1, 101))
    assert await store.get("n") == b"100"


async def test_incr_of_a_non_integer_raises_value_error(store: Store) -> None:
    await store.set("word", b"hello")
    with pytest.raises(ValueError):
        await store.incr("word")


# --- maps ------------------------------------------------------------------------------


async def test_map_fields_set_get_delete_and_list(store: Store) -> None:
    assert await store.map_all("m") == {}
    assert await store.map_get("m", "a") is None
    await store.map_set("m", "a", b"1")
    await store.map_set("m", "b", b"2")
    await store.map_set("m", "a", b"3")
    assert await store.map_get("m", "a") == b"3"
    assert await store.map_all("m") == {"a": b"3", "b": b"2"}
    assert await store.map_delete("m", "a") is True
    assert await store.map_delete("m", "a") is False
    assert await store.map_delete("absent", "a") is False
    assert await store.map_all("m") == {"b": b"2"}
    assert await store.map_delete("m", "b") is True
    assert await store.map_all("m") == {}


# --- priority queues -------------------------------------------------------------------


async def test_queue_orders_by_score_then_member(store: Store) -> None:
    for member, score in [("d", 3), ("z", 1), ("a", 2), ("m", 1), ("b", 1), ("neg", -1.5)]:
        await store.queue_push("q", member, score)
    expected = [("neg", -1.5), ("b", 1.0), ("m", 1.0), ("z", 1.0), ("a", 2.0), ("d", 3.0)]
    assert await store.queue_items("q") == expected
    assert await store.queue_items("q", limit=2) == expected[:2]
    assert await store.queue_items("q", limit=0) == []
    assert await store.queue_items("q", limit=100) == expected
    assert [await store.queue_rank("q", m) for m, _ in expected] == list(range(6))
    assert await store.queue_rank("q", "absent") is None
    assert await store.queue_len("q") == 6
    assert await store.queue_len("absent") == 0
    assert await store.queue_items("absent") == []


async def test_queue_push_of_a_present_member_moves_it(store: Store) -> None:
    await store.queue_push("q", "a", 1)
    await store.queue_push("q", "b", 2)
    await store.queue_push("q", "a", 3)
    assert await store.queue_items("q") == [("b", 2.0), ("a", 3.0)]
    assert await store.queue_len("q") == 2


async def test_queue_scores_keep_their_precision(store: Store) -> None:
    score = 1_732_000_000.123456
    await store.queue_push("q", "a", score)
    assert await store.queue_items("q") == [("a", score)]


async def test_queue_refuses_a_nan_score(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.queue_push("q", "a", math.nan)
    assert await store.queue_len("q") == 0


async def test_queue_remove_reports_presence_and_one_of_concurrent_removers_wins(
    store: Store, store_handles: StoreHandleFactory
) -> None:
    await store.queue_push("q", "a", 1)
    await store.queue_push("q", "b", 2)
    peers = await handles(store_handles)
    results = await asyncio.gather(*(p.queue_remove("q", "a") for p in peers * 4))
    assert results.count(True) == 1
    assert await store.queue_remove("q", "a") is False
    assert await store.queue_items("q") == [("b", 2.0)]


async def test_pop_first_returns_lowest_then_none(store: Store) -> None:
    assert await store.queue_pop_first("q") is None
    await store.queue_push("q", "late", 2)
    await store.queue_push("q", "early", 1)
    assert await store.queue_pop_first("q") == ("early", 1.0)
    assert await store.queue_pop_first("q") == ("late", 2.0)
    assert await store.queue_pop_first("q") is None


async def test_50_concurrent_poppers_get_each_of_10_members_exactly_once(
    store: Store, store_handles: StoreHandleFactory
) -> None:
    members = [f"ticket-{i}" for i in range(10)]
    for i, member in enumerate(members):
        await store.queue_push("q", member, i % 3)
    peers = await handles(store_handles)
    results = await asyncio.gather(
        *(peers[i % len(peers)].queue_pop_first("q") for i in range(CONCURRENT))
    )
    popped = [r[0] for r in results if r is not None]
    assert sorted(popped) == sorted(members)
    assert results.count(None) == CONCURRENT - len(members)
    assert await store.queue_len("q") == 0


# --- publish / subscribe ---------------------------------------------------------------


async def _events(sub: Subscription, count: int, within: float = 5.0) -> list[Event]:
    events = []
    for _ in range(count):
        event = await sub.get(timeout=within)
        assert event is not None, f"got {len(events)} of {count} events"
        events.append(event)
    return events


async def test_publish_reaches_every_subscriber_in_order(store: Store) -> None:
    async with store.subscribe("room:1") as first, store.subscribe("room:1", "room:2") as second:
        for i in range(3):
            await store.publish("room:1", f"e{i}".encode())
        await store.publish("room:2", b"other")
        await store.publish("room:3", b"nobody")
        expected = [Event("room:1", f"e{i}".encode()) for i in range(3)]
        assert await _events(first, 3) == expected
        assert await _events(second, 4) == [*expected, Event("room:2", b"other")]
        assert await first.get(timeout=0.2) is None
        assert await second.get(timeout=0.2) is None


async def test_subscription_iterates_events(store: Store) -> None:
    async with store.subscribe("c") as sub:
        for i in range(3):
            await store.publish("c", bytes([i]))
        received = []
        async with asyncio.timeout(5):
            async for event in sub:
                received.append(event.data)
                if len(received) == 3:
                    break
        assert received == [b"\x00", b"\x01", b"\x02"]


async def test_nothing_is_delivered_after_the_subscription_exits(store: Store) -> None:
    async with store.subscribe("c") as sub:
        await store.publish("c", b"before")
        assert await _events(sub, 1) == [Event("c", b"before")]
    await store.publish("c", b"after")
    assert await sub.get(timeout=0.3) is None


async def test_subscribing_to_no_channel_receives_nothing(store: Store) -> None:
    async with store.subscribe() as sub:
        await store.publish("c", b"x")
        assert await sub.get(timeout=0.1) is None


async def test_slow_subscriber_loses_the_oldest_events_beyond_the_buffer(store: Store) -> None:
    assert redis_subscription.SUBSCRIPTION_BUFFER == BUFFER
    extra = 76
    async with store.subscribe("c") as sub:
        assert isinstance(sub, MemorySubscription | RedisSubscription)
        for i in range(BUFFER + extra):
            await store.publish("c", str(i).encode())
        await wait_until(lambda: sub.dropped >= extra, within=10, what="buffer overflow")
        received = []
        while (event := await sub.get(timeout=0.5)) is not None:
            received.append(int(event.data))
        assert sub.dropped == extra
        assert received == list(range(extra, BUFFER + extra))


# --- append-only log -------------------------------------------------------------------


async def test_log_returns_entries_in_append_order_with_increasing_ids(store: Store) -> None:
    ids = [await store.log_append("audit", f"e{i}".encode()) for i in range(20)]
    entries = await store.log_read("audit")
    assert [e.id for e in entries] == ids
    assert [e.data for e in entries] == [f"e{i}".encode() for i in range(20)]
    keys = [log_id_key(i) for i in ids]
    assert all(a < b for a, b in itertools.pairwise(keys))
    assert await store.log_len("audit") == 20


async def test_log_read_after_is_exclusive_and_limit_bounds(store: Store) -> None:
    ids = [await store.log_append("audit", bytes([i])) for i in range(5)]
    assert [e.id for e in await store.log_read("audit", after=ids[1])] == ids[2:]
    assert [e.id for e in await store.log_read("audit", after=ids[1], limit=2)] == ids[2:4]
    assert [e.id for e in await store.log_read("audit", limit=3)] == ids[:3]
    assert await store.log_read("audit", after=ids[-1]) == []
    assert await store.log_read("audit", limit=0) == []
    assert [e.id for e in await store.log_read("audit", after="0-0")] == ids


async def test_log_max_len_keeps_only_the_newest(store: Store) -> None:
    ids = [await store.log_append("audit", bytes([i]), max_len=3) for i in range(10)]
    assert await store.log_len("audit") == 3
    assert [e.id for e in await store.log_read("audit")] == ids[-3:]
    assert [e.data for e in await store.log_read("audit")] == [bytes([7]), bytes([8]), bytes([9])]


async def test_log_refuses_a_negative_max_len(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.log_append("audit", b"x", max_len=-1)


async def test_unknown_log_is_empty(store: Store) -> None:
    assert await store.log_read("nothing") == []
    assert await store.log_len("nothing") == 0


async def test_malformed_log_id_raises_value_error(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.log_read("audit", after="not-an-id")


# --- Redis only: namespaces and failure behaviour ------------------------------------------


@pytest.mark.redis
async def test_redis_prefixes_isolate_stores_sharing_a_server(redis_url: str) -> None:
    one = RedisStore(redis_url, prefix=unique_prefix())
    two = RedisStore(redis_url, prefix=unique_prefix())
    try:
        await one.set("k", b"one")
        await one.queue_push("q", "m", 1)
        assert await two.get("k") is None
        assert await two.keys("") == []
        assert await two.queue_len("q") == 0
        async with two.subscribe("c") as sub:
            await one.publish("c", b"x")
            assert await sub.get(timeout=0.3) is None
    finally:
        await one.close()
        await two.close()


@pytest.mark.redis
async def test_redis_connect_to_nothing_raises_store_unavailable_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await RedisStore.connect(f"redis://127.0.0.1:{free_port()}/0")
    assert time.monotonic() - started < 5


async def _raises_unavailable_within(seconds: float, awaitable: Awaitable[object]) -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await awaitable
    assert time.monotonic() - started < seconds


@pytest.mark.redis
async def test_redis_outage_fails_fast_and_recovers_without_recreating_the_store() -> None:
    require_redis_server()
    with RedisServerProcess(fsync_always=True) as server:
        store = RedisStore(server.url, prefix=unique_prefix())
        try:
            await store.set("acked", b"kept")
            await store.queue_push("q", "ticket", 1)
            ids = [await store.log_append("audit", b"kept")]
            async with store.subscribe("c") as sub:
                await asyncio.to_thread(server.stop)

                await _raises_unavailable_within(5, store.ping())
                await _raises_unavailable_within(5, store.get("acked"))
                await _raises_unavailable_within(5, store.claim("x", "me"))
                await _raises_unavailable_within(5, store.incr("n"))
                await _raises_unavailable_within(5, store.queue_pop_first("q"))
                await _raises_unavailable_within(5, store.log_append("audit", b"lost"))
                await _raises_unavailable_within(5, store.publish("c", b"lost"))
                await _raises_unavailable_within(5, store.keys(""))
                # the open subscription ends rather than waiting forever for events
                await _raises_unavailable_within(5, sub.get(timeout=30))
                await _raises_unavailable_within(5, _enter(store.subscribe("c")))

                await asyncio.to_thread(server.start)
                await wait_until(lambda: _answers(store), within=5, what="ping after restart")

            assert await store.get("acked") == b"kept"
            # the restart emptied Redis's script cache; the Lua-backed operations reload it
            assert await store.release("acked", "nobody") is False
            assert await store.compare_and_set("acked", b"kept", b"swapped") is True
            assert await store.queue_items("q") == [("ticket", 1.0)]
            assert [e.id for e in await store.log_read("audit")] == ids
            async with store.subscribe("c") as sub:
                await store.publish("c", b"back")
                assert await sub.get(timeout=5) == Event("c", b"back")
        finally:
            await store.close()


@pytest.mark.redis
async def test_redis_store_close_wakes_a_waiting_subscriber(redis_url: str) -> None:
    store = RedisStore(redis_url, prefix=unique_prefix())
    async with store.subscribe("c") as sub:
        waiter = asyncio.create_task(sub.get())
        await asyncio.sleep(0.05)
        await store.close()
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(waiter, 5)


async def _enter(subscription: Subscription) -> None:
    async with subscription:
        pass


async def _answers(store: Store) -> bool:
    try:
        await store.ping()
    except StoreUnavailable:
        return False
    return True


@pytest.mark.redis
async def test_redis_hung_server_times_operations_out_instead_of_hanging() -> None:
    require_redis_server()
    with RedisServerProcess() as server:
        store = RedisStore(server.url, prefix=unique_prefix(), op_timeout=1.0)
        try:
            await store.set("k", b"v")
            server.pause()
            try:
                await _raises_unavailable_within(5, store.ping())
                await _raises_unavailable_within(5, store.get("k"))
                await _raises_unavailable_within(5, store.claim("x", "me"))
            finally:
                server.resume()
            await wait_until(lambda: _answers(store), within=5, what="ping after resume")
            assert await store.get("k") == b"v"
        finally:
            await store.close()


# --- Redis helpers (pure) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "millis"),
    [(0.3, 300), (30, 30_000), (0.0004, 1), (0, 1), (-5, 1), (1.2345, 1234)],
)
def test_ttl_millis_rounds_to_at_least_one_millisecond(seconds: float, millis: int) -> None:
    assert redis_store.ttl_millis(seconds) == millis


@pytest.mark.parametrize(
    ("text", "escaped"),
    [("presence:", "presence:"), ("a*", "a\\*"), ("q?[x]", "q\\?\\[x\\]"), ("b\\", "b\\\\")],
)
def test_glob_escape_makes_scan_patterns_literal(text: str, escaped: str) -> None:
    assert redis_store.glob_escape(text) == escaped
