"""Usage credits spent exactly across replicas: each process leases slices of a pool from Postgres
(``credit_pools``) and spends them in memory, so a warm verify of a key with credits costs a dict lookup and
two integer updates.

Exact both ways:

* never more than the credits: Postgres leases out at most what is ``available`` (``keyledger_credit_lease``),
  and a process spends only what it holds; a verify that finds its process's slice short waits, at most
  ``max_wait``, for one more lease, and is refused (``USAGE_EXCEEDED``) when Postgres has too few left too;
* none lost: a lease ends (``keyledger_credit_release``) with what it spent, and the rest returns to the pool,
  when the pool was not spent from for ``idle_seconds``, when a refill period or a new setting begins, and
  when the process stops (:meth:`CreditLedger.close`). Only a process killed outright keeps its slice: that
  slice (at most 5 % of what was left when it was leased) is counted as spent, never granted twice.

A refill resets a pool at the period boundary (``domain.credits``): the first lease of the new period opens it,
so the balance is right whether or not the key was used at the boundary; the pool's readers
(:func:`pool_balance`) apply the same rule. Postgres unreachable: only what a process already holds is spent;
past it the answer is ``UNAVAILABLE`` (never a grant that could not be counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from datetime import UTC, datetime
from typing import Protocol

import msgspec

from keyledger.domain.credits import Credits, next_boundary, opening_balance, period_start
from keyledger.services.periodic import every
from keyledger.services.storage.credit_pools import PoolState
from keyledger.services.storage.database import StorageError

log = logging.getLogger("keyledger.credits")

LEASE_FRACTION = 0.05  # of what was available, per lease
MAX_LEASE = 1000
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)
RETRY_EXHAUSTED_SECONDS = 1.0  # a process refused for too few credits asks Postgres again at most this often


class Pools(Protocol):
    """Where pools live (``services.storage.credit_pools.CreditPools``; tests pass an in-memory one)."""

    async def lease(self, pool_id: str, holder: str, setting: int, period: int, opening: int, refill: int | None,
                    want: int) -> tuple[int, int]: ...

    async def release(self, pool_id: str, holder: str, setting: int, period: int, spent: int) -> int: ...

    async def read(self, pool_ids: list[str]) -> dict[str, PoolState]: ...


class CreditDecision(msgspec.Struct, frozen=True, gc=False):
    """Whether the verify may spend, what it spent and what is left as far as this process knows (what
    Postgres had at the last lease plus this process's unspent slice). ``unavailable``: Postgres could not
    lease and the slice was short."""

    allowed: bool
    spent: int
    remaining: int
    unavailable: bool = False


class _Pool(msgspec.Struct, kw_only=True):
    local_id: str  # a key's id, or an owner pool's stored id
    pool_id: str  # as stored
    setting: int
    period: int
    period_until: datetime  # the next refill boundary (datetime.max: none)
    opening: int
    refill: int | None
    leased: int = 0
    spent: int = 0
    available: int  # in Postgres at the last lease (our estimate of what no process holds)
    exhausted_at: float = -math.inf  # when Postgres last had too few (monotonic)
    idle_mark: int = -1  # ``spent`` when the idle check last looked (unchanged at the next look: idle)
    refill_below: int = 0  # lease more ahead of need once fewer than this are held (half the last lease)
    synced: bool = False  # a lease answered: ``available`` is Postgres's
    closed: bool = False
    failed: bool = False  # the last lease failed (Postgres away or too slow)
    task: asyncio.Task[None] | None = None


def stored_id(local_id: str) -> str:
    """A pool's id in Postgres: ``key:<key id>`` for a key's credits (named by the bare key id here, which
    never holds a colon), else the id as it is (``owner:...``)."""
    return local_id if ":" in local_id else f"key:{local_id}"


def period_bounds(credits: Credits, set_at: datetime, now: datetime) -> tuple[int, datetime, int]:
    """The period ``now`` falls in: its start (Unix seconds), its end (the next boundary, or the end of
    time) and its opening balance."""
    start = period_start(credits.refill, set_at, now)
    end = next_boundary(credits.refill, start)
    return int(start.timestamp()), end or _END_OF_TIME, opening_balance(credits, set_at, start)


class Balance(msgspec.Struct, frozen=True, gc=False):
    """A pool as shown: what no replica holds of it now, and when it was last refilled."""

    remaining: int
    refilled_at: datetime | None


async def balances(pools: Pools, settings: dict[str, tuple[int, Credits, datetime]], now: datetime,
                   held: CreditLedger | None = None) -> dict[str, Balance]:
    """Each pool's balance (``settings``: pool id → its setting's version, credits and time): the opening
    balance of the current period when the stored one is older (a refill due at a boundary shows whether
    or not the key was used since), plus what ``held`` (this process's ledger) leased and did not spend."""
    stored = await pools.read(list(settings)) if settings else {}
    shown: dict[str, Balance] = {}
    for pool_id, (setting, credits, set_at) in settings.items():
        period, _, opening = period_bounds(credits, set_at, now)
        found = stored.get(pool_id)
        if found is None or (found.setting, found.period) < (setting, period):
            # the stored pool is of an earlier period of this setting (a refill is due at the boundary, shown
            # whether or not the key was used since) or of an earlier setting (a new balance: no refill yet)
            refilled = None
            if found is not None and found.setting == setting:
                refilled = datetime.fromtimestamp(period, UTC) if period > found.period else found.refilled_at
            shown[pool_id] = Balance(opening, refilled)
        else:
            mine = held.held(pool_id, setting, period) if held is not None else 0
            shown[pool_id] = Balance(found.available + mine, found.refilled_at)
    return shown


class CreditLedger:
    """This process's leases of credit pools; :meth:`spend` decides one verify."""

    def __init__(self, pools: Pools, *, holder: str | None = None, max_wait: float = 1.0,
                 idle_seconds: float = 5.0) -> None:
        self.pools, self.holder = pools, holder or uuid.uuid4().hex
        self._max_wait, self._idle = max_wait, idle_seconds
        self._pools: dict[str, _Pool] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.leases = 0  # leases asked of Postgres

    def spend_held(self, pool_id: str, setting: int, now: datetime, cost: int) -> CreditDecision | None:
        """The warm path, without an await: spend ``cost`` from what this process holds of the pool's current
        setting and period; None when that needs Postgres (no lease yet, too few held, a new period or
        setting): then :meth:`spend`."""
        pool = self._pools.get(pool_id)
        if pool is None or pool.setting != setting or now >= pool.period_until:
            return None
        held = pool.leased - pool.spent - cost
        if held < 0 or not pool.synced:
            return None
        pool.spent += cost
        if held < pool.refill_below and pool.task is None and pool.available > 0:
            self._lease_task(pool, 0)  # ahead of need: the next verifies find credits here
        return CreditDecision(True, cost, pool.available + held)

    async def spend(self, pool_id: str, setting: int, credits: Credits, set_at: datetime, now: datetime,
                    cost: int) -> CreditDecision:
        """Spend ``cost`` of the pool (a key's or an owner's credits as set at version ``setting``) at
        ``now``, or refuse when too few are left; 0 checks without spending."""
        pool = self._pools.get(pool_id)
        if pool is None or pool.setting != setting or now >= pool.period_until:
            pool = self._open(pool_id, setting, credits, set_at, now)
        if pool.leased - pool.spent < cost or not pool.synced:  # else the warm path: no await at all
            while pool.leased - pool.spent < cost or not pool.synced:
                if pool.closed:  # released meanwhile (idle, new period): continue on a fresh lease
                    pool = self._pools.get(pool_id) or self._open(pool_id, setting, credits, set_at, now)
                    continue
                if pool.synced and time.monotonic() - pool.exhausted_at < RETRY_EXHAUSTED_SECONDS:
                    break  # Postgres had too few a moment ago: refuse without asking again
                try:
                    await asyncio.wait_for(asyncio.shield(self._lease_task(pool, cost)), self._max_wait)
                except TimeoutError:
                    log.warning("credits of %s: no lease within %.1f s", pool_id, self._max_wait)
                    pool.failed = True
                if pool.failed and pool.leased - pool.spent < cost:
                    pool.failed = False
                    return CreditDecision(False, 0, pool.available + pool.leased - pool.spent, True)
                pool.failed = False
        held = pool.leased - pool.spent
        if held < cost:
            return CreditDecision(False, 0, pool.available + held)
        pool.spent += cost
        held -= cost
        if held < pool.refill_below and pool.task is None and pool.available > 0:
            self._lease_task(pool, 0)  # ahead of need: the next verifies find credits here
        return CreditDecision(True, cost, pool.available + held)

    def refund(self, pool_id: str, setting: int, spent: CreditDecision) -> CreditDecision:
        """Give back what ``spent`` took from the pool (a verify its owner's limits refused after the key's
        credits were spent); the decision as it stands now, nothing spent."""
        pool = self._pools.get(pool_id)
        if pool is not None and not pool.closed and pool.setting == setting:
            pool.spent -= spent.spent
            return CreditDecision(True, 0, spent.remaining + spent.spent)
        return spent

    def held(self, pool_id: str, setting: int, period: int) -> int:
        """What this process leased of the pool's ``(setting, period)`` and did not spend (``pool_id`` as
        stored: ``key:<key id>``)."""
        pool = self._pools.get(pool_id.removeprefix("key:"))
        if pool is None or pool.closed or (pool.setting, pool.period) != (setting, period):
            return 0
        return pool.leased - pool.spent

    def _open(self, pool_id: str, setting: int, credits: Credits, set_at: datetime, now: datetime) -> _Pool:
        old = self._pools.get(pool_id)
        if old is not None:
            self._close_later(old)
        period, end, opening = period_bounds(credits, set_at, now)
        refill = credits.refill.amount if credits.refill is not None else None
        pool = self._pools[pool_id] = _Pool(local_id=pool_id, pool_id=stored_id(pool_id), setting=setting,
                                            period=period, period_until=end, opening=opening, refill=refill,
                                            available=opening)
        return pool

    def _lease_size(self, pool: _Pool) -> int:
        return max(1, min(MAX_LEASE, int(pool.available * LEASE_FRACTION)))

    def _lease_task(self, pool: _Pool, need: int) -> asyncio.Task[None]:
        if pool.task is None:
            pool.task = asyncio.create_task(self._lease(pool, need))
        return pool.task

    async def _lease(self, pool: _Pool, need: int) -> None:
        try:
            want = max(need - (pool.leased - pool.spent), self._lease_size(pool))
            self.leases += 1
            granted, available = await self.pools.lease(pool.pool_id, self.holder, pool.setting, pool.period,
                                                         pool.opening, pool.refill, want)
            pool.leased += granted
            pool.available, pool.synced = available, True
            pool.refill_below = max(1, want // 2)
            if granted < want:
                pool.exhausted_at = time.monotonic()
        except StorageError as exc:  # a background lease too: the verify that needs it answers UNAVAILABLE
            log.warning("credits of %s could not be leased: %s", pool.pool_id, exc)
            pool.failed = True
        finally:
            pool.task = None

    def _close_later(self, pool: _Pool) -> None:
        pool.closed = True
        if self._pools.get(pool.local_id) is pool:
            del self._pools[pool.local_id]
        task = asyncio.create_task(self._release(pool))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _release(self, pool: _Pool) -> None:
        """End the pool's lease (after any lease in flight lands): what it did not spend returns."""
        pool.closed = True
        if pool.task is not None:
            with contextlib.suppress(Exception):
                await pool.task
        if not pool.synced:  # never leased: nothing to return
            return
        try:
            await self.pools.release(pool.pool_id, self.holder, pool.setting, pool.period, pool.spent)
        except StorageError as exc:
            log.warning("credits of %s leased here could not be returned: %s", pool.pool_id, exc)

    async def release_idle(self) -> None:
        """Return what pools not spent from since the last call (every ``idle_seconds``) hold."""
        for pool in list(self._pools.values()):
            if pool.task is None and pool.synced and pool.spent == pool.idle_mark:
                self._close_later(pool)
            else:
                pool.idle_mark = pool.spent
        await asyncio.gather(*self._closing, return_exceptions=True)

    async def close(self) -> None:
        """Return everything this process holds (at shutdown)."""
        for pool in list(self._pools.values()):
            self._close_later(pool)
        await asyncio.gather(*self._closing, return_exceptions=True)

    async def run(self, stop: asyncio.Event) -> None:
        """Release idle leases until ``stop``, then everything."""
        try:
            await every(stop, self._idle, self.release_idle, log, "releasing idle credit leases",
                        retry=(StorageError,))
        finally:
            await self.close()

