"""Work a process runs beside its answers, as tasks that stop together when the process closes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from typing import Any

# runs until the event is set, then finishes what it holds
Work = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


def run_beside(stack: AsyncExitStack, works: Sequence[Work]) -> None:
    """Start every one of ``works`` as a task; when ``stack`` exits they are told to stop and awaited (so
    pending usage events and last-used times are flushed before the connections close)."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(work(stop)) for work in works]

    async def stop_all() -> None:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    stack.push_async_callback(stop_all)
