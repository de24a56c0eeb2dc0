"""What every process starts with: resolve the servers (starting the embedded stack when none is
configured), migrate, open the database and build the basics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec

from keyledger.services.bootstrap.roles import PROJECTOR, SINK, WATCH
from keyledger.services.clock import Clock, clock_from
from keyledger.services.config import NATS_ROLES, Settings, nats_role_variable
from keyledger.services.devstack.stack import BusNames, stack_up
from keyledger.services.hashing import Argon2Queue, SecretHasher
from keyledger.services.keys.service import CommitBarrier, EventsHook, KeyService, StateLookup
from keyledger.services.storage.database import Database, open_database
from keyledger.services.storage.event_store import PostgresEventStore
from keyledger.services.storage.migrations import migrate


class Endpoints(msgspec.Struct, frozen=True, kw_only=True):
    """Where the servers are, and as whom each part of keyledger reaches them."""

    database_url: str  # the application role
    admin_database_url: str  # the tables' owner: migrations, replay, retention
    nats_url: str  # any role without a URL of its own
    nats_role_urls: dict[str, str] = msgspec.field(default_factory=dict)

    def nats_url_for(self, role: str) -> str:
        """The NATS URL of ``role`` (relay, api, projector, sink)."""
        assert role in NATS_ROLES, role
        return self.nats_role_urls.get(role, self.nats_url)

    def environment(self) -> dict[str, str]:
        """These endpoints as the environment variables ``load_settings`` reads (for a child process)."""
        return {"DATABASE_URL": self.database_url, "KEYLEDGER_ADMIN_DATABASE_URL": self.admin_database_url,
                "NATS_URL": self.nats_url,
                **{nats_role_variable(role): url for role, url in self.nats_role_urls.items()}}


class Runtime(msgspec.Struct, frozen=True, kw_only=True):
    """The basic services of one process."""

    settings: Settings
    endpoints: Endpoints
    db: Database
    store: PostgresEventStore
    hasher: SecretHasher
    clock: Clock

    @property
    def database_url(self) -> str:
        """The URL this runtime's pool uses."""
        return self.db.url

    def key_service(self, on_events: EventsHook | None = None, queue: Argon2Queue | None = None,
                    barrier: CommitBarrier | None = None, current: StateLookup | None = None) -> KeyService:
        """Command handlers on this store; ``on_events`` sees every event they append; ``queue`` bounds
        their argon2 work together with verify's; ``barrier`` holds each command until every replica has
        its events (API processes); ``current``: the live cache's states, which commands decide on."""
        return KeyService(self.store, self.hasher, prefix=self.settings.token_prefix, clock=self.clock,
                          on_events=on_events, rate_tiers=self.settings.rate_tiers(), queue=queue, barrier=barrier,
                          current=current)


def bus_names(settings: Settings) -> BusNames:
    """The streams, subjects and durable consumers the embedded NATS grants its users, as ``settings`` and
    the worker roles name them."""
    return BusNames(event_stream=settings.nats_stream, event_subjects=f"{settings.nats_subject_prefix}.>",
                    usage_stream=settings.usage_stream, usage_subject=settings.usage_subject,
                    replicas_subject=settings.replicas_subject, projector_consumer=PROJECTOR.consumer,
                    sink_consumer=SINK.consumer, watch_consumer=WATCH.consumer)


def server_endpoints(settings: Settings) -> Endpoints:
    """The configured servers (``DATABASE_URL`` and ``NATS_URL`` both set), else the embedded stack's in
    ``settings.data_dir``, started if needed; URLs set in the settings win over the stack's."""
    if settings.database_url and settings.nats_url:
        return Endpoints(database_url=settings.database_url,
                         admin_database_url=settings.admin_database_url or settings.database_url,
                         nats_url=settings.nats_url, nats_role_urls=dict(settings.nats_role_urls))
    info = stack_up(settings.data_path(), names=bus_names(settings))
    return Endpoints(
        database_url=settings.database_url or info.database_url,
        admin_database_url=settings.admin_database_url or settings.database_url or info.admin_database_url,
        nats_url=settings.nats_url or info.nats_url,
        nats_role_urls={**({} if settings.nats_url else info.nats_role_urls), **settings.nats_role_urls})


@asynccontextmanager
async def open_runtime(settings: Settings, *, pool_size: int = 4, admin: bool = False) -> AsyncIterator[Runtime]:
    """Start (or find) the servers, apply migrations (as the tables' owner) and yield the wired basics;
    the pool connects as the application role, or as the owner when ``admin`` (replay, retention)."""
    endpoints = server_endpoints(settings)
    await migrate(endpoints.admin_database_url)
    hasher = SecretHasher(settings)
    url = endpoints.admin_database_url if admin else endpoints.database_url
    try:
        async with open_database(url, max_size=pool_size) as db:
            yield Runtime(settings=settings, endpoints=endpoints, db=db, store=PostgresEventStore(db), hasher=hasher,
                          clock=clock_from(settings.clock_start))
    finally:
        hasher.close()
