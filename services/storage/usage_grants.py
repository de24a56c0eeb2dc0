"""The ``usage_grants`` table: what each key was allowed to do, by scope, website and data kind, with the last
time (``projections.usage_grants``), added to in the same transaction as the usage rows it counts; and the
hygiene report's reads of it and of the store's rotations, neither of which scans ``usage_events``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from datetime import datetime

from psycopg import AsyncConnection

from keyledger.domain.hygiene import Use
from keyledger.domain.usage import UsageEvent
from keyledger.projections.usage_grants import count_grants
from keyledger.services.storage.database import Database

_ADD = ("INSERT INTO usage_grants (key_id, scope, website_id, data, last_at, count) "
        "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::bigint[]) "
        "ON CONFLICT (key_id, scope, website_id, data) DO UPDATE SET "
        "last_at = greatest(usage_grants.last_at, excluded.last_at), count = usage_grants.count + excluded.count")
_USED = "SELECT key_id, scope, website_id, data, last_at FROM usage_grants WHERE last_at > %s"
_ROTATED = ("SELECT DISTINCT ON (stream_id) stream_id, (data->>'at')::timestamptz FROM events "
            "WHERE type = 'key.rotated'{} ORDER BY stream_id, version DESC")
_SOME_KEYS = 2_000  # up to this many keys asked: read theirs by key; more: read all and keep theirs


async def add_grants(conn: AsyncConnection, events: Iterable[UsageEvent]) -> None:
    """Count ``events`` into ``usage_grants`` (inside the caller's transaction)."""
    found = count_grants(events)
    if not found:
        return
    rows = sorted(found.items())  # one order for every writer: concurrent sinks cannot deadlock
    await conn.execute(_ADD, ([g[0] for g, _ in rows], [g[1] for g, _ in rows], [g[2] for g, _ in rows],
                              [g[3] for g, _ in rows], [at for _, (at, _) in rows], [n for _, (_, n) in rows]))


class KeyUsage:
    """What the hygiene report reads per key: its allowed requests since a time, and its last rotation."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def read(self, key_ids: Sequence[str], since: datetime) -> tuple[dict[str, list[Use]],
                                                                          dict[str, datetime],
                                                                          dict[str, datetime]]:
        """For ``key_ids``: their uses after ``since``, the last of those per key, and when each rotated key
        was last rotated (by its ``key.rotated`` event's time). Both reads run at once."""
        wanted = set(key_ids)
        some = len(wanted) <= _SOME_KEYS
        (used, last), rotated = await asyncio.gather(self._used(wanted, since, some), self._rotated(wanted, some))
        return used, last, rotated

    async def _used(self, wanted: set[str], since: datetime,
                    some: bool) -> tuple[dict[str, list[Use]], dict[str, datetime]]:
        query, params = (_USED + " AND key_id = ANY(%s)", (since, list(wanted))) if some else (_USED, (since,))
        async with self._db._connection() as conn:
            rows = await (await conn.execute(query, params)).fetchall()
        used: dict[str, list[Use]] = {}
        last: dict[str, datetime] = {}
        for key_id, scope, website_id, data, at in rows:
            if key_id in wanted:
                used.setdefault(key_id, []).append(Use(scope, website_id or None, data or None))
                if key_id not in last or at > last[key_id]:
                    last[key_id] = at
        return used, last

    async def _rotated(self, wanted: set[str], some: bool) -> dict[str, datetime]:
        query, params = ((_ROTATED.format(" AND stream_id = ANY(%s)"), (list(wanted),)) if some
                         else (_ROTATED.format(""), ()))
        async with self._db._connection() as conn:
            rows = await (await conn.execute(query, params)).fetchall()
        return {key_id: at for key_id, at in rows if key_id in wanted}
