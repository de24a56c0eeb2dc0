"""The connection pool of one process, and the mapping of Postgres failures to ``StorageError``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import psycopg
from psycopg_pool import AsyncConnectionPool

from keyledger.services.clock import sleep_or_stop

log = logging.getLogger("keyledger.storage")

WAIT_SECONDS = 3.0  # a caller's wait for a pooled connection
CONNECT_SECONDS = 3  # libpq connect_timeout of each new connection
RECONNECT_SECONDS = 24 * 3600.0  # the pool keeps trying to reconnect through an outage this long


class StorageError(Exception):
    """Postgres is unreachable or refused a statement (an outage, a missing table...)."""


class Database:
    """One pool of autocommit connections. Only ``keyledger.services.storage`` reaches inside."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 4, wait: float = WAIT_SECONDS,
                 application_name: str | None = None) -> None:
        self.url = url
        named = {"application_name": application_name} if application_name else {}  # in pg_stat_activity
        # ``wait``: how long a caller waits for a connection before StorageError (the API's 503): short, so
        # an outage answers at once instead of holding requests (and shutdown) for psycopg's default 30 s
        self._pool = AsyncConnectionPool(url, min_size=min_size, max_size=max_size, open=False, timeout=wait,
                                         reconnect_timeout=RECONNECT_SECONDS,
                                         kwargs={"autocommit": True, "connect_timeout": CONNECT_SECONDS, **named})

    async def open(self) -> None:
        """Open the pool and wait for its first connection."""
        try:
            await self._pool.open(wait=True)
        except psycopg.Error as exc:
            raise StorageError(describe(exc)) from exc

    async def close(self) -> None:
        """Close every connection."""
        await self._pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled connection (storage-internal); psycopg errors leave as StorageError."""
        try:
            async with self._pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            raise StorageError(describe(exc)) from exc

    @asynccontextmanager
    async def _dedicated(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection of its own, outside the pool (LISTEN, session locks); storage-internal."""
        try:
            async with await psycopg.AsyncConnection.connect(self.url, autocommit=True,
                                                             connect_timeout=CONNECT_SECONDS) as conn:
                yield conn
        except psycopg.Error as exc:
            raise StorageError(describe(exc)) from exc


@asynccontextmanager
async def open_database(url: str, *, min_size: int = 1, max_size: int = 4,
                        application_name: str | None = None) -> AsyncIterator[Database]:
    """An open Database, closed on exit."""
    db = Database(url, min_size=min_size, max_size=max_size, application_name=application_name)
    await db.open()
    try:
        yield db
    finally:
        await db.close()


def describe(exc: psycopg.Error) -> str:
    """One line about a Postgres failure: its class and SQLSTATE, or the first line of its message."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__} {exc.sqlstate or ''}: {first}".strip()


async def retry_database(stop: asyncio.Event, action: Callable[[], Awaitable[None]], name: str) -> None:
    """Run ``action`` until it succeeds or ``stop`` is set; storage errors mean wait, never drop."""
    while not stop.is_set():
        try:
            await action()
            return
        except StorageError as exc:  # an outage, or e.g. a missing table
            log.warning("%s: database unavailable (%s); retrying the batch", name, exc)
            await sleep_or_stop(stop, 0.5)
