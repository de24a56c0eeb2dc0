"""Rate decisions (the numbers behind ``X-RateLimit-*``) and the per-client failure throttle."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import msgspec

from keyledger.domain.rate import WINDOW_SECONDS, window_start

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


class FailureThrottle:
    """Counts failures per client (IP) in fixed windows and blocks a client past ``limit``."""

    def __init__(self, limit: int, clock: EpochClock = time.time, window: int = WINDOW_SECONDS,
                 max_clients: int = 100_000) -> None:
        self._limit, self._clock, self._length, self._max = limit, clock, window, max_clients
        self._start = 0
        self._counts: dict[str, int] = {}

    @property
    def limit(self) -> int:
        """Failures allowed per client and window."""
        return self._limit

    @property
    def clock(self) -> EpochClock:
        """The throttle's clock (Unix seconds)."""
        return self._clock

    def _current(self) -> dict[str, int]:
        start = window_start(self._clock(), self._length)
        if start != self._start:  # a new window forgets every client at once
            self._start, self._counts = start, {}
        return self._counts

    def record(self, client: str) -> None:
        """Count one failure of ``client``."""
        counts = self._current()
        if client not in counts and len(counts) >= self._max:
            self._shed(counts)
        counts[client] = counts.get(client, 0) + 1

    def _shed(self, counts: dict[str, int]) -> None:
        """Keep the map bounded (a caller may name any number of clients): forget the clients with the
        fewest failures, never one that is blocked, until at most half the bound is left."""
        keep = sorted(counts.items(), key=lambda item: item[1], reverse=True)[:self._max // 2]
        blocked = {client: n for client, n in counts.items() if n >= self._limit}
        counts.clear()
        counts.update({**dict(keep), **blocked})

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
