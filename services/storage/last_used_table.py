"""``key_last_used``: when each key was last used successfully (written in debounced batches)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from keyledger.services.storage.database import Database


class LastUsedTable:
    """Last-used times; a stored time never moves backwards."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def save(self, uses: Mapping[str, datetime]) -> None:
        """Record ``key id → time`` (keeping the later of stored and given)."""
        async with self._db._connection() as conn, conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO key_last_used (key_id, last_used_at) VALUES (%s, %s) ON CONFLICT (key_id) "
                "DO UPDATE SET last_used_at = greatest(key_last_used.last_used_at, excluded.last_used_at)",
                list(uses.items()))

    async def load(self, key_ids: Iterable[str]) -> dict[str, datetime]:
        """The stored times of ``key_ids`` (absent when never used)."""
        async with self._db._connection() as conn:
            cur = await conn.execute("SELECT key_id, last_used_at FROM key_last_used WHERE key_id = ANY(%s)",
                                     (list(key_ids),))
            return dict(await cur.fetchall())
