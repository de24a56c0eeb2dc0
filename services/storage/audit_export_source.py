"""The compliance export's rows: usage and lifecycle records merged in time order from one snapshot."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

from psycopg import AsyncServerCursor, sql

from keyledger.services.storage.database import Database

# Lifecycle event fields left out of ``detail``: flattened into the record, or secret.
NOT_IN_DETAIL = ("secret_hash", "type", "key_id", "organization_id", "reason", "start")
# One query, one snapshot: a Merge Append of the usage partitions' (at, id) index scans and the
# events' (recorded_at, event_id) order, so Postgres streams rows without sorting the whole range.
# Ties are broken by id alone (uuids, unique across both tables): ordering by the constant ``kind``
# column as well would make the planner sort everything instead.
SELECT = """
SELECT NULL::int8 AS seq, r.action, r.actor,
       to_char(r.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), r.data, r.detail, r.granted_by,
       r.id::text, r.ip, r.key_id, r.kind, r.organization_id, r.outcome, r.reason, r.request_id, r.scope,
       r.start, r.user_agent, r.website_id
FROM (
    SELECT u.at, u.id, NULLIF(u.action, '') AS action, NULL::text AS actor, NULLIF(u.data, '') AS data,
           NULL::text AS detail, NULLIF(u.granted_by, '') AS granted_by, NULLIF(u.ip, '') AS ip,
           NULLIF(u.key_id, '') AS key_id, 'usage'::text AS kind, NULLIF(u.organization_id, '') AS organization_id,
           NULLIF(u.outcome, '') AS outcome, NULLIF(u.reason, '') AS reason,
           NULLIF(u.request_id, '') AS request_id, NULLIF(u.scope, '') AS scope, NULLIF(u.start, '') AS start,
           NULLIF(u.user_agent, '') AS user_agent, NULLIF(u.website_id, '') AS website_id
    FROM usage_events u
    UNION ALL
    SELECT e.recorded_at, e.event_id, e.type, NULLIF(e.metadata->>'actor', ''), NULL,
           (e.data - ARRAY[{not_in_detail}])::text, NULL, NULLIF(e.metadata->>'ip', ''), e.stream_id, 'lifecycle',
           NULLIF(e.data->>'organization_id', ''), 'OK', NULLIF(e.data->>'reason', ''),
           NULLIF(e.metadata->>'request_id', ''), NULL, NULLIF(e.data->>'start', ''),
           NULLIF(e.metadata->>'user_agent', ''), NULL
    FROM events e
) r
""".format(not_in_detail=", ".join(f"'{name}'" for name in NOT_IN_DETAIL))
_COUNT = ("SELECT (SELECT count(*) FROM usage_events u WHERE {usage}) "
          "+ (SELECT count(*) FROM events e WHERE {events})")
_CURSOR = "keyledger_audit_export"


def _where(column: str, start: datetime | None, end: datetime | None) -> sql.Composable:
    """``column`` within the half-open range [start, end)."""
    conditions: list[sql.Composable] = [sql.SQL("true")]
    if start is not None:
        conditions.append(sql.SQL("{} >= {}").format(sql.SQL(column), start))
    if end is not None:
        conditions.append(sql.SQL("{} < {}").format(sql.SQL(column), end))
    return sql.SQL(" AND ").join(conditions)


class ExportSource:
    """The rows of an export: ``(None, action, actor, at, data, detail, granted_by, id, ip, key_id, kind,
    organization_id, outcome, reason, request_id, scope, start, user_agent, website_id)`` as strings or None."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def count(self, start: datetime | None, end: datetime | None) -> int:
        """How many records [start, end) holds now."""
        query = sql.SQL(_COUNT).format(usage=_where("u.at", start, end), events=_where("e.recorded_at", start, end))
        async with self._db._connection() as conn:
            row = await (await conn.execute(query)).fetchone()
        return int(row[0]) if row else 0

    async def rows(self, start: datetime | None, end: datetime | None,
                   size: int) -> AsyncGenerator[list[tuple[Any, ...]], None]:
        """The rows of [start, end) in export order, ``size`` at a time, from one server-side cursor.
        The next batch is requested before the current one is handed out, so Postgres produces it meanwhile."""
        query = sql.SQL(SELECT + "WHERE {} ORDER BY r.at, r.id").format(_where("r.at", start, end))
        async with self._db._connection() as conn, conn.transaction():
            cursor: AsyncServerCursor[Any]
            async with conn.cursor(name=_CURSOR, binary=True) as cursor:
                await cursor.execute(query)
                pending: asyncio.Future[list[Any]] | None = asyncio.ensure_future(cursor.fetchmany(size))
                try:
                    while pending is not None:
                        rows, pending = await pending, None
                        if len(rows) == size:
                            pending = asyncio.ensure_future(cursor.fetchmany(size))
                            await asyncio.sleep(0)  # let that FETCH go out before the caller works on this batch
                        if rows:
                            yield rows
                finally:
                    if pending is not None:  # abandoned early: finish the FETCH so the connection stays usable
                        with contextlib.suppress(Exception):
                            await pending
