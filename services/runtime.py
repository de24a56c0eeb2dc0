"""Wiring shared by every process: resolve the servers, migrate, open the database, build the basics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec

from keyledger.services.clock import Clock, clock_from
from keyledger.services.config import Settings
from keyledger.services.devstack.stack import resolve_urls
from keyledger.services.keys.hashing import Argon2Queue, SecretHasher
from keyledger.services.keys.service import EventsHook, KeyService
from keyledger.services.storage.database import Database, open_database
from keyledger.services.storage.event_store import PostgresEventStore
from keyledger.services.storage.migrations import migrate


class Runtime(msgspec.Struct, frozen=True, kw_only=True):
    """The basic services of one process."""

    settings: Settings
    database_url: str
    nats_url: str
    db: Database
    store: PostgresEventStore
    hasher: SecretHasher
    clock: Clock

    def key_service(self, on_events: EventsHook | None = None, queue: Argon2Queue | None = None) -> KeyService:
        """Command handlers on this store; ``on_events`` sees every event they append; ``queue`` bounds
        their argon2 work together with verify's (API processes)."""
        return KeyService(self.store, self.hasher, prefix=self.settings.token_prefix, clock=self.clock,
                          on_events=on_events, rate_tiers=self.settings.rate_tiers(), queue=queue)


def server_urls(settings: Settings) -> tuple[str, str]:
    """The Postgres and NATS URLs: the configured ones, else those of the embedded stack."""
    if settings.database_url and settings.nats_url:
        return settings.database_url, settings.nats_url
    env = {name: value for name, value in
           (("DATABASE_URL", settings.database_url), ("NATS_URL", settings.nats_url)) if value}
    return resolve_urls(env)


@asynccontextmanager
async def open_runtime(settings: Settings, *, pool_size: int = 4) -> AsyncIterator[Runtime]:
    """Start (or find) the servers, apply migrations and yield the wired basics."""
    database_url, nats_url = server_urls(settings)
    await migrate(database_url)
    hasher = SecretHasher(settings)
    try:
        async with open_database(database_url, max_size=pool_size) as db:
            yield Runtime(settings=settings, database_url=database_url, nats_url=nats_url, db=db,
                          store=PostgresEventStore(db), hasher=hasher, clock=clock_from(settings.clock_start))
    finally:
        hasher.close()
