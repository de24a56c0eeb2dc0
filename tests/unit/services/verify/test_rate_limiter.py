"""The rate limiter's hot path: budget is leased ahead of need, a warm request never waits on the
store, and when the store does not answer the limit is enforced locally without waiting again."""

from __future__ import annotations

import asyncio

import pytest

from keyledger.services.storage.database import StorageError
from keyledger.services.verify.rate_limiter import RateLimiter

T = 1_800_000_000.0  # a window start (divisible by 60)


class Clock:
    def __init__(self, now: float = T) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Budget:
    """A stand-in for ``RateWindows`` (one replica's view of Postgres): grants leases from one budget
    per key and window, answering only when ``open`` is set, or failing when ``broken``."""

    def __init__(self) -> None:
        self.used: dict[tuple[str, int], int] = {}
        self.open = asyncio.Event()
        self.open.set()
        self.broken = False
        self.calls = 0

    async def lease(self, key_id: str, window_start: int, want: int, limit: int) -> tuple[int, int]:
        self.calls += 1
        await self.open.wait()
        if self.broken:
            raise StorageError("OperationalError: connection refused")
        before = self.used.get((key_id, window_start), 0)
        granted = max(0, min(want, limit - before))
        self.used[(key_id, window_start)] = before + granted
        return granted, before + granted

    async def prune(self, before: int) -> None:
        pass


def limiter(budget: Budget, clock: Clock, now: Clock | None = None) -> RateLimiter:
    return RateLimiter(budget, clock=clock, monotonic=now or Clock(0.0),  # type: ignore[arg-type]
                       max_wait=0.05, lease_timeout=0.2)


async def steady(rl: RateLimiter, clock: Clock, key: str, limit: int, count: int, every: float) -> list[bool]:
    """``count`` hits ``every`` seconds apart (the event loop runs between them, as between requests)."""
    allowed = []
    for _ in range(count):
        allowed.append((await rl.hit(key, limit)).allowed)
        clock.now += every
        for _ in range(5):
            await asyncio.sleep(0)
    return allowed


@pytest.mark.parametrize("limit", [100, 1_000, 10_000])
async def test_steady_traffic_never_waits_for_a_lease(limit: int) -> None:
    budget, clock = Budget(), Clock()
    rl = limiter(budget, clock)
    await rl.hit("warm", limit)  # the window's first request waits for the first lease
    assert rl.waits == 1
    allowed = await steady(rl, clock, "warm", limit, count=min(limit - 1, 600), every=30 / limit)
    assert all(allowed) and rl.waits == 1  # every other request found budget already leased
    assert budget.calls <= 2 + min(limit, 600) // max(1, limit // 50) + 1  # leases, not round trips per request


async def test_the_limit_holds_exactly_for_one_replica() -> None:
    budget, clock = Budget(), Clock()
    rl = limiter(budget, clock)
    allowed = await steady(rl, clock, "k", 100, count=150, every=0.01)
    assert allowed == [True] * 100 + [False] * 50
    assert budget.used[("k", int(T))] == 100


async def test_a_burst_while_no_lease_is_in_hand_waits_for_one_round_trip_only() -> None:
    budget, clock = Budget(), Clock()
    rl = limiter(budget, clock)
    decisions = await asyncio.gather(*(rl.hit("burst", 1_000) for _ in range(40)))
    assert all(d.allowed for d in decisions)
    assert budget.used[("burst", int(T))] >= 40


async def test_a_store_that_hangs_means_local_enforcement_without_waiting_again() -> None:
    budget, clock, now = Budget(), Clock(), Clock(0.0)
    rl = limiter(budget, clock, now)
    assert (await rl.hit("k", 100)).allowed  # leased normally
    budget.open.clear()  # Postgres hangs: a lease never comes back
    decisions = [await rl.hit("k", 100) for _ in range(150)]
    assert decisions[0].allowed  # waited max_wait for the late lease, then counted here: never a 429 for it
    assert [d.allowed for d in decisions] == [True] * 99 + [False] * 51  # the limit, counted here alone
    waits = rl.waits
    budget.broken, now.now = True, 1.0  # down (refused), in a new window, still within the offline period
    clock.now = T + 60
    assert [(await rl.hit("k", 3)).allowed for _ in range(4)] == [True, True, True, False]
    assert rl.waits == waits  # offline: no more waiting on the store
    budget.open.set()  # lets the hung lease end (with the refusal) before the test's loop closes
    await asyncio.sleep(0)


async def test_after_the_offline_period_the_store_is_asked_again() -> None:
    budget, clock, now = Budget(), Clock(), Clock(0.0)
    rl = limiter(budget, clock, now)
    budget.broken = True
    assert (await rl.hit("k", 10)).allowed  # refused lease: counted locally
    calls = budget.calls
    budget.broken, now.now, clock.now = False, 10.0, T + 60  # back; the offline period is over
    assert (await rl.hit("k", 10)).allowed
    assert budget.calls > calls and budget.used[("k", int(T) + 60)] >= 1
