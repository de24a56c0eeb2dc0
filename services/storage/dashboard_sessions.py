"""The ``dashboard_sessions`` table: signed-in dashboard sessions by the digest of their id, shared by every
API process (the admin key in it is wrapped under the session id, which only the browser's cookie holds)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from keyledger.services.storage.database import Database

_COLUMNS = "key_id, start, wrapped, csrf, created_at, seen_at"


class StoredSession(msgspec.Struct, frozen=True, kw_only=True):
    """A session as stored: never the key in the clear, never the session id."""

    key_id: str
    start: str  # the key's start at sign-in: a rotation since then ends the session
    wrapped: bytes  # nonce + AES-GCM(the admin key) under a key derived from the session id
    csrf: str
    created_at: datetime
    seen_at: datetime


class DashboardSessionTable:
    """Sessions in Postgres (see ``keyledger.services.http.dashboard.sessions``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, lookup: bytes, row: StoredSession) -> None:
        async with self._db._connection() as conn:
            await conn.execute(f"INSERT INTO dashboard_sessions (lookup, {_COLUMNS}) "
                               "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                               (lookup, row.key_id, row.start, row.wrapped, row.csrf, row.created_at, row.seen_at))

    async def find(self, lookup: bytes) -> StoredSession | None:
        async with self._db._connection() as conn:
            cur = await conn.execute(f"SELECT {_COLUMNS} FROM dashboard_sessions WHERE lookup = %s", (lookup,))
            found = await cur.fetchone()
        if found is None:
            return None
        key_id, start, wrapped, csrf, created_at, seen_at = found
        return StoredSession(key_id=key_id, start=start, wrapped=bytes(wrapped), csrf=csrf, created_at=created_at,
                             seen_at=seen_at)

    async def touch(self, lookup: bytes, seen_at: datetime) -> None:
        async with self._db._connection() as conn:
            await conn.execute("UPDATE dashboard_sessions SET seen_at = %s WHERE lookup = %s", (seen_at, lookup))

    async def delete(self, lookup: bytes) -> None:
        async with self._db._connection() as conn:
            await conn.execute("DELETE FROM dashboard_sessions WHERE lookup = %s", (lookup,))

    async def delete_expired(self, seen_before: datetime, created_before: datetime) -> int:
        async with self._db._connection() as conn:
            cur = await conn.execute("DELETE FROM dashboard_sessions WHERE seen_at < %s OR created_at < %s",
                                     (seen_before, created_before))
            return cur.rowcount
