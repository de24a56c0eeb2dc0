"""Versioned SQL migrations, applied automatically, in order, exactly once."""

from __future__ import annotations

import logging
import re
from importlib import resources

import psycopg

from keyledger.services.storage.database import StorageError, describe

log = logging.getLogger("keyledger.migrations")

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_ID = 0x6B65796C  # advisory lock: one migrator at a time


def available_migrations() -> list[tuple[int, str, str]]:
    """The packaged migrations as ``(version, name, sql)``, sorted by version."""
    found = []
    for entry in resources.files(__package__ or "keyledger.services.storage").joinpath("schema").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def migrate(conninfo: str) -> list[str]:
    """Apply every migration not yet recorded; returns the names applied (idempotent).

    Runs in one transaction under an advisory lock, so processes starting together
    neither race nor see a half-migrated schema.
    """
    applied: list[str] = []
    try:
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                cur = await conn.execute("SELECT version FROM schema_migrations")
                done = {row[0] for row in await cur.fetchall()}
                for version, name, sql in available_migrations():
                    if version in done:
                        continue
                    await conn.execute(sql.encode())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name)
                    )
                    applied.append(name)
                    log.info("applied migration %s", name)
    except psycopg.Error as exc:
        raise StorageError(describe(exc)) from exc
    return applied
