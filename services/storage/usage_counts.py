"""The ``usage_hourly`` table: verifications per key, hour and outcome (``projections.usage_hourly``),
added to in the same transaction as the usage rows they count; read by primary key, never by scanning
``usage_events``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from psycopg import AsyncConnection

from keyledger.domain.usage import UsageEvent
from keyledger.projections.usage_hourly import count_hourly
from keyledger.services.storage.database import Database

_ADD = ("INSERT INTO usage_hourly (key_id, hour, outcome, count) "
        "SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::text[], %s::bigint[]) "
        "ON CONFLICT (key_id, hour, outcome) DO UPDATE SET count = usage_hourly.count + excluded.count")
_READ = ("SELECT key_id, hour, outcome, count FROM usage_hourly "
         "WHERE key_id = ANY(%s) AND hour >= %s AND hour < %s ORDER BY key_id, hour, outcome")

Hourly = list[tuple[datetime, str, int]]


async def add_hourly(conn: AsyncConnection, events: Iterable[UsageEvent]) -> None:
    """Count ``events`` into ``usage_hourly`` (inside the caller's transaction)."""
    counts = count_hourly(events)
    if not counts:
        return
    rows = sorted(counts.items())  # one order for every writer: concurrent sinks cannot deadlock
    await conn.execute(_ADD, ([k for (k, _, _), _ in rows], [h for (_, h, _), _ in rows],
                              [o for (_, _, o), _ in rows], [n for _, n in rows]))


class UsageCounts:
    """Reads of the per-key hourly counts."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def hourly(self, key_ids: Sequence[str], since: datetime, until: datetime) -> dict[str, Hourly]:
        """``key_id -> [(hour, outcome, count)]`` for the hours in [since, until), for at most 500 keys."""
        if not key_ids:
            return {}
        found: dict[str, Hourly] = {}
        async with self._db._connection() as conn:
            cur = await conn.execute(_READ, (list(key_ids[:500]), since, until))
            for key_id, hour, outcome, count in await cur.fetchall():
                found.setdefault(key_id, []).append((hour, outcome, int(count)))
        return found
