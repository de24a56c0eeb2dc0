"""The Postgres event store: append with optimistic concurrency, read by stream or by position."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import msgspec
import psycopg

from keyledger.domain.errors import ConcurrencyError
from keyledger.domain.events import Event, decode_event, encode_event, event_type
from keyledger.domain.recorded import Metadata, RecordedEvent
from keyledger.services.storage.database import Database

_APPEND = """
WITH pos AS (
    UPDATE event_position SET value = value + %(n)s
    WHERE (SELECT coalesce(max(version), 0) FROM events WHERE stream_id = %(stream)s) = %(expected)s
    RETURNING value - %(n)s AS base
)
INSERT INTO events (global_position, event_id, stream_id, version, type, data, metadata)
SELECT pos.base + e.ord, e.event_id, %(stream)s, %(expected)s + e.ord, e.type, e.data::jsonb, %(meta)s::jsonb
FROM pos, unnest(%(ids)s::uuid[], %(types)s::text[], %(datas)s::text[])
     WITH ORDINALITY AS e(event_id, type, data, ord)
RETURNING global_position, event_id, version, recorded_at
"""
_COLUMNS = "global_position, event_id, stream_id, version, type, data::text, metadata::text, recorded_at"
_meta_decoder = msgspec.json.Decoder(Metadata)
_meta_encoder = msgspec.json.Encoder()


def _row_to_event(row: tuple[Any, ...]) -> RecordedEvent:
    position, event_id, stream_id, version, type_, data, metadata, recorded_at = row
    return RecordedEvent(
        global_position=position, event_id=event_id, stream_id=stream_id, version=version,
        type=type_, event=decode_event(data), metadata=_meta_decoder.decode(metadata),
        recorded_at=recorded_at,
    )


class EventStore(Protocol):
    """What every event store promises (the Postgres one and the in-memory fake alike)."""

    async def append(self, stream_id: str, expected_version: int, events: Sequence[Event],
                     metadata: Metadata | None = None) -> list[RecordedEvent]:
        """Append after ``expected_version`` atomically; ConcurrencyError when the stream moved on."""
        ...

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version (0 when it has no events)."""
        ...

    async def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        """All events of one stream after ``after_version``, in version order."""
        ...

    async def read_page(self, after_position: int, limit: int = 1000) -> list[RecordedEvent]:
        """Up to ``limit`` events with global position above ``after_position``, in order."""
        ...

    def read_all(self, after_position: int = 0, page_size: int = 5000) -> AsyncIterator[list[RecordedEvent]]:
        """Every event after ``after_position`` as pages."""
        ...

    async def head_position(self) -> int:
        """The highest global position committed so far (0 for an empty store)."""
        ...


class PostgresEventStore:
    """Appends and reads events in Postgres."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(
        self, stream_id: str, expected_version: int, events: Sequence[Event], metadata: Metadata | None = None
    ) -> list[RecordedEvent]:
        """Append ``events`` after ``expected_version`` (0 for a new stream) in one transaction.

        Raises ConcurrencyError when the stream is not at ``expected_version``.
        """
        if not events:
            return []
        meta = metadata or Metadata()
        types = [event_type(event) for event in events]
        params = {
            "n": len(events), "stream": stream_id, "expected": expected_version,
            "meta": _meta_encoder.encode(meta).decode(),
            "ids": [uuid.uuid4() for _ in events],
            "types": types,
            "datas": [encode_event(event).decode() for event in events],
        }
        async with self._db._connection() as conn:
            try:
                rows = await (await conn.execute(_APPEND, params)).fetchall()
            except psycopg.errors.UniqueViolation as exc:
                raise ConcurrencyError(
                    f"stream {stream_id} changed concurrently; expected version {expected_version}") from exc
        if not rows:
            current = await self.stream_version(stream_id)
            raise ConcurrencyError(f"stream {stream_id} is at version {current}, expected {expected_version}")
        return [
            RecordedEvent(global_position=pos, event_id=eid, stream_id=stream_id, version=ver,
                          type=type_, event=event, metadata=meta, recorded_at=at)  # type: ignore[arg-type]
            for (pos, eid, ver, at), type_, event in zip(rows, types, events, strict=True)
        ]

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version (0 when it has no events)."""
        async with self._db._connection() as conn:
            cur = await conn.execute(
                "SELECT coalesce(max(version), 0) FROM events WHERE stream_id = %s", (stream_id,)
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        """All events of one stream after ``after_version``, in version order."""
        async with self._db._connection() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE stream_id = %s AND version > %s ORDER BY version",
                (stream_id, after_version),
            )
            return [_row_to_event(row) for row in await cur.fetchall()]

    async def read_page(self, after_position: int, limit: int = 1000) -> list[RecordedEvent]:
        """Up to ``limit`` events with global position above ``after_position``, in order."""
        async with self._db._connection() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE global_position > %s ORDER BY global_position LIMIT %s",
                (after_position, limit),
            )
            return [_row_to_event(row) for row in await cur.fetchall()]

    async def read_all(self, after_position: int = 0, page_size: int = 5000) -> AsyncIterator[list[RecordedEvent]]:
        """Every event after ``after_position`` as pages, without loading them all at once."""
        async for page in pages_of(self, after_position, page_size):
            yield page

    async def head_position(self) -> int:
        """The highest global position committed so far (0 for an empty store)."""
        async with self._db._connection() as conn:
            return await head_on(conn)


async def head_on(conn: psycopg.AsyncConnection) -> int:
    """The head position, read on a given connection (storage-internal)."""
    row = await (await conn.execute("SELECT value FROM event_position")).fetchone()
    return int(row[0]) if row else 0


async def pages_of(store: EventStore, after_position: int, page_size: int) -> AsyncIterator[list[RecordedEvent]]:
    """``store.read_all`` for any store: ``read_page`` after ``after_position`` until a page is empty."""
    while True:
        page = await store.read_page(after_position, page_size)
        if not page:
            return
        yield page
        after_position = page[-1].global_position
