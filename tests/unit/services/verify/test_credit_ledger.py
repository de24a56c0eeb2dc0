"""The credit ledger against an in-memory pool that keeps Postgres's rules (``0017_credits.sql``): several
ledgers (replicas) spending one pool concurrently never grant more than it holds, and releasing their
leases loses nothing; a refill period or a new setting opens a new balance."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

from keyledger.domain.credits import Credits, Refill
from keyledger.services.storage.credit_pools import PoolState
from keyledger.services.storage.database import StorageError
from keyledger.services.verify.credits import CreditLedger, balances

SET_AT = datetime(2030, 1, 1, 12, tzinfo=UTC)


class MemoryPools:
    """One pool store as the SQL functions keep it; each call first yields to the event loop a seeded random
    number of times, so replicas interleave (no wall-clock delay)."""

    def __init__(self) -> None:
        self._rng = random.Random(25)
        self.pools: dict[str, list[int]] = {}  # pool → [setting, period, available]
        self.leases: dict[tuple[str, str], list[int]] = {}  # (pool, holder) → [setting, period, amount]

    async def _interleave(self) -> None:
        for _ in range(self._rng.randrange(4)):
            await asyncio.sleep(0)

    def _open(self, pool_id: str, setting: int, period: int, opening: int) -> list[int]:
        pool = self.pools.setdefault(pool_id, [setting, period, opening])
        if (pool[0], pool[1]) < (setting, period):
            pool[:] = [setting, period, opening]
            self.leases = {k: v for k, v in self.leases.items() if k[0] != pool_id}
        return pool

    async def lease(self, pool_id: str, holder: str, setting: int, period: int, opening: int, refill: int | None,
                    want: int) -> tuple[int, int]:
        await self._interleave()
        pool = self._open(pool_id, setting, period, opening)
        if (pool[0], pool[1]) != (setting, period):
            return 0, 0
        granted = min(want, pool[2])
        pool[2] -= granted
        lease = self.leases.setdefault((pool_id, holder), [setting, period, 0])
        lease[2] += granted
        return granted, pool[2]

    async def release(self, pool_id: str, holder: str, setting: int, period: int, spent: int) -> int:
        await self._interleave()
        lease = self.leases.get((pool_id, holder))
        pool = self.pools[pool_id]
        if lease is not None and (lease[0], lease[1]) == (setting, period):
            del self.leases[(pool_id, holder)]
            if (pool[0], pool[1]) == (setting, period):
                pool[2] += max(0, lease[2] - spent)
        return pool[2]

    async def read(self, pool_ids: list[str]) -> dict[str, PoolState]:
        return {p: PoolState(setting=v[0], period=v[1], available=v[2],
                             leased=sum(a for (q, _), (_, _, a) in self.leases.items() if q == p))
                for p, v in self.pools.items() if p in pool_ids}


def test_replicas_never_grant_more_than_the_credits_and_lose_none_once_leases_end() -> None:
    async def scenario() -> tuple[int, int]:
        pools = MemoryPools()
        replicas = [CreditLedger(pools) for _ in range(3)]
        credits = Credits(remaining=500)
        now = SET_AT + timedelta(minutes=1)

        async def spend(ledger: CreditLedger, cost: int) -> int:
            decision = await ledger.spend("key:k", 2, credits, SET_AT, now, cost)
            return decision.spent

        spent = await asyncio.gather(*(spend(replicas[i % 3], 1 + i % 3) for i in range(600)))
        for ledger in replicas:
            await ledger.close()
        return sum(spent), pools.pools["key:k"][2]

    granted, left = asyncio.run(scenario())
    assert granted <= 500
    assert granted + left == 500  # nothing lost once every lease ended


def test_a_refill_period_and_a_new_setting_each_open_a_new_balance() -> None:
    async def scenario() -> list[object]:
        pools = MemoryPools()
        ledger = CreditLedger(pools)
        credits = Credits(remaining=2, refill=Refill(amount=5, interval="daily"))
        day1, day2 = SET_AT + timedelta(hours=1), SET_AT + timedelta(days=1)
        seen: list[object] = [(await ledger.spend("key:k", 2, credits, SET_AT, day1, 1)).remaining for _ in range(3)]
        seen.append((await ledger.spend("key:k", 2, credits, SET_AT, day1, 1)).allowed)
        shown = await balances(pools, {"key:k": (2, credits, SET_AT)}, day2)  # due at the boundary, unused yet
        seen.append(shown["key:k"].remaining)
        seen.append((await ledger.spend("key:k", 2, credits, SET_AT, day2, 1)).remaining)
        seen.append((await ledger.spend("key:k", 3, Credits(remaining=1), day2, day2, 1)).remaining)
        await ledger.close()
        return seen

    assert asyncio.run(scenario()) == [1, 0, 0, False, 5, 4, 0]


def test_with_postgres_away_only_what_is_held_is_spent_then_unavailable() -> None:
    class GoesAway(MemoryPools):
        away = False

        async def lease(self, pool_id: str, holder: str, setting: int, period: int, opening: int,
                        refill: int | None, want: int) -> tuple[int, int]:
            if self.away:
                raise StorageError("connection refused")
            return await super().lease(pool_id, holder, setting, period, opening, refill, want)

    async def scenario() -> list[tuple[bool, bool]]:
        pools = GoesAway()
        ledger = CreditLedger(pools)
        credits, now = Credits(remaining=100), SET_AT + timedelta(minutes=1)
        first = await ledger.spend("key:k", 2, credits, SET_AT, now, 1)  # leases 5 (5 % of 100)
        pools.away = True
        seen = [(first.allowed, first.unavailable)]
        for _ in range(5):
            decision = await ledger.spend("key:k", 2, credits, SET_AT, now, 1)
            seen.append((decision.allowed, decision.unavailable))
        return seen

    assert asyncio.run(scenario()) == [(True, False)] * 5 + [(False, True)]
