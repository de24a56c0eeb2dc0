"""Test helpers: run relay and projector in-process against the real servers, and compare read models."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from nats.js import JetStreamContext

from keyledger.domain.key import KeyState, fold
from keyledger.projections.key_cache import KeyCache
from keyledger.services.audit.sink import AuditSink
from keyledger.services.bootstrap import roles
from keyledger.services.cache.live import LiveKeyCache
from keyledger.services.cache.projector import Projector
from keyledger.services.cache.relay import Relay
from keyledger.services.config import Settings
from keyledger.services.messaging.connection import Bus, connect
from keyledger.services.messaging.events import event_consumer
from keyledger.services.messaging.feed import EventFeed
from keyledger.services.messaging.streams import ensure_event_stream
from keyledger.services.messaging.usage import usage_consumer
from keyledger.services.storage.checkpoints import Checkpoints
from keyledger.services.storage.database import Database
from keyledger.services.storage.event_store import PostgresEventStore
from keyledger.services.storage.key_cache_table import PROJECTOR, KeyCacheTable
from keyledger.services.storage.usage_table import UsageTable


def isolated_settings() -> Settings:
    """Settings with a JetStream stream and subjects of their own, and cheap argon2."""
    tag = uuid.uuid4().hex[:10]
    return Settings(nats_stream=f"KL_{tag}", nats_subject_prefix=f"kl{tag}.events",
                    usage_stream=f"KLU_{tag}", usage_subject=f"kl{tag}.usage",
                    replicas_subject=f"kl{tag}.replicas",
                    argon2_time_cost=1, argon2_memory_kib=1024)


@asynccontextmanager
async def jetstream(nats_url: str, settings: Settings) -> AsyncIterator[tuple[Bus, JetStreamContext]]:
    """A NATS connection whose stream is created now and deleted afterwards (and its JetStream
    context, for tests that inspect or publish directly)."""
    bus = await connect(nats_url, "test")
    await ensure_event_stream(bus, settings)
    try:
        yield bus, bus._js
    finally:
        try:
            await bus._js.delete_stream(settings.nats_stream)
        finally:
            await bus.close()


@asynccontextmanager
async def running(*workers: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> AsyncIterator[asyncio.Event]:
    """Run ``worker(stop)`` tasks for the duration of the block, then stop them and re-raise failures."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(worker(stop)) for worker in workers]
    try:
        yield stop
    finally:
        stop.set()
        for task in tasks:
            try:
                await asyncio.wait_for(task, 10)
            except TimeoutError:
                task.cancel()
                raise


async def projector_caught_up(db: Database) -> bool:
    """Whether the projector's checkpoint has reached the store's head."""
    position, _ = await Checkpoints(db).read(PROJECTOR)
    return position >= await PostgresEventStore(db).head_position()


async def table_model(db: Database) -> KeyCache:
    """The key cache table's contents."""
    model, _, _ = await KeyCacheTable(db, PostgresEventStore(db)).load()
    return model


async def folded_streams(store: PostgresEventStore) -> dict[str, KeyState]:
    """Each stream folded directly from its own events (the reference answer)."""
    streams: dict[str, list] = {}  # type: ignore[type-arg]
    async for page in store.read_all():
        for recorded in page:
            streams.setdefault(recorded.stream_id, []).append(recorded)
    result = {}
    for stream_id in streams:
        state = fold(r.event for r in await store.read_stream(stream_id))
        assert state is not None
        result[stream_id] = state
    return result


def relay_for(db: Database, bus: Bus, settings: Settings, **options: Any) -> Relay:
    """A Relay wired as the service wires it."""
    store = PostgresEventStore(db)
    return Relay(db, store, Checkpoints(db), bus, settings, **options)


def projector_for(db: Database, bus: Bus, settings: Settings, durable: str = roles.PROJECTOR.consumer,
                  batch_size: int = roles.PROJECTOR.batch) -> Projector:
    """A Projector wired as the service wires it."""
    return Projector(KeyCacheTable(db, PostgresEventStore(db)), event_consumer(bus, settings, durable, batch_size))


def live_cache_for(db: Database, bus: Bus, settings: Settings) -> LiveKeyCache:
    """A LiveKeyCache wired as an API process wires it."""
    store = PostgresEventStore(db)
    return LiveKeyCache(store, KeyCacheTable(db, store), EventFeed(bus, settings))


def sink_for(db: Database, bus: Bus, settings: Settings, durable: str = roles.SINK.consumer,
             fetch_batch: int = roles.SINK.batch) -> AuditSink:
    """An AuditSink wired as the service wires it."""
    return AuditSink(UsageTable(db), usage_consumer(bus, settings, durable, fetch_batch))
