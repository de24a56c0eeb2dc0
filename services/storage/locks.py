"""Cluster-wide exclusive sections (Postgres session advisory locks) for processes starting together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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
