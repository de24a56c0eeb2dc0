"""``NOTIFY keyledger_events`` (sent by every append): wake the relay without polling fast; ``keyledger_notices``
(sent when notices or webhook endpoints change) wakes the webhook dispatcher."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import psycopg

from keyledger.services.storage.database import Database, StorageError, describe

Wait = Callable[[float], Awaitable[None]]


@asynccontextmanager
async def listening(db: Database, channel: str = "keyledger_events") -> AsyncIterator[Wait]:
    """While open, ``await wait(timeout)`` returns at the next notification on ``channel`` (by default: the
    next append of events) or after ``timeout``."""
    assert channel in ("keyledger_events", "keyledger_notices"), channel
    async with db._dedicated() as conn:
        await conn.execute(f"LISTEN {channel}")

        async def wait(timeout: float) -> None:
            try:
                async for _ in conn.notifies(timeout=timeout, stop_after=1):
                    pass
            except psycopg.Error as exc:
                raise StorageError(describe(exc)) from exc

        yield wait
