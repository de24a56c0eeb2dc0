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
import time

import msgspec

from keyledger.domain.rate import WINDOW_SECONDS, window_start
from keyledger.services.periodic import every
from keyledger.services.storage.rate_windows import RateWindows
from keyledger.services.verify.throttles import EpochClock, RateDecision, refused

log = logging.getLogger("keyledger.rate_limit")


class _Window(msgspec.Struct, kw_only=True):
    start: int
    leased: int = 0  # budget this process holds for the window
    used: int = 0  # of which spent
    window_used: int = 0  # the window's total across replicas at our last lease
    exhausted: bool = False  # no budget left at ``limit``
    limit: int = 0


class RateLimiter:
    """Counts requests per key and window; ``hit`` says whether one more is allowed."""

    def __init__(self, windows: RateWindows, clock: EpochClock = time.time, lease_fraction: float = 0.02,
                 window: int = WINDOW_SECONDS) -> None:
        self._store, self._clock, self._fraction, self._length = windows, clock, lease_fraction, window
        self._windows: dict[str, _Window] = {}
        self._locks: dict[str, asyncio.Lock] = {}

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
        granted, window.window_used = await self._store.lease(key_id, window.start, want, limit)
        window.leased += granted
        window.exhausted = granted < want and window.window_used >= limit

    async def prune(self) -> None:
        """Forget windows that have ended, here and in Postgres."""
        current = window_start(self._clock(), self._length)
        self._windows = {k: w for k, w in self._windows.items() if w.start >= current}
        self._locks = {k: lock for k, lock in self._locks.items() if k in self._windows or lock.locked()}
        await self._store.prune(current - self._length)

    async def run(self, stop: asyncio.Event) -> None:
        """Prune once a window until ``stop``."""
        await every(stop, self._length, self.prune, log, "pruning rate windows")
