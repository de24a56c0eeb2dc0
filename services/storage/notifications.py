"""``NOTIFY keyledger_events`` (sent by every append): wake the relay without polling fast."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import psycopg

from keyledger.services.storage.database import Database, StorageError, describe

Wait = Callable[[float], Awaitable[None]]


@asynccontextmanager
async def listening(db: Database) -> AsyncIterator[Wait]:
    """While open, ``await wait(timeout)`` returns at the next append's notification or after ``timeout``."""
    async with db._dedicated() as conn:
        await conn.execute("LISTEN keyledger_events")

        async def wait(timeout: float) -> None:
            try:
                async for _ in conn.notifies(timeout=timeout, stop_after=1):
                    pass
            except psycopg.Error as exc:
                raise StorageError(describe(exc)) from exc

        yield wait
