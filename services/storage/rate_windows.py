"""``rate_windows``: each key's count per fixed window, shared by every replica (budget is leased)."""

from __future__ import annotations

from keyledger.services.storage.database import Database


class RateWindows:
    """Leases slices of a key's window budget and forgets ended windows."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def lease(self, key_id: str, window_start: int, want: int, limit: int) -> tuple[int, int]:
        """Take up to ``want`` of the window's remaining budget: ``(granted, used across replicas)``."""
        async with self._db._connection() as conn:
            cur = await conn.execute("SELECT granted, window_used FROM keyledger_rate_lease(%s, %s, %s, %s)",
                                     (key_id, window_start, want, limit))
            row = await cur.fetchone()
        return (int(row[0]), int(row[1])) if row else (0, limit)

    async def prune(self, before: int) -> None:
        """Delete windows that started before ``before`` (Unix seconds)."""
        async with self._db._connection() as conn:
            await conn.execute("DELETE FROM rate_windows WHERE window_start < %s", (before,))
