"""``credit_pools``: each key's (and owner's) credits, leased to API replicas exactly (migration 0017)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from keyledger.services.storage.database import Database


class PoolState(msgspec.Struct, frozen=True, kw_only=True):
    """A pool as stored: its setting and period, what no replica holds, and the last refill."""

    setting: int
    period: int
    available: int
    leased: int
    refilled_at: datetime | None = None


class CreditPools:
    """Leases, releases and reads credit pools (all of it in the ``keyledger_credit_*`` functions)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def lease(self, pool_id: str, holder: str, setting: int, period: int, opening: int, refill: int | None,
                    want: int) -> tuple[int, int]:
        """Take up to ``want`` credits of the pool's ``(setting, period)`` (opening it with ``opening``
        when the pool is older; ``refill``: the refill amount, for the refill record): ``(granted,
        available after it)``."""
        async with self._db._connection() as conn:
            cur = await conn.execute("SELECT granted, available "
                                     "FROM keyledger_credit_lease(%s, %s, %s, %s, %s, %s, %s)",
                                     (pool_id, holder, setting, period, opening, refill, want))
            row = await cur.fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def release(self, pool_id: str, holder: str, setting: int, period: int, spent: int) -> int:
        """End ``holder``'s lease, of which ``spent`` was spent (the rest returns): what is available after."""
        async with self._db._connection() as conn:
            cur = await conn.execute("SELECT keyledger_credit_release(%s, %s, %s, %s, %s)",
                                     (pool_id, holder, setting, period, spent))
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def read(self, pool_ids: list[str]) -> dict[str, PoolState]:
        """The pools as stored, by id (a pool before its first lease is missing)."""
        async with self._db._connection() as conn:
            cur = await conn.execute(
                "SELECT p.pool_id, p.setting, p.period, p.available, "
                "coalesce((SELECT sum(amount) FROM credit_leases l WHERE l.pool_id = p.pool_id), 0), "
                "(SELECT max(refilled_at) FROM credit_refills r WHERE r.pool_id = p.pool_id) "
                "FROM credit_pools p WHERE p.pool_id = ANY(%s)", (pool_ids,))
            rows = await cur.fetchall()
        return {row[0]: PoolState(setting=int(row[1]), period=int(row[2]), available=int(row[3]),
                                  leased=int(row[4]), refilled_at=row[5]) for row in rows}
