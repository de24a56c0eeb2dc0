"""The shared rate limiter against real Postgres, with an injected clock."""

from __future__ import annotations

import asyncio
import random

import pytest
from psycopg_pool import AsyncConnectionPool

from keyledger.services.storage.database import Database
from keyledger.services.storage.rate_windows import RateWindows
from keyledger.services.verify.rate_limiter import RateLimiter

T = 1_800_000_000.0  # a window start (divisible by 60)


class Clock:
    def __init__(self) -> None:
        self.now = T

    def __call__(self) -> float:
        return self.now


async def test_window_edges_and_headers(pool: AsyncConnectionPool, db: Database) -> None:
    clock = Clock()
    limiter = RateLimiter(RateWindows(db), clock=clock, max_wait=60, lease_timeout=60)  # exact, however loaded
    decisions = [await limiter.hit("k1", 5) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    assert {d.reset for d in decisions} == {int(T) + 60}
    clock.now = T + 59.999
    late = await limiter.hit("k1", 5)
    assert not late.allowed and late.retry_after == 1 and late.headers()["Retry-After"] == "1"
    clock.now = T + 60
    fresh = await limiter.hit("k1", 5)
    assert fresh.allowed and fresh.remaining == 4 and fresh.reset == int(T) + 120
    assert (await limiter.hit("k2", 5)).remaining == 4  # keys are counted apart


@pytest.mark.parametrize("count", [2, 3])
async def test_replicas_share_one_budget_within_ten_percent(pool: AsyncConnectionPool, db: Database,
                                                            count: int) -> None:
    clock = Clock()
    # waits on leases as long as a loaded machine may need: what is tested is the sharing, not the timing
    replicas = [RateLimiter(RateWindows(db), clock=clock, max_wait=60, lease_timeout=60) for _ in range(count)]
    for limit in (100, 1000):
        rng = random.Random(limit)
        key = f"shared-{limit}"
        results = await asyncio.gather(*(replicas[rng.randrange(count)].hit(key, limit) for _ in range(limit * 3)))
        accepted = sum(d.allowed for d in results)
        assert accepted <= limit, accepted  # Postgres grants each window's budget once
        assert accepted >= limit * (1 - 0.05 * count), accepted  # at most one unspent 5 % slice per replica
        async with pool.connection() as conn:
            row = await (await conn.execute("SELECT used FROM rate_windows WHERE key_id = %s", (key,))).fetchone()
        assert row is not None and row[0] <= limit


async def test_old_windows_are_pruned(pool: AsyncConnectionPool, db: Database) -> None:
    clock = Clock()
    limiter = RateLimiter(RateWindows(db), clock=clock)
    await limiter.hit("k", 10)
    clock.now = T + 180
    await limiter.prune()
    async with pool.connection() as conn:
        assert await (await conn.execute("SELECT count(*) FROM rate_windows")).fetchone() == (0,)
