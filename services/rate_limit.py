"""Per-key fixed-window rate limits shared across replicas by leasing budget from Postgres.

Each process takes small slices ("leases") of a key's budget for the current minute and
spends them locally: a request costs a dict update, and only every ``lease``-th one per
key waits for a Postgres round trip. The sum of all leases never exceeds the limit, and
at most one unused lease per replica is left over, so with the default 2% lease two
replicas accept between 96% and 100% of the limit.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Callable

import msgspec
import psycopg
from psycopg_pool import AsyncConnectionPool

from domain.rate import WINDOW_SECONDS, window_start

log = logging.getLogger("keyledger.rate_limit")
EpochClock = Callable[[], float]


class RateDecision(msgspec.Struct, frozen=True, kw_only=True):
    """Allowed or not, with the numbers for ``X-RateLimit-*`` (``reset`` in Unix seconds)."""

    allowed: bool
    limit: int
    remaining: int
    reset: int
    retry_after: int = 0  # seconds until the window resets, when refused

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-*`` headers, plus ``Retry-After`` (seconds) when refused."""
        headers = {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining),
                   "X-RateLimit-Reset": str(self.reset)}
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers

    def body(self) -> dict[str, int]:
        """The numbers as the verify response's ``ratelimit`` object."""
        return {"limit": self.limit, "remaining": self.remaining, "reset": self.reset}


def refused(limit: int, reset: int, now: float) -> RateDecision:
    """A refusing decision for the window ending at ``reset``."""
    return RateDecision(allowed=False, limit=limit, remaining=0, reset=reset,
                        retry_after=max(1, math.ceil(reset - now)))


class _Window(msgspec.Struct, kw_only=True):
    start: int
    leased: int = 0  # budget this process holds for the window
    used: int = 0  # of which spent
    window_used: int = 0  # the window's total across replicas at our last lease
    exhausted: bool = False  # no budget left at ``limit``
    limit: int = 0


class RateLimiter:
    """Counts requests per key and window; ``hit`` says whether one more is allowed."""

    def __init__(self, pool: AsyncConnectionPool, clock: EpochClock = time.time, lease_fraction: float = 0.02,
                 window: int = WINDOW_SECONDS) -> None:
        self._pool, self._clock, self._fraction, self._length = pool, clock, lease_fraction, window
        self._windows: dict[str, _Window] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def now(self) -> float:
        """The limiter's clock (Unix seconds)."""
        return self._clock()

    async def hit(self, key_id: str, limit: int) -> RateDecision:
        """Count one request of ``key_id`` against ``limit`` per window."""
        window = self._window(key_id)
        if window.limit != limit:  # the key's limit changed: the budget may have grown
            window.limit, window.exhausted = limit, False
        if window.used >= window.leased and not window.exhausted:
            lock = self._locks.setdefault(key_id, asyncio.Lock())
            async with lock:
                window = self._window(key_id)
                if window.used >= window.leased and not window.exhausted:
                    await self._lease(key_id, window, limit)
        reset = window.start + self._length
        if window.used >= window.leased:
            return refused(limit, reset, self._clock())
        window.used += 1
        remaining = max(0, limit - window.window_used + (window.leased - window.used))
        return RateDecision(allowed=True, limit=limit, remaining=remaining, reset=reset)

    def _window(self, key_id: str) -> _Window:
        start = window_start(self._clock(), self._length)
        window = self._windows.get(key_id)
        if window is None or window.start != start:
            window = self._windows[key_id] = _Window(start=start)
        return window

    async def _lease(self, key_id: str, window: _Window, limit: int) -> None:
        want = max(1, int(limit * self._fraction))
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT granted, window_used FROM keyledger_rate_lease(%s, %s, %s, %s)",
                                     (key_id, window.start, want, limit))
            row = await cur.fetchone()
        granted, window.window_used = (int(row[0]), int(row[1])) if row else (0, limit)
        window.leased += granted
        window.exhausted = granted < want and window.window_used >= limit

    async def prune(self) -> None:
        """Forget windows that have ended, here and in Postgres."""
        current = window_start(self._clock(), self._length)
        self._windows = {k: w for k, w in self._windows.items() if w.start >= current}
        self._locks = {k: lock for k, lock in self._locks.items() if k in self._windows or lock.locked()}
        async with self._pool.connection() as conn:
            await conn.execute("DELETE FROM rate_windows WHERE window_start < %s", (current - self._length,))

    async def run(self, stop: asyncio.Event) -> None:
        """Prune once a window until ``stop``."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self._length)
            except asyncio.TimeoutError:
                pass
            try:
                await self.prune()
            except psycopg.Error as exc:
                log.warning("pruning rate windows failed (%s)", type(exc).__name__)


class FailureThrottle:
    """Counts failures per client (IP) in fixed windows and blocks a client past ``limit``."""

    def __init__(self, limit: int, clock: EpochClock = time.time, window: int = WINDOW_SECONDS) -> None:
        self._limit, self._clock, self._length = limit, clock, window
        self._start = 0
        self._counts: dict[str, int] = {}

    def _current(self) -> dict[str, int]:
        start = window_start(self._clock(), self._length)
        if start != self._start:  # a new window forgets every client at once
            self._start, self._counts = start, {}
        return self._counts

    def record(self, client: str) -> None:
        """Count one failure of ``client``."""
        counts = self._current()
        counts[client] = counts.get(client, 0) + 1

    def forgive(self, client: str) -> None:
        """Take back one failure counted for ``client`` (it turned out to be a success)."""
        counts = self._current()
        if counts.get(client, 0) > 0:
            counts[client] -= 1

    def refusal(self, client: str) -> RateDecision | None:
        """A refusing decision if ``client`` failed ``limit`` times this window, else None."""
        if self._current().get(client, 0) < self._limit:
            return None
        return refused(self._limit, self._start + self._length, self._clock())
