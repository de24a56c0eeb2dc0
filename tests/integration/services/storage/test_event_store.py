"""The Postgres event store against a real server: what only Postgres promises (migrations, append-only
triggers, commit-order tailing, volume). The shared behaviours are in test_event_store_contract.py."""

from __future__ import annotations

import asyncio
import random

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from keyledger.domain.errors import ConcurrencyError
from keyledger.domain.events import AnyEvent
from keyledger.domain.key import fold
from keyledger.services.storage.database import open_database
from keyledger.services.storage.event_store import PostgresEventStore
from keyledger.services.storage.migrations import available_migrations, migrate
from tests.support.factories import changes, created


async def test_migrations_apply_once_even_when_started_together(database_url: str) -> None:
    results = await asyncio.gather(*(migrate(database_url) for _ in range(4)))
    applied = [names for names in results if names]
    assert applied == [[name for _, name, _ in available_migrations()]]
    assert await migrate(database_url) == []


async def test_events_cannot_be_changed_or_removed(store: PostgresEventStore, pool: AsyncConnectionPool) -> None:
    await store.append("key-d", 0, [created("key-d")])
    async with pool.connection() as conn:
        for sql in ("UPDATE events SET type = 'x'", "DELETE FROM events", "TRUNCATE events"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                await conn.execute(sql)
    assert len(await store.read_stream("key-d")) == 1


async def test_tailing_reader_never_skips_an_event_committed_later(database_url: str) -> None:
    """Many connections append at once while a reader tails by position: it sees every event once."""
    await migrate(database_url)
    async with open_database(database_url, min_size=16, max_size=16) as db:
        store = PostgresEventStore(db)
        writers_done = asyncio.Event()
        seen: list[int] = []

        async def writer(worker: int) -> None:
            rng = random.Random(worker)
            for i in range(100):
                stream = f"w{worker}-{i}"
                await store.append(stream, 0, [created(stream), *changes(stream, rng.randint(0, 3))])
                contended = "shared"
                try:
                    version = await store.stream_version(contended)
                    events: list[AnyEvent] = [created(contended)] if version == 0 else [*changes(contended, 1)]
                    await store.append(contended, version, events)
                except ConcurrencyError:
                    pass

        async def reader() -> None:
            last = 0
            while True:
                finished = writers_done.is_set()
                page = await store.read_page(last, 200)
                seen.extend(e.global_position for e in page)
                if page:
                    last = page[-1].global_position
                elif finished:
                    return

        tail = asyncio.create_task(reader())
        await asyncio.gather(*(writer(w) for w in range(12)))
        writers_done.set()
        await tail
        committed = [e.global_position async for page in store.read_all() for e in page]
    assert seen == committed  # nothing skipped, nothing twice, in order
    assert committed == list(range(1, len(committed) + 1))  # and positions have no gaps


async def test_hundred_thousand_events_round_trip(store: PostgresEventStore) -> None:
    streams = [f"bulk-{i:04d}" for i in range(1000)]
    written: dict[str, list[AnyEvent]] = {s: [created(s), *changes(s, 99)] for s in streams}

    async def write(chunk: list[str]) -> None:
        for stream in chunk:
            await store.append(stream, 0, written[stream])

    await asyncio.gather(*(write(streams[i::4]) for i in range(4)))
    read: dict[str, list[AnyEvent]] = {}
    positions = []
    async for page in store.read_all(page_size=10_000):
        for recorded in page:
            positions.append(recorded.global_position)
            read.setdefault(recorded.stream_id, []).append(recorded.event)
    assert positions == list(range(1, 100_001))
    assert read == written
    assert fold(read["bulk-0042"]) == fold(written["bulk-0042"])
