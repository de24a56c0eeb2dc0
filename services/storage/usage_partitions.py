"""The daily partitions of ``usage_events``: created by the audit sink, dropped only by retention.

Dropping whole partitions is the only way audit rows ever leave (the table refuses UPDATE and
DELETE), and every retention run leaves a row in the append-only ``audit_retention_log``.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

from psycopg import AsyncConnection, sql

from keyledger.services.storage.database import Database

log = logging.getLogger("keyledger.audit_retention")

PARTITION_LOCK = 0x6B6C7570  # advisory lock held while partitions are created or dropped
# Partitions whose range ends at or before the cutoff. The upper bound is read back from the
# partition's own definition (never from its name); DEFAULT or MAXVALUE partitions never match.
_EXPIRED = r"""
SELECT n.nspname, c.relname
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE i.inhparent = 'usage_events'::regclass
   AND (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz <= %s
 ORDER BY c.relname
"""
_LOG = "INSERT INTO audit_retention_log (actor, keep_days, cutoff, dropped) VALUES (%s, %s, %s, %s)"


def utc_day(at: datetime) -> date:
    """The UTC day of an aware time: the partition it belongs to."""
    return at.astimezone(UTC).date()


async def ensure_partition(conn: AsyncConnection, day: date) -> None:
    """Create the partition for ``day`` (UTC midnight to midnight) unless it exists.

    Done by ``keyledger_ensure_usage_partition`` (migration 0010), which runs with the table owner's
    rights, so the application role can add a day without being able to drop or detach one. It takes
    :data:`PARTITION_LOCK` in its own short transaction, so sinks creating the same day at once, or a
    retention run dropping it, never collide.
    """
    async with conn.transaction():
        await conn.execute("SELECT keyledger_ensure_usage_partition(%s)", (day,))


async def apply_retention(conn: AsyncConnection, keep_days: int, now: datetime, actor: str | None) -> list[str]:
    """Drop the ``usage_events`` partitions whose whole range ends at or before ``now - keep_days``.

    The partition containing the cutoff is kept (so at least ``keep_days`` are always kept). One row
    goes into ``audit_retention_log`` in the same transaction, also when nothing was dropped.
    Returns the names of the dropped partitions.
    """
    if keep_days < 1:
        raise ValueError("keep_days must be at least 1")
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    cutoff = now - timedelta(days=keep_days)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
        expired = await (await conn.execute(_EXPIRED, (cutoff,))).fetchall()
        for schema, name in expired:
            await conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, name)))
        dropped = [str(name) for _, name in expired]
        await conn.execute(_LOG, (actor, keep_days, cutoff, dropped))
    log.info("retention (keep %d days, cutoff %s, by %s): dropped %s", keep_days, cutoff.isoformat(), actor,
             ", ".join(dropped) or "nothing")
    return dropped


class UsagePartitions:
    """The partitions of ``usage_events`` in one database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def apply_retention(self, keep_days: int, now: datetime, actor: str | None) -> list[str]:
        """:func:`apply_retention` on a pooled connection."""
        async with self._db._connection() as conn:
            return await apply_retention(conn, keep_days, now, actor)
