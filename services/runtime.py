"""Wiring: resolve servers, migrate, open the pool, and build the services on top."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

import msgspec
from psycopg_pool import AsyncConnectionPool

from keyledger.services.clock import Clock, clock_from
from keyledger.services.config import Settings
from keyledger.services.storage.event_store import PostgresEventStore
from keyledger.services.keys.hashing import SecretHasher
from keyledger.services.keys.service import KeyService
from keyledger.services.storage.migrations import migrate
from keyledger.services.devstack.stack import resolve_urls


class Runtime(msgspec.Struct, frozen=True, kw_only=True):
    """The live services of one process."""

    settings: Settings
    database_url: str
    nats_url: str
    pool: AsyncConnectionPool
    store: PostgresEventStore
    hasher: SecretHasher
    keys: KeyService
    clock: Clock


def server_urls(settings: Settings) -> tuple[str, str]:
    """The Postgres and NATS URLs: the configured ones, else those of the embedded stack."""
    if settings.database_url and settings.nats_url:
        return settings.database_url, settings.nats_url
    env = {name: value for name, value in
           (("DATABASE_URL", settings.database_url), ("NATS_URL", settings.nats_url)) if value}
    return resolve_urls(env)


@asynccontextmanager
async def open_runtime(settings: Settings, *, pool_size: int = 4) -> AsyncIterator[Runtime]:
    """Start (or find) the servers, apply migrations and yield the wired services."""
    database_url, nats_url = server_urls(settings)
    await migrate(database_url)
    hasher = SecretHasher(settings)
    pool = AsyncConnectionPool(database_url, min_size=1, max_size=pool_size, open=False,
                               kwargs={"autocommit": True})
    await pool.open(wait=True)
    try:
        store = PostgresEventStore(pool)
        clock = clock_from(settings.clock_start)
        keys = KeyService(store, hasher, prefix=settings.token_prefix, clock=clock)
        yield Runtime(settings=settings, database_url=database_url, nats_url=nats_url, pool=pool, store=store,
                      hasher=hasher, keys=keys, clock=clock)
    finally:
        await pool.close()
        hasher.close()
