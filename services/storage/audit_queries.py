"""``GET /v1/audit``: usage and lifecycle events, filtered, newest first, with a cursor."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from keyledger.domain.errors import ValidationError
from keyledger.services.storage.database import Database

KINDS = ("usage", "lifecycle")

# Each branch is ordered and limited by itself (its ``kind`` is a constant, so its order is (at, id)), so
# Postgres walks the (key_id, at), (organization_id, at), (at, id) or events (recorded_at) index backwards
# and stops after one page, instead of sorting every matching row; the outer query merges the two pages.
_QUERY = """
SELECT * FROM (
  (SELECT 'usage' AS kind, u.at, u.id::text AS id, u.key_id, u.start, u.organization_id, u.action, u.outcome,
          NULL::text AS actor, u.scope, u.granted_by, u.reason, u.website_id, u.data, u.ip, u.user_agent,
          u.request_id,
          CASE WHEN u.credits_spent <> 0 THEN jsonb_build_object('credits_spent', u.credits_spent) END AS detail
     FROM usage_events u
    WHERE %(usage)s AND (%(key)s::text IS NULL OR u.key_id = %(key)s)
      AND (%(org)s::text IS NULL OR u.organization_id = %(org)s)
      AND (%(outcome)s::text IS NULL OR u.outcome = %(outcome)s)
      AND (%(from)s::timestamptz IS NULL OR u.at >= %(from)s) AND (%(to)s::timestamptz IS NULL OR u.at < %(to)s)
      AND (%(after_at)s::timestamptz IS NULL OR u.at <= %(after_at)s)
      AND (%(after_at)s::timestamptz IS NULL
           OR (u.at, 'usage', u.id::text) < (%(after_at)s, %(after_kind)s, %(after_id)s))
    ORDER BY u.at DESC, u.id::text DESC
    LIMIT %(limit)s)
  UNION ALL
  (SELECT 'lifecycle', e.recorded_at, e.event_id::text, e.stream_id, coalesce(e.data->>'start', k.state->>'start'),
          k.state->>'organization_id', e.type, 'OK',
          e.metadata->>'actor', NULL, NULL, '', NULL, NULL, e.metadata->>'ip', e.metadata->>'user_agent',
          e.metadata->>'request_id', e.data - 'secret_hash' - 'key_id' - 'type'
     FROM events e LEFT JOIN key_cache k ON k.key_id = e.stream_id
    WHERE %(lifecycle)s AND (%(key)s::text IS NULL OR e.stream_id = %(key)s)
      AND (%(org)s::text IS NULL OR k.state->>'organization_id' = %(org)s)
      AND (%(outcome)s::text IS NULL OR %(outcome)s = 'OK')
      AND (%(from)s::timestamptz IS NULL OR e.recorded_at >= %(from)s)
      AND (%(to)s::timestamptz IS NULL OR e.recorded_at < %(to)s)
      AND (%(after_at)s::timestamptz IS NULL OR e.recorded_at <= %(after_at)s)
      AND (%(after_at)s::timestamptz IS NULL
           OR (e.recorded_at, 'lifecycle', e.event_id::text) < (%(after_at)s, %(after_kind)s, %(after_id)s))
    ORDER BY e.recorded_at DESC, e.event_id::text DESC
    LIMIT %(limit)s)
) audit
ORDER BY at DESC, kind DESC, id DESC
LIMIT %(limit)s
"""


class AuditFilter(msgspec.Struct, frozen=True, kw_only=True):
    """What to look for; None means any."""

    key_id: str | None = None
    organization_id: str | None = None
    outcome: str | None = None
    kind: str | None = None
    start: datetime | None = None
    end: datetime | None = None


def encode_cursor(record: dict[str, Any]) -> str:
    """An opaque cursor pointing just after ``record``."""
    raw = msgspec.json.encode([record["at"], record["kind"], record["id"]])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str, str]:
    """The position a cursor points after; ValidationError if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, kind, record_id = msgspec.json.decode(raw, type=tuple[datetime, str, str])
    except (ValueError, msgspec.DecodeError):
        raise ValidationError("cursor is not valid") from None
    return at, kind, record_id


async def query_audit(conn: AsyncConnection, where: AuditFilter, limit: int,
                      cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """One page of audit records, newest first, and the cursor of the next page."""
    if where.kind is not None and where.kind not in KINDS:
        raise ValidationError(f"kind must be one of {', '.join(KINDS)}")
    after = decode_cursor(cursor) if cursor else (None, None, None)
    params = {
        "usage": where.kind in (None, "usage"), "lifecycle": where.kind in (None, "lifecycle"),
        "key": where.key_id, "org": where.organization_id, "outcome": where.outcome,
        "from": where.start, "to": where.end, "after_at": after[0], "after_kind": after[1], "after_id": after[2],
        "limit": limit + 1,
    }
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_QUERY, params)
        rows = await cur.fetchall()
    page = rows[:limit]
    return page, encode_cursor(page[-1]) if len(rows) > limit else None


class AuditQueries:
    """Reads of the audit trail (usage and lifecycle records) for the API and the CLI."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def page(self, where: AuditFilter, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of records, newest first, and the cursor of the next page."""
        async with self._db._connection() as conn:
            return await query_audit(conn, where, limit, cursor)
