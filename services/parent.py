"""Processes started by ``keyledger serve`` or ``keyledger run`` end with it: each knows its parent's pid
(``KEYLEDGER_PARENT_PID``) and stops once that process is gone, so a parent killed with SIGKILL leaves no
orphan behind (an orphaned API worker would go on holding the port and answering from a cache nobody
supervises)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable

log = logging.getLogger("keyledger.supervise")

PARENT_ENV = "KEYLEDGER_PARENT_PID"


async def watch_parent(stop: asyncio.Event, interval: float = 0.5, on_gone: Callable[[], None] | None = None) -> None:
    """Until ``stop`` is set: once the parent named by ``KEYLEDGER_PARENT_PID`` is gone, call ``on_gone``
    (default: set ``stop``). Returns at once when the variable is not set."""
    raw = os.environ.get(PARENT_ENV, "")
    if not raw.isdigit():
        return
    parent = int(raw)
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("supervisor (pid %d) is gone; stopping", parent)
            (on_gone or stop.set)()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


def terminate_self() -> None:
    """Ask this process to stop as its server would (SIGTERM: granian stops serving, then runs the app's
    shutdown, which flushes the usage events)."""
    os.kill(os.getpid(), signal.SIGTERM)


async def end_with_parent(stop: asyncio.Event) -> None:
    """In a server's worker process: once the parent is gone, stop the whole process (:func:`terminate_self`),
    not only the work ``stop`` ends."""
    await watch_parent(stop, on_gone=terminate_self)
