"""What every EventStore promises, written once; each implementation's test class subclasses it.

A subclass only says how to build a store, by overriding the ``store`` fixture::

    class TestInMemoryEventStore(EventStoreContract):
        @pytest.fixture
        def store(self) -> EventStore:
            return InMemoryEventStore()
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from keyledger.domain.access import AccessEntry
from keyledger.domain.errors import ConcurrencyError
from keyledger.domain.events import Event, KeyAccessChanged, KeyCreated, KeyRevoked, KeyRotated
from keyledger.domain.recorded import Metadata, RecordedEvent
from keyledger.services.storage.event_store import EventStore
from tests.support.factories import T0, changes, created

META = Metadata(actor="key:admin0000001", ip="203.0.113.9", user_agent="curl/8", request_id="req-1")


def positions(events: list[RecordedEvent]) -> list[int]:
    """The global positions of ``events``."""
    return [e.global_position for e in events]


def envelopes(events: list[RecordedEvent]) -> list[tuple[int, str, int, str]]:
    """(global position, stream, version, type) of each event."""
    return [(e.global_position, e.stream_id, e.version, e.type) for e in events]


def every_event_type(key_id: str) -> list[Event]:
    """One event of each type, every optional field set (a round-trip sample)."""
    access = (AccessEntry(resource="website", id="site-ä", scopes=("read:data", "write:data")),
              AccessEntry(resource="global", scopes=("read:analytics",)),
              AccessEntry(resource="error_data", scopes=("read:data",)))
    return [
        KeyCreated(key_id=key_id, at=T0, name="Schlüssel ✓", organization_id="org-1", access=access,
                   expires_at=T0 + timedelta(days=30), secret_hash="$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA",
                   prefix="kl", start="kl_AAAAAAAAAAAAabcd", rate_limit=250),
        KeyAccessChanged(key_id=key_id, at=T0 + timedelta(seconds=1), access=access[1:], name="renamed",
                         rate_limit=0),
        KeyRotated(key_id=key_id, at=T0 + timedelta(seconds=2), secret_hash="$argon2id$new", start="kl_new",
                   previous_valid_until=T0 + timedelta(minutes=10)),
        KeyRevoked(key_id=key_id, at=T0 + timedelta(seconds=3), reason="leaked \"in\" a log"),
    ]


class EventStoreContract:
    """Every behaviour of an EventStore. Subclasses override the ``store`` fixture, nothing else."""

    @pytest.fixture
    def store(self) -> EventStore:
        """A new, empty store (each subclass says how to build one)."""
        raise NotImplementedError("subclasses of EventStoreContract override the store fixture")

    # Appending and reading back

    async def test_append_returns_the_events_as_recorded(self, store: EventStore) -> None:
        events = [created("s-a"), *changes("s-a", 2)]
        written = await store.append("s-a", 0, events)
        assert envelopes(written) == [(1, "s-a", 1, "key.created"), (2, "s-a", 2, "key.access_changed"),
                                      (3, "s-a", 3, "key.access_changed")]
        assert [e.event for e in written] == events

    async def test_read_stream_returns_what_append_returned(self, store: EventStore) -> None:
        written = await store.append("s-a", 0, [created("s-a"), *changes("s-a", 2)], META)
        assert await store.read_stream("s-a") == written
        assert await store.read_page(0, 10) == written

    async def test_every_event_type_round_trips_with_all_its_fields(self, store: EventStore) -> None:
        events = every_event_type("s-a")
        await store.append("s-a", 0, events)
        assert [e.event for e in await store.read_stream("s-a")] == events
        assert [e.type for e in await store.read_stream("s-a")] == [
            "key.created", "key.access_changed", "key.rotated", "key.revoked"]

    async def test_lists_handed_out_are_the_callers_own(self, store: EventStore) -> None:
        (await store.append("s-a", 0, [created("s-a")])).clear()
        (await store.read_stream("s-a")).clear()
        (await store.read_page(0)).clear()
        assert len(await store.read_stream("s-a")) == 1 and len(await store.read_page(0)) == 1

    async def test_stored_events_do_not_share_state_with_the_caller(self, store: EventStore) -> None:
        scopes = ["read:data"]
        entry = AccessEntry(resource="global", scopes=scopes)  # type: ignore[arg-type]  # a list, on purpose
        event = KeyAccessChanged(key_id="s-a", at=T0, access=(entry,))
        await store.append("s-a", 0, [created("s-a"), event])
        scopes.append("admin:apikeys")
        (_, stored) = await store.read_stream("s-a")
        assert isinstance(stored.event, KeyAccessChanged) and stored.event.access is not None
        assert stored.event.access[0].scopes == ("read:data",)

    # Versions and streams

    async def test_versions_continue_across_appends(self, store: EventStore) -> None:
        await store.append("s-a", 0, [created("s-a")])
        second = await store.append("s-a", 1, changes("s-a", 2))
        assert [e.version for e in second] == [2, 3]
        assert [e.version for e in await store.read_stream("s-a")] == [1, 2, 3]
        assert await store.stream_version("s-a") == 3

    async def test_streams_are_independent(self, store: EventStore) -> None:
        await store.append("s-a", 0, [created("s-a"), *changes("s-a", 1)])
        await store.append("s-b", 0, [created("s-b")])
        assert [e.stream_id for e in await store.read_stream("s-a")] == ["s-a", "s-a"]
        assert await store.stream_version("s-a") == 2 and await store.stream_version("s-b") == 1

    async def test_unknown_stream_is_empty_at_version_zero(self, store: EventStore) -> None:
        await store.append("s-a", 0, [created("s-a")])
        assert await store.stream_version("nope") == 0
        assert await store.read_stream("nope") == []

    async def test_read_stream_after_version(self, store: EventStore) -> None:
        written = await store.append("s-a", 0, [created("s-a"), *changes("s-a", 2)])
        assert await store.read_stream("s-a", after_version=0) == written
        assert await store.read_stream("s-a", after_version=2) == written[2:]
        assert await store.read_stream("s-a", after_version=3) == []
        assert await store.read_stream("s-a", after_version=10) == []

    # Global positions

    async def test_global_positions_are_gapless_in_append_order_across_streams(self, store: EventStore) -> None:
        await store.append("s-a", 0, [created("s-a")])
        await store.append("s-b", 0, [created("s-b"), *changes("s-b", 1)])
        await store.append("s-a", 1, changes("s-a", 1))
        await store.append("s-c", 0, [created("s-c")])
        assert [(p, s, v) for p, s, v, _ in envelopes(await store.read_page(0, 100))] == [
            (1, "s-a", 1), (2, "s-b", 1), (3, "s-b", 2), (4, "s-a", 2), (5, "s-c", 1)]

    async def test_head_position_is_the_last_position(self, store: EventStore) -> None:
        assert await store.head_position() == 0
        await store.append("s-a", 0, [created("s-a"), *changes("s-a", 2)])
        assert await store.head_position() == 3
        await store.append("s-b", 0, [created("s-b")])
        assert await store.head_position() == 4

    async def test_read_page_respects_after_position_and_limit(self, store: EventStore) -> None:
        await store.append("s-a", 0, [created("s-a"), *changes("s-a", 4)])
        assert positions(await store.read_page(0, 2)) == [1, 2]
        assert positions(await store.read_page(2, 2)) == [3, 4]
        assert positions(await store.read_page(4, 10)) == [5]
        assert await store.read_page(5, 10) == []
        assert await store.read_page(0, 0) == []
        assert positions(await store.read_page(0)) == [1, 2, 3, 4, 5]  # default limit

    async def test_read_all_pages_through_everything_in_order(self, store: EventStore) -> None:
        await store.append("s-a", 0, [created("s-a"), *changes("s-a", 3)])
        await store.append("s-b", 0, [created("s-b"), *changes("s-b", 2)])
        assert [positions(page) async for page in store.read_all(page_size=3)] == [[1, 2, 3], [4, 5, 6], [7]]
        assert [positions(page) async for page in store.read_all(after_position=5, page_size=3)] == [[6, 7]]
        assert [positions(page) async for page in store.read_all(after_position=7)] == []
        assert [positions(page) async for page in store.read_all()] == [[1, 2, 3, 4, 5, 6, 7]]

    async def test_read_all_of_an_empty_store_yields_no_pages(self, store: EventStore) -> None:
        assert [page async for page in store.read_all()] == []

    # Optimistic concurrency

    async def test_stale_expected_version_is_a_conflict_and_writes_nothing(self, store: EventStore) -> None:
        await store.append("s-a", 0, [created("s-a")])
        with pytest.raises(ConcurrencyError, match="at version 1, expected 0"):
            await store.append("s-a", 0, [created("s-a"), *changes("s-a", 2)])
        assert [e.version for e in await store.read_stream("s-a")] == [1]
        assert await store.head_position() == 1

    async def test_skipping_expected_version_is_a_conflict(self, store: EventStore) -> None:
        await store.append("s-a", 0, [created("s-a")])
        with pytest.raises(ConcurrencyError, match="at version 1, expected 5"):
            await store.append("s-a", 5, changes("s-a", 1))
        with pytest.raises(ConcurrencyError, match="at version 0, expected 1"):
            await store.append("s-new", 1, [created("s-new")])
        assert await store.stream_version("s-a") == 1 and await store.stream_version("s-new") == 0
        assert await store.head_position() == 1

    async def test_a_failed_append_consumes_no_position(self, store: EventStore) -> None:
        await store.append("s-a", 0, [created("s-a")])
        with pytest.raises(ConcurrencyError):
            await store.append("s-a", 0, [created("s-a"), *changes("s-a", 3)])
        written = await store.append("s-b", 0, [created("s-b")])
        assert positions(written) == [2]
        assert positions(await store.read_page(0)) == [1, 2]

    async def test_empty_append_returns_nothing_and_writes_nothing(self, store: EventStore) -> None:
        assert await store.append("s-a", 0, []) == []
        assert await store.head_position() == 0 and await store.stream_version("s-a") == 0

    async def test_empty_append_checks_no_version(self, store: EventStore) -> None:
        """Nothing to write, nothing to conflict with: both stores return [] whatever the version."""
        await store.append("s-a", 0, [created("s-a")])
        assert await store.append("s-a", 7, []) == []
        assert await store.stream_version("s-a") == 1

    async def test_concurrent_appends_at_one_version_exactly_one_wins(self, store: EventStore) -> None:
        await store.append("s-a", 0, [created("s-a")])
        results = await asyncio.gather(
            *(store.append("s-a", 1, changes("s-a", 2)) for _ in range(8)), return_exceptions=True)
        winners = [r for r in results if not isinstance(r, BaseException)]
        assert len(winners) == 1 and [e.version for e in winners[0]] == [2, 3]
        assert all(isinstance(r, ConcurrencyError) for r in results if isinstance(r, BaseException))
        assert await store.read_stream("s-a", after_version=1) == winners[0]
        assert await store.head_position() == 3

    async def test_concurrent_creations_of_one_stream_exactly_one_wins(self, store: EventStore) -> None:
        results = await asyncio.gather(
            *(store.append("s-a", 0, [created("s-a", name=f"writer {i}")]) for i in range(4)),
            return_exceptions=True)
        assert sum(not isinstance(r, BaseException) for r in results) == 1
        assert all(isinstance(r, ConcurrencyError) for r in results if isinstance(r, BaseException))
        assert await store.stream_version("s-a") == 1 and await store.head_position() == 1

    async def test_concurrent_appends_to_different_streams_all_land_gaplessly(self, store: EventStore) -> None:
        streams = [f"s-{i}" for i in range(8)]
        await asyncio.gather(*(store.append(s, 0, [created(s), *changes(s, 1)]) for s in streams))
        page = await store.read_page(0, 100)
        assert positions(page) == list(range(1, 17))
        for stream in streams:  # each append's events are adjacent and in version order
            mine = [e for e in page if e.stream_id == stream]
            assert [e.version for e in mine] == [1, 2]
            assert mine[1].global_position == mine[0].global_position + 1

    # The envelope

    async def test_metadata_round_trips_and_covers_the_whole_append(self, store: EventStore) -> None:
        written = await store.append("s-a", 0, [created("s-a"), *changes("s-a", 1)], META)
        await store.append("s-a", 2, changes("s-a", 1), Metadata(actor="cli"))
        await store.append("s-a", 3, changes("s-a", 1))
        assert [e.metadata for e in written] == [META, META]
        assert [e.metadata for e in await store.read_stream("s-a")] == [META, META, Metadata(actor="cli"), Metadata()]

    async def test_event_ids_are_unique_uuids(self, store: EventStore) -> None:
        await store.append("s-a", 0, [created("s-a"), *changes("s-a", 2)])
        await store.append("s-b", 0, [created("s-b")])
        ids = [e.event_id for e in await store.read_page(0)]
        assert all(isinstance(i, uuid.UUID) for i in ids) and len(set(ids)) == 4

    async def test_recorded_at_is_timezone_aware_and_ordered(self, store: EventStore) -> None:
        written = [*await store.append("s-a", 0, [created("s-a")]), *await store.append("s-a", 1, changes("s-a", 2))]
        times = [e.recorded_at for e in await store.read_page(0)]
        assert times == [e.recorded_at for e in written]
        assert all(t.tzinfo is not None and t.utcoffset() is not None for t in times)
        assert times == sorted(times)
