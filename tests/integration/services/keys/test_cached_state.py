"""Commands that decide on the live cache's state (an API process) over the real event store: no stream read
per command, and a cache behind the store is caught by the append's version check (a conflict, never an
overwrite of the change the cache had not seen yet)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from keyledger.domain.access import AccessEntry
from keyledger.domain.commands import RevokeKey
from keyledger.domain.errors import ConcurrencyError
from keyledger.domain.key import KeyState
from keyledger.domain.recorded import RecordedEvent
from keyledger.projections.key_cache import apply_at
from keyledger.services.keys.service import KeyService
from keyledger.services.storage.event_store import PostgresEventStore
from tests.support.hashing import CountingHasher

NOW = datetime(2026, 3, 1, tzinfo=UTC)
READ = (AccessEntry(resource="global", scopes=("read:data",)),)
WRITE = (AccessEntry(resource="global", scopes=("read:data", "write:data")),)


class ReadCounting(PostgresEventStore):
    """The real store, counting the stream reads commands make."""

    stream_reads = 0

    async def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        self.stream_reads += 1
        return await super().read_stream(stream_id, after_version)


class Cache:
    """What the API's live cache does for its own commands: applies the events they append at once (an event
    that does not follow what it holds is a gap, left for the store follower)."""

    def __init__(self) -> None:
        self.states: dict[str, KeyState] = {}

    def apply(self, recorded: Sequence[RecordedEvent]) -> None:
        for event in recorded:
            apply_at(self.states, event.event, event.version)


@pytest.fixture
def counting(store: PostgresEventStore) -> ReadCounting:
    return ReadCounting(store._db)


def service(store: PostgresEventStore, cache: Cache | None = None, seed: int = 7) -> KeyService:
    return KeyService(store, CountingHasher(), prefix="kl", random_bytes=random.Random(seed).randbytes,
                      clock=lambda: NOW, on_events=cache.apply if cache else None,
                      current=cache.states.get if cache else None)


async def test_a_command_decides_on_the_cached_state_without_reading_the_stream(counting: ReadCounting) -> None:
    cache = Cache()
    keys = service(counting, cache)
    key_id = (await keys.create("svc", access=READ)).state.key_id
    changed = await keys.change_access(key_id, access=WRITE)
    revoked = await keys.revoke(key_id, reason="done")
    assert counting.stream_reads == 0
    state, events = await keys.history(key_id)
    assert state == revoked == cache.states[key_id] and changed.version == 2 and len(events) == 3


async def test_a_cache_behind_the_store_gets_a_conflict_and_the_other_change_stands(
        counting: ReadCounting) -> None:
    cache = Cache()
    cached = service(counting, cache)
    key_id = (await cached.create("svc", access=READ)).state.key_id
    other = service(counting, seed=8)  # another replica, whose change this cache has not read yet
    await other.change_access(key_id, name="renamed elsewhere")
    with pytest.raises(ConcurrencyError, match="expected 1"):
        await cached.change_access(key_id, access=WRITE)
    with pytest.raises(ConcurrencyError):
        await cached.revoke(key_id)
    state, events = await other.history(key_id)
    assert [e.type for e in events] == ["key.created", "key.access_changed"]
    assert state.name == "renamed elsewhere" and state.access == READ and state.revoked_at is None


async def test_an_unknown_key_in_the_cache_is_read_from_the_store(counting: ReadCounting) -> None:
    key_id = (await service(counting, seed=9).create("made elsewhere", access=READ)).state.key_id
    cache = Cache()
    state = await service(counting, cache).change_access(key_id, name="found")
    assert counting.stream_reads == 1 and state.name == "found" and state.version == 2


async def test_concurrent_commands_on_the_cached_state_one_wins_the_rest_conflict(counting: ReadCounting) -> None:
    cache = Cache()
    keys = service(counting, cache)
    key_id = (await keys.create("svc", access=READ)).state.key_id
    results = await asyncio.gather(*(keys.change_access(key_id, name=f"writer {i}") for i in range(6)),
                                   return_exceptions=True)
    winners = [r for r in results if isinstance(r, KeyState)]
    assert len(winners) == 1  # all six decided on version 1: one append wins, the others find the stream moved
    assert all(isinstance(r, ConcurrencyError) for r in results if not isinstance(r, KeyState))
    state, events = await keys.history(key_id)
    assert state.version == len(events) == 2 and state.name == winners[0].name == cache.states[key_id].name


async def test_bulk_reads_a_key_the_cache_had_wrong_again_from_the_store(counting: ReadCounting) -> None:
    cache = Cache()
    keys = service(counting, cache)
    key_id = (await keys.create("svc", access=READ)).state.key_id
    await service(counting, seed=8).change_access(key_id, name="renamed elsewhere")
    (outcome,) = await keys.each([cache.states[key_id]], lambda s: RevokeKey(key_id=s.key_id, reason="bulk"))
    assert isinstance(outcome, KeyState) and outcome.revoked_at is not None and outcome.name == "renamed elsewhere"
    assert outcome.version == 3
