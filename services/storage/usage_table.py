"""The ``usage_events`` table: batches claimed by id (``usage_batches``) and their events COPYed, in one
transaction, into daily partitions created on demand."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date

import msgspec
import psycopg
from psycopg import AsyncConnection

from keyledger.domain.usage import USAGE_COLUMNS, UsageEvent
from keyledger.services.storage.database import Database
from keyledger.services.storage.usage_partitions import ensure_partition, utc_day

_CLAIM = ("INSERT INTO usage_batches (batch_id, events) SELECT * FROM unnest(%s::uuid[], %s::int[]) "
          "ON CONFLICT DO NOTHING RETURNING batch_id")
_COPY = f"COPY usage_events ({', '.join(USAGE_COLUMNS)}) FROM STDIN"


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
                for day in sorted(set[date]().union(*(batch.days() for batch in batches)) - self._days):
                    await ensure_partition(conn, day)
                    self._days.add(day)
                try:
                    return await _insert(conn, batches)
                except psycopg.errors.CheckViolation:  # no partition for a row: dropped since we made it
                    self._days.clear()
                    if attempt == 2:
                        raise
                except (psycopg.DataError, psycopg.IntegrityError, UnicodeEncodeError) as exc:
                    raise PoisonBatch(getattr(exc, "sqlstate", None) or type(exc).__name__) from None
        raise AssertionError("unreachable")


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
    return claimed
