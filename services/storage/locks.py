"""Cluster-wide exclusive sections (Postgres session advisory locks) for processes starting together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from keyledger.services.clock import sleep_or_stop
from keyledger.services.storage.database import Database

BOOTSTRAP = 0x6B62  # creating the bootstrap admin key


@asynccontextmanager
async def exclusive(db: Database, lock: int) -> AsyncIterator[None]:
    """Hold the advisory lock ``lock`` (waiting for it) on a connection of its own while inside."""
    async with db._dedicated() as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (lock,))
        try:
            yield
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (lock,))


WEBHOOKS = 0x6B7768  # the one process that feeds and delivers webhooks


@asynccontextmanager
async def leading(db: Database, lock: int, stop: asyncio.Event, retry: float = 1.0) -> AsyncIterator[bool]:
    """Hold the advisory lock ``lock`` on a connection of its own while inside, trying every ``retry`` seconds
    until it is free (another process holds it: this one stands by); yields False when ``stop`` was set first.
    The lock goes with the connection, so a process killed outright frees it at once."""
    async with db._dedicated() as conn:
        while not (await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (lock,))).fetchone() or (False,))[0]:
            await sleep_or_stop(stop, retry)
            if stop.is_set():
                yield False
                return
        try:
            yield True
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (lock,))
