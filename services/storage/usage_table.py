"""The ``usage_events`` table: batches claimed by id (``usage_batches``) and their events COPYed, in one
transaction, into daily partitions created on demand, with their allowed requests (``usage_grants``) and the
analytics counts (``usage_hourly``, ``usage_hourly_requests``, ``usage_rollups``: ``usage_series``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date

import msgspec
import psycopg
from psycopg import AsyncConnection

from keyledger.domain.usage import USAGE_COLUMNS, UsageEvent, clean_text
from keyledger.services.storage.database import Database
from keyledger.services.storage.usage_grants import add_grants
from keyledger.services.storage.usage_partitions import ensure_partition, utc_day
from keyledger.services.storage.usage_series import add_series

_CLAIM = ("INSERT INTO usage_batches (batch_id, events) SELECT * FROM unnest(%s::uuid[], %s::int[]) "
          "ON CONFLICT DO NOTHING RETURNING batch_id")
_COPY = f"COPY usage_events ({', '.join(USAGE_COLUMNS)}) FROM STDIN"
_INSERT_ONE = (f"INSERT INTO usage_events ({', '.join(USAGE_COLUMNS)}) "
               f"VALUES ({', '.join(['%s'] * len(USAGE_COLUMNS))})")
_DEAD_LETTER = "INSERT INTO usage_dead_letters (batch_id, event_id, reason, body) VALUES (%s, %s, %s, %s)"
_REFUSED = (psycopg.DataError, psycopg.IntegrityError, UnicodeEncodeError)  # the data, not an outage


class PoisonBatch(Exception):
    """Postgres refused a batch's contents (bad data, not an outage): retrying cannot help."""


class UsageBatch(msgspec.Struct, frozen=True):
    """One batch of usage events under its id."""

    batch_id: uuid.UUID
    events: list[UsageEvent]

    def days(self) -> set[date]:
        """The UTC days (partitions) its events fall on."""
        return {utc_day(event.at) for event in self.events}


class UsageTable:
    """Stores usage batches exactly once each."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._days: set[date] = set()  # partitions known to exist

    async def store(self, batches: Sequence[UsageBatch]) -> set[uuid.UUID]:
        """Store the batches not stored before, in one transaction; returns the ids newly stored.

        PoisonBatch when Postgres refuses the contents (the caller isolates the bad batch);
        StorageError on an outage (the caller retries)."""
        async with self._db._connection() as conn:
            for attempt in (1, 2):
                await self._ensure_partitions(conn, set[date]().union(*(batch.days() for batch in batches)))
                try:
                    return await _insert(conn, batches)
                except psycopg.errors.CheckViolation:  # no partition for a row: dropped since we made it
                    self._days.clear()
                    if attempt == 2:
                        raise
                except _REFUSED as exc:
                    raise PoisonBatch(_why(exc)) from None
        raise AssertionError("unreachable")

    async def _ensure_partitions(self, conn: AsyncConnection, days: set[date]) -> None:
        """Create the partitions of ``days`` not known to exist."""
        for day in sorted(days - self._days):
            await ensure_partition(conn, day)
            self._days.add(day)

    async def store_isolating(self, batch: UsageBatch) -> tuple[int, list[tuple[UsageEvent, str]]]:
        """Store a batch that Postgres refused as a whole, event by event, in one transaction: the
        events it accepts go to ``usage_events``, each refused one to ``usage_dead_letters`` with the
        reason. Returns how many were stored (0 with no dead letters: the batch was stored before)
        and the dead letters."""
        async with self._db._connection() as conn:
            await self._ensure_partitions(conn, batch.days())
            async with conn.transaction():
                cur = await conn.execute(_CLAIM, ([batch.batch_id], [len(batch.events)]))
                if not await cur.fetchall():
                    return 0, []
                dead: list[tuple[UsageEvent, str]] = []
                for event in batch.events:
                    try:
                        async with conn.transaction():  # a savepoint: one refused row undoes only itself
                            await conn.execute(_INSERT_ONE, msgspec.structs.astuple(event))
                    except _REFUSED as exc:
                        dead.append((event, _why(exc)))
                dead_ids = {id(event) for event, _ in dead}
                kept = [event for event in batch.events if id(event) not in dead_ids]
                await add_grants(conn, kept)
                await add_series(conn, kept)
                for event, reason in dead:
                    await conn.execute(_DEAD_LETTER, (batch.batch_id, clean_text(event.id, 64), reason,
                                                      _dead_body(event)))
        return len(batch.events) - len(dead), dead


def _why(exc: BaseException) -> str:
    """A refusal's SQLSTATE and class (never the refused value)."""
    return f"{type(exc).__name__} {getattr(exc, 'sqlstate', None) or ''}".strip()


def _dead_body(event: UsageEvent) -> bytes:
    """The event as JSON bytes, exactly as received where possible; text that cannot be encoded (lone
    surrogates) is escaped rather than lost."""
    try:
        return msgspec.json.encode(event)
    except UnicodeEncodeError:
        return ascii(msgspec.structs.asdict(event)).encode()


async def _insert(conn: AsyncConnection, batches: Sequence[UsageBatch]) -> set[uuid.UUID]:
    """In one transaction: claim the batch ids, COPY the events of the newly claimed ones."""
    async with conn.transaction():
        cur = await conn.execute(_CLAIM, ([b.batch_id for b in batches], [len(b.events) for b in batches]))
        claimed = {row[0] for row in await cur.fetchall()}
        fresh = [batch for batch in batches if batch.batch_id in claimed]
        if any(batch.events for batch in fresh):
            async with conn.cursor().copy(_COPY) as copy:
                for batch in fresh:
                    for event in batch.events:
                        await copy.write_row(msgspec.structs.astuple(event))
            await add_grants(conn, (event for batch in fresh for event in batch.events))
            await add_series(conn, (event for batch in fresh for event in batch.events))
    return claimed
