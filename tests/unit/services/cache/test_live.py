"""The live cache follows the store itself, so it knows when it is current and sees revokes without NATS."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import msgspec

from keyledger.domain.events import KeyAccessChanged, KeyRevoked
from keyledger.services.cache.live import LiveKeyCache
from keyledger.services.storage.database import StorageError
from keyledger.services.storage.memory import InMemoryEventStore
from tests.support.clock import SettableClock
from tests.support.factories import T0, changes, created
from tests.support.wait import until


class Monotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def live(store: InMemoryEventStore, monotonic: Monotonic) -> LiveKeyCache:
    return LiveKeyCache(store, table=None, feed=None, monotonic=monotonic)  # type: ignore[arg-type]


async def test_the_store_is_followed_and_confirms_the_cache_is_current() -> None:
    store, monotonic = InMemoryEventStore(SettableClock(T0)), Monotonic()
    cache = live(store, monotonic)
    assert not cache.is_current(5) and cache.is_current(0)  # never confirmed yet; 0: the operator chose availability
    await store.append("k1", 0, [created("k1")])
    stop = asyncio.Event()
    following = asyncio.create_task(cache.follow_store(stop, interval=0.01))
    try:
        await until(lambda: cache.get("k1") is not None and cache.confirmed_at is not None, what="the key")
        assert cache.is_current(5)
        await store.append("k1", 1, [KeyRevoked(key_id="k1", at=T0)])  # no NATS involved
        await until(lambda: (state := cache.get("k1")) is not None and state.revoked_at is not None,
                    what="the revoke, read from the store")
    finally:
        stop.set()
        await following


async def test_a_cache_the_store_cannot_confirm_goes_stale() -> None:
    store, monotonic = InMemoryEventStore(SettableClock(T0)), Monotonic()
    cache = live(store, monotonic)
    await cache.follow_store(_one_round(), interval=0)
    assert cache.is_current(5)

    async def down(*_: Any, **__: Any) -> Any:
        raise StorageError("OperationalError 08006: the database is gone")

    store.read_page = down  # type: ignore[method-assign]
    await cache.follow_store(_one_round(), interval=0)
    monotonic.now += 5
    assert cache.is_current(5)
    monotonic.now += 0.5
    assert not cache.is_current(5) and cache.is_current(0)


def _one_round() -> asyncio.Event:
    """A stop event that is set after the first check (so follow_store runs exactly one round)."""

    class Once(asyncio.Event):
        calls = 0

        def is_set(self) -> bool:
            self.calls += 1
            return self.calls > 1

    return Once()


async def test_with_the_store_unreachable_only_a_revoke_is_applied_unconfirmed() -> None:
    """A notification cannot be checked against a store that is down: a revoke can only take access
    away, so it applies; anything else waits for the store."""
    store, monotonic = InMemoryEventStore(SettableClock(T0)), Monotonic()
    cache = live(store, monotonic)
    (first,) = await store.append("k1", 0, [created("k1")])
    cache.apply_local([first])

    async def down(*_: Any, **__: Any) -> Any:
        raise StorageError("OperationalError 08006: the database is gone")

    store.read_page = down  # type: ignore[method-assign]
    renamed = msgspec.structs.replace(first, version=2, event=KeyAccessChanged(key_id="k1", at=T0, name="x"))
    await cache._on_event(renamed, 2)
    assert (state := cache.get("k1")) is not None and (state.version, state.name) == (1, "test key")
    revoked = msgspec.structs.replace(first, version=2, event=KeyRevoked(key_id="k1", at=T0, reason="leak"))
    await cache._on_event(revoked, 3)
    assert (state := cache.get("k1")) is not None and state.revoked_at == T0


async def test_events_the_loaded_states_already_hold_still_count_as_read() -> None:
    """The key table may hold states newer than its checkpoint (a projector batch landed between the two);
    reading those events from the store again applies nothing, yet the cache has them: its position must
    reach the store's head, or the replica never becomes ready."""
    store, monotonic = InMemoryEventStore(SettableClock(T0)), Monotonic()
    cache = live(store, monotonic)
    recorded = await store.append("k1", 0, [created("k1"), *changes("k1", 2)])
    for event in recorded:  # what the table held: every state, at a checkpoint before the last two events
        cache.apply_local([event])
    cache.position = cache.tailed = recorded[0].global_position
    await cache.catch_up_with_store()
    assert cache.position == cache.tailed == recorded[-1].global_position == await store.head_position()


async def test_a_nudge_reads_the_store_at_once() -> None:
    """Another replica committed and waits for this one: no waiting for the relay's message or the poll."""
    store, monotonic = InMemoryEventStore(SettableClock(T0)), Monotonic()
    cache = live(store, monotonic)
    recorded = await store.append("k1", 0, [created("k1"), *changes("k1", 2)])
    cache.nudge(recorded[-1].global_position)
    await until(lambda: cache.tailed == recorded[-1].global_position, what="the nudged read")
    assert (state := cache.get("k1")) is not None and state.version == 3
    cache.nudge(recorded[-1].global_position + 100)  # beyond the store's head (forged, or not yet visible)
    await until(lambda: cache._nudge is not None and cache._nudge.done(), what="the nudged read to give up")


async def test_catching_up_reads_the_store_once_when_a_page_holds_the_rest() -> None:
    """A page shorter than a full one was everything the store held: confirming the cache costs one read,
    not a second one that comes back empty (each read is a Postgres round trip a waiting command pays)."""

    class Counting(InMemoryEventStore):
        reads = 0

        async def read_page(self, after_position: int, limit: int = 1000) -> Any:
            self.reads += 1
            return await super().read_page(after_position, limit)

    store, monotonic = Counting(SettableClock(T0)), Monotonic()
    cache = live(store, monotonic)
    await store.append("k1", 0, [created("k1"), *changes("k1", 2)])
    await cache.catch_up_with_store()
    assert store.reads == 1 and cache.confirmed_at is not None
    assert (state := cache.get("k1")) is not None and state.version == 3


async def test_a_reader_that_waited_for_a_read_covering_it_asks_the_store_nothing() -> None:
    """Another replica's nudge and the relay's message for the same commit arrive together: the message waits
    for the nudged read, which gets its event too, so it asks the store nothing more; a message for an event
    beyond what was read still reads."""
    store, monotonic = InMemoryEventStore(SettableClock(T0)), Monotonic()
    cache = live(store, monotonic)
    recorded = await store.append("k1", 0, [created("k1"), *changes("k1", 1)])
    gate, reads, read_page = asyncio.Event(), [], store.read_page

    async def gated(after_position: int, limit: int = 1000) -> Any:
        reads.append(after_position)
        await gate.wait()
        return await read_page(after_position, limit)

    store.read_page = gated  # type: ignore[method-assign]
    cache.nudge(recorded[-1].global_position)
    await until(lambda: len(reads) == 1, what="the nudged read to begin")
    message = asyncio.create_task(cache._on_event(recorded[-1], 2))  # the relay's message for the same commit
    await until(lambda: len(cache._reading._waiters or ()) == 1, what="the message to wait for the read")
    gate.set()
    await message
    assert reads == [0] and cache.tailed == recorded[-1].global_position
    assert (state := cache.get("k1")) is not None and state.version == 2
    (later,) = await store.append("k1", 2, changes("k1", 1, start=T0 + timedelta(minutes=1)))
    await cache._on_event(later, 3)
    assert reads == [0, recorded[-1].global_position] and cache.tailed == later.global_position
