"""Per-key fixed-window rate limits shared across replicas by leasing budget from Postgres, off the hot path.

Each process takes slices ("leases") of a key's budget for the current window and spends them
locally: a request costs a dict update. A lease is refilled in the background once half of it is
spent, and is sized from the key's observed rate (at least 2 % of the limit, enough for about half
a second of its traffic, at most 5 % of the limit), so a key with steady traffic never waits on
Postgres, whatever its limit. Only a request that finds its process's slice empty waits, at most
``max_wait``, for the refill in flight: the first request of a key in a window, or a burst larger than
half a lease within one Postgres round trip.

The guarantee across replicas: Postgres grants each window's budget at most once (the
``keyledger_rate_lease`` function), so all replicas together never accept more than the limit.
What they may fall short by is the unspent slices at the window's end: at most 5 % of the limit per
replica (2 replicas accept at least 90 %). Postgres traffic is a lease per key per half-lease of its
traffic, independent of request rate once leases are rate-sized.

If a lease fails, or a request waits ``max_wait`` (1 s) for it (Postgres down or hung: a pool that
lost its connections makes a caller wait for one, rather than fail at once), the process stops asking
for ``offline_seconds`` (5 s) and enforces each window's limit locally: every replica then counts
against the whole limit on its own (N replicas accept up to N times the limit during an outage), and
warm verifies keep their usual latency. The request that waited is decided locally too (never a 429
for a store that is merely slow or gone).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

import msgspec

from keyledger.domain.rate import WINDOW_SECONDS, window_start
from keyledger.services.periodic import every
from keyledger.services.storage.database import StorageError
from keyledger.services.storage.rate_windows import RateWindows
from keyledger.services.verify.throttles import EpochClock, RateDecision, refused

log = logging.getLogger("keyledger.rate_limit")

MIN_FRACTION, MAX_FRACTION = 0.02, 0.05  # of the limit, per lease
LOOKAHEAD_SECONDS = 0.5  # a lease covers about this much of the key's observed traffic


class _Window(msgspec.Struct, kw_only=True):
    start: int
    end: int  # the next window's start
    limit: int
    leased: int = 0  # budget this process holds for the window
    used: int = 0  # requests this process accepted in the window
    window_used: int = 0  # the window's total granted across replicas at our last lease
    exhausted: bool = False  # Postgres has no budget left at ``limit``
    local: bool = False  # Postgres did not answer: this window is counted here alone, against the limit
    refill_below: int = 1  # refill once no more than this much of the lease is left (half the last one asked)
    refill: asyncio.Task[None] | None = None


class RateLimiter:
    """Counts requests per key and window; ``hit`` says whether one more is allowed."""

    def __init__(self, windows: RateWindows, clock: EpochClock = time.time, window: int = WINDOW_SECONDS,
                 max_wait: float = 1.0, lease_timeout: float = 1.0, offline_seconds: float = 5.0,
                 monotonic: EpochClock = time.monotonic) -> None:
        self._store, self._clock, self._length = windows, clock, window
        self._max_wait, self._lease_timeout = max_wait, lease_timeout
        self._offline_seconds, self._monotonic = offline_seconds, monotonic
        self._windows: dict[str, _Window] = {}
        self._offline_until = -math.inf
        self.waits = 0  # requests that waited for a lease (the rest were decided without Postgres)
        self.leases = 0  # leases asked of Postgres

    async def hit(self, key_id: str, limit: int) -> RateDecision:
        """Count one request of ``key_id`` against ``limit`` per window."""
        now = self._clock()
        window = self._windows.get(key_id)
        if window is None or not window.start <= now < window.end or window.limit != limit:
            window = self._window(key_id, limit, now)
        if window.used >= window.leased and not window.exhausted and not window.local:
            await self._wait_for_lease(key_id, window)
            now = self._clock()
        reset = window.end
        if window.local:
            if window.used >= limit:
                return refused(limit, reset, now)
            window.used += 1
            return RateDecision(allowed=True, limit=limit, remaining=limit - window.used, reset=reset)
        if window.used >= window.leased:
            if not window.exhausted:  # the lease is late: budget may remain, so retry soon, not at the window's end
                return RateDecision(allowed=False, limit=limit, remaining=0, reset=reset, retry_after=1)
            return refused(limit, reset, now)
        window.used += 1
        if window.leased - window.used <= window.refill_below:
            self._start_refill(key_id, window)  # ahead of need: the next requests find budget here
        remaining = max(0, limit - window.window_used + (window.leased - window.used))
        return RateDecision(allowed=True, limit=limit, remaining=remaining, reset=reset)

    def _window(self, key_id: str, limit: int, now: float) -> _Window:
        start = window_start(now, self._length)
        window = self._windows.get(key_id)
        if window is None or window.start != start:
            window = self._windows[key_id] = _Window(start=start, end=start + self._length, limit=limit)
        elif window.limit != limit:  # the key's limit changed: the budget may have grown
            window.limit, window.exhausted = limit, False
        return window

    def _lease_size(self, window: _Window) -> int:
        elapsed = max(1.0, self._clock() - window.start)
        by_rate = math.ceil(window.used / elapsed * LOOKAHEAD_SECONDS)
        return max(1, int(window.limit * MIN_FRACTION), min(by_rate, int(window.limit * MAX_FRACTION)))

    def _start_refill(self, key_id: str, window: _Window) -> None:
        if window.refill is None and not window.exhausted and not window.local and not self._offline():
            window.refill = asyncio.create_task(self._lease(key_id, window))

    async def _wait_for_lease(self, key_id: str, window: _Window) -> None:
        """Wait (at most ``max_wait``) for budget; when Postgres is known to be away (a lease failed or
        took longer than ``lease_timeout``), or this wait outlasts ``max_wait``, this window is counted
        locally instead."""
        if self._offline():
            window.local = True
            return
        self._start_refill(key_id, window)
        self.waits += 1
        while window.used >= window.leased and not window.exhausted and not window.local:
            task = window.refill
            if task is None:
                self._start_refill(key_id, window)
                task = window.refill
                if task is None:
                    break
            try:
                await asyncio.wait_for(asyncio.shield(task), self._max_wait)
            except TimeoutError:
                self._go_offline(f"no lease within {self._max_wait:.1f} s")
                window.local = True
                return

    async def _lease(self, key_id: str, window: _Window) -> None:
        try:
            want = self._lease_size(window)
            window.refill_below = max(1, want // 2)
            self.leases += 1
            granted, window_used = await asyncio.wait_for(
                self._store.lease(key_id, window.start, want, window.limit), self._lease_timeout)
            window.leased += granted
            window.window_used = window_used
            window.exhausted = granted < want and window_used >= window.limit
        except (StorageError, TimeoutError) as exc:
            self._go_offline(f"{type(exc).__name__}: {exc}")
            window.local = True
        finally:
            window.refill = None

    def _offline(self) -> bool:
        return self._monotonic() < self._offline_until

    def _go_offline(self, why: str) -> None:
        if not self._offline():
            log.warning("rate limits counted locally for %.0fs: Postgres did not grant a lease (%s)",
                        self._offline_seconds, why)
        self._offline_until = self._monotonic() + self._offline_seconds

    async def prune(self) -> None:
        """Forget windows that have ended, here and in Postgres."""
        current = window_start(self._clock(), self._length)
        ended = [w.refill for w in self._windows.values() if w.start < current and w.refill is not None]
        self._windows = {k: w for k, w in self._windows.items() if w.start >= current}
        await asyncio.gather(*ended, return_exceptions=True)  # a late lease would write its window back
        await self._store.prune(current - self._length)

    async def run(self, stop: asyncio.Event) -> None:
        """Prune once a window until ``stop``."""
        await every(stop, self._length, self.prune, log, "pruning rate windows", retry=(StorageError,))
