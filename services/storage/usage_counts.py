"""The ``usage_hourly`` table: verifications per key, hour and outcome (``projections.usage_hourly``),
added to in the same transaction as the usage rows they count; read (by primary key, never by scanning
``usage_events``) through ``services.storage.usage_series``."""

from __future__ import annotations

from collections.abc import Iterable

from psycopg import AsyncConnection

from keyledger.domain.usage import UsageEvent
from keyledger.projections.usage_hourly import count_hourly

_ADD = ("INSERT INTO usage_hourly (key_id, hour, outcome, count) "
        "SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::text[], %s::bigint[]) "
        "ON CONFLICT (key_id, hour, outcome) DO UPDATE SET count = usage_hourly.count + excluded.count")


async def add_hourly(conn: AsyncConnection, events: Iterable[UsageEvent]) -> None:
    """Count ``events`` into ``usage_hourly`` (inside the caller's transaction)."""
    counts = count_hourly(events)
    if not counts:
        return
    rows = sorted(counts.items())  # one order for every writer: concurrent sinks cannot deadlock
    await conn.execute(_ADD, ([k for (k, _, _), _ in rows], [h for (_, h, _), _ in rows],
                              [o for (_, _, o), _ in rows], [n for _, n in rows]))

