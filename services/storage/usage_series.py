"""The usage analytics tables (``projections.usage_series``): added to in the same transaction as the usage
rows they count, and the one place their series are read, for ``GET /v1/analytics/usage`` and the dashboard's
charts alike. Every read goes by primary key range, never scanning ``usage_events``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import msgspec
from psycopg import AsyncConnection

from keyledger.domain.analytics import SeriesRange, UsageSeries, series_of
from keyledger.domain.usage import UsageEvent
from keyledger.projections.usage_series import combinations, subject_of, table_rows
from keyledger.services.storage.database import Database

# One statement adds a fetch's rows (projections.usage_series.table_rows: summed there) to the three tables,
# each in its primary key's order for every writer (concurrent sinks cannot deadlock). Each table's rows go as
# one JSON array of arrays encoded by msgspec: psycopg builds array parameters element by element in Python,
# which cost the sink about as much CPU as COPYing the events themselves.
_ADD = """
WITH hourly AS (
    INSERT INTO usage_hourly (key_id, hour, outcome, count)
    SELECT r->>0, to_timestamp((r->>1)::bigint), r->>2, (r->>3)::bigint
      FROM jsonb_array_elements(%s::jsonb) AS r ORDER BY 1, 2, 3
    ON CONFLICT (key_id, hour, outcome) DO UPDATE SET count = usage_hourly.count + excluded.count),
requests AS (
    INSERT INTO usage_hourly_requests (key_id, hour, scope, website_id, count)
    SELECT r->>0, to_timestamp((r->>1)::bigint), r->>2, r->>3, (r->>4)::bigint
      FROM jsonb_array_elements(%s::jsonb) AS r ORDER BY 1, 2, 3, 4
    ON CONFLICT (key_id, hour, scope, website_id) DO UPDATE SET count = usage_hourly_requests.count + excluded.count)
INSERT INTO usage_rollups (subject, dimension, span, at, value, count)
SELECT r->>0, r->>1, r->>2, to_timestamp((r->>3)::bigint), r->>4, (r->>5)::bigint
  FROM jsonb_array_elements(%s::jsonb) AS r ORDER BY 1, 2, 3, 4, 5
ON CONFLICT (subject, dimension, span, at, value) DO UPDATE SET count = usage_rollups.count + excluded.count
"""
# A key's (or some keys') hourly counts: the table and the column of each grouping.
_KEY_TABLES = {"outcome": ("usage_hourly", "outcome"), "scope": ("usage_hourly_requests", "scope"),
               "website": ("usage_hourly_requests", "website_id")}
# Bucket starts as seconds since the epoch, read in binary: integers cost the reader far less than a datetime
# per row.
_ROLLUP = ("SELECT extract(epoch FROM at)::bigint, value, count FROM usage_rollups WHERE subject = %s "
           "AND dimension = %s AND span = %s AND at >= %s AND at < %s")
_json = msgspec.json.Encoder().encode
MAX_KEYS = 10_000  # a series over more keys than this reads an organization's (or every key's) rollups

Hourly = list[tuple[datetime, str, int]]


def key_query(group_by: str, interval: str, per_key: bool = False) -> str:
    """The query of some keys' counts (``key_id = ANY(%s)``, hours in ``[%s, %s)``) for buckets of ``interval``
    by ``group_by``: ``(bucket, group, count)`` rows, the bucket in seconds since the epoch, or with ``per_key``
    ``(key_id, hour, group, count)``, the hour a time. Hours are read as stored (the reader adds up a bucket's
    rows: cheaper than Postgres grouping them); days are summed by Postgres (a 24th of the rows to send)."""
    table, column = _KEY_TABLES[group_by]
    if per_key:
        return (f"SELECT key_id, hour, {column}, count FROM {table} "
                "WHERE key_id = ANY(%s) AND hour >= %s AND hour < %s")
    if interval == "hour":
        return (f"SELECT extract(epoch FROM hour)::bigint, {column}, count FROM {table} "
                "WHERE key_id = ANY(%s) AND hour >= %s AND hour < %s")
    return (f"SELECT extract(epoch FROM date_trunc('day', hour, 'UTC'))::bigint AS day, {column}, "
            f"sum(count)::bigint FROM {table} WHERE key_id = ANY(%s) AND hour >= %s AND hour < %s "
            f"GROUP BY day, {column}")


def _arrays(query: str) -> bytes:
    """``query``'s ``(bucket, group, count)`` rows as one row of three arrays: decoding three arrays costs the
    reader a fraction of decoding a row each."""
    return f"SELECT array_agg(b), array_agg(g), array_agg(c) FROM ({query}) AS r (b, g, c)".encode()


async def add_series(conn: AsyncConnection, events: Iterable[UsageEvent]) -> None:
    """Count ``events`` into ``usage_hourly``, ``usage_hourly_requests`` and ``usage_rollups`` (inside the
    caller's transaction)."""
    found = combinations(events)
    if not found:
        return
    await conn.execute(_ADD.encode(), tuple(_json(rows).decode() for rows in table_rows(found)))


class UsageSeriesReader:
    """Reads of usage time series: some keys', an organization's keys' or every key's."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def series(self, span: SeriesRange, key_ids: Sequence[str] | None = None,
                     organization_id: str | None = None) -> UsageSeries:
        """The series of ``span`` over ``key_ids`` (at most :data:`MAX_KEYS`) or, with None, over the keys of
        ``organization_id`` (None: every key)."""
        if key_ids is not None and not key_ids:
            return series_of(span, ())
        async with self._db._connection() as conn:
            cur = conn.cursor(binary=True)
            if key_ids is not None:
                await cur.execute(_arrays(key_query(span.group_by, span.interval)),
                                  (list(key_ids[:MAX_KEYS]), span.start, span.end))
            else:
                await cur.execute(_arrays(_ROLLUP), (subject_of(organization_id), span.group_by, span.interval,
                                                     span.start, span.end))
            found = await cur.fetchone()
        starts, groups, counts = found if found is not None and found[0] is not None else ((), (), ())
        return series_of(span, zip(starts, groups, counts, strict=True))

    async def hourly(self, key_ids: Sequence[str], since: datetime, until: datetime) -> dict[str, Hourly]:
        """``key_id -> [(hour, outcome, count)]`` for the hours in [since, until), for at most 500 keys (the
        dashboard's sparklines and charts: each key's series by outcome, by the same query as :meth:`series`)."""
        if not key_ids:
            return {}
        found: dict[str, Hourly] = {}
        async with self._db._connection() as conn:
            cur = await conn.execute(key_query("outcome", "hour", per_key=True).encode(),
                                     (list(key_ids[:500]), since, until))
            for key_id, hour, outcome, count in await cur.fetchall():
                found.setdefault(key_id, []).append((hour, outcome, count))
        return found
