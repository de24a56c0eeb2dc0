"""Background work that repeats: one loop for every periodic task of a process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from keyledger.services.clock import sleep_or_stop


async def every(stop: asyncio.Event, interval: float | Callable[[], float], action: Callable[[], Awaitable[object]],
                log: logging.Logger, what: str, *, first: bool = False,
                retry: tuple[type[Exception], ...] = ()) -> None:
    """Run ``action`` every ``interval`` seconds until ``stop`` (at once too when ``first``); ``interval`` may
    be a function, asked before each pause. A failure of a kind in ``retry`` (e.g. a storage outage) is logged
    (``what`` failed) and retried at the next turn, never fatal; any other failure ends the loop."""
    pause = interval if callable(interval) else lambda: interval
    if not first:
        await sleep_or_stop(stop, pause())
    while not stop.is_set():
        try:
            await action()
        except retry as exc:
            log.warning("%s failed (%s); will retry", what, exc)
        await sleep_or_stop(stop, pause())
