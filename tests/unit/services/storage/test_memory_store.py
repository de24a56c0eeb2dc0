"""The in-memory event store: the shared contract, plus what only the fake promises (its clock)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from keyledger.domain.errors import ConcurrencyError
from keyledger.services.storage.event_store import EventStore
from keyledger.services.storage.memory import InMemoryEventStore
from tests.contracts.event_store import EventStoreContract
from tests.support.factories import changes, created

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


class TestInMemoryEventStore(EventStoreContract):
    """The fake keeps every promise of the contract."""

    @pytest.fixture
    def store(self) -> EventStore:
        """A new, empty in-memory store on the real clock."""
        return InMemoryEventStore()


async def test_recorded_at_comes_from_the_injected_clock() -> None:
    now = [NOW]
    store = InMemoryEventStore(clock=lambda: now[0])
    await store.append("s-a", 0, [created("s-a")])
    now[0] += timedelta(minutes=5)
    await store.append("s-a", 1, changes("s-a", 2))
    later = NOW + timedelta(minutes=5)
    assert [e.recorded_at for e in await store.read_stream("s-a")] == [NOW, later, later]


async def test_a_negative_page_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        await InMemoryEventStore().read_page(0, -1)


async def test_read_then_append_races_conflict_as_with_real_io() -> None:
    """Every call yields to the event loop once, so two read-decide-append writers interleave."""
    store = InMemoryEventStore()
    await store.append("s-a", 0, [created("s-a")])

    async def writer() -> None:
        await store.append("s-a", await store.stream_version("s-a"), changes("s-a", 1))

    results = await asyncio.gather(writer(), writer(), return_exceptions=True)
    assert sum(isinstance(r, ConcurrencyError) for r in results) == 1
    assert await store.stream_version("s-a") == 2
