"""Time as an input: every component takes a ``Clock``; ``utc_now`` is the real one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC (a naive one is taken to be UTC already). ValueError when its UTC instant falls
    outside the years 1 to 9999 that a datetime holds: ``0001-01-01T00:00+14:00`` is still year 0 in UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"time {moment.isoformat()} is out of range: in UTC it falls outside the years 1 to 9999"
                         ) from None


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def clock_from(start: datetime | None) -> Clock:
    """The real clock, or (``start`` given: tests only) one that starts at ``start`` and then runs at
    the real pace, so a test knows where the minute windows fall whatever the wall time is."""
    if start is None:
        return utc_now
    origin = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - origin)


def epoch(clock: Clock) -> Callable[[], float]:
    """``clock`` as Unix seconds (for the rate limiter and the throttles); the real clock's is ``time.time``
    itself (the same reading, without building a datetime on every verify)."""
    if clock is utc_now:
        return time.time
    return lambda: clock().timestamp()


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds``, or less if ``stop`` is set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
