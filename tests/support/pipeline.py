"""Test helpers: run relay and projector in-process against the real servers, and compare read models."""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import asynccontextmanager
from typing import AsyncIterator, Awaitable, Callable

from nats.aio.client import Client
from nats.js import JetStreamContext
from psycopg_pool import AsyncConnectionPool

from keyledger.domain.key import KeyState, fold
from keyledger.projections.key_cache import KeyCache
from keyledger.services.messaging import bus
from keyledger.services.config import Settings
from keyledger.services.storage.event_store import PostgresEventStore
from keyledger.services.storage.key_cache_table import PROJECTOR, load_all
from keyledger.services.storage.checkpoints import read_checkpoint


def isolated_settings() -> Settings:
    """Settings with a JetStream stream and subjects of their own, and cheap argon2."""
    tag = uuid.uuid4().hex[:10]
    return Settings(nats_stream=f"KL_{tag}", nats_subject_prefix=f"kl{tag}.events",
                    usage_stream=f"KLU_{tag}", usage_subject=f"kl{tag}.usage",
                    argon2_time_cost=1, argon2_memory_kib=1024)


@asynccontextmanager
async def jetstream(nats_url: str, settings: Settings) -> AsyncIterator[tuple[Client, JetStreamContext]]:
    """A NATS connection whose stream is created now and deleted afterwards."""
    nc = await bus.connect(nats_url, "test")
    js = nc.jetstream()
    await bus.ensure_stream(js, settings)
    try:
        yield nc, js
    finally:
        try:
            await js.delete_stream(settings.nats_stream)
        finally:
            await nc.close()


@asynccontextmanager
async def running(*workers: Callable[[asyncio.Event], Awaitable[None]]) -> AsyncIterator[asyncio.Event]:
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
            except asyncio.TimeoutError:
                task.cancel()
                raise


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``check`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def projector_caught_up(pool: AsyncConnectionPool) -> bool:
    """Whether the projector's checkpoint has reached the store's head."""
    async with pool.connection() as conn:
        position, _ = await read_checkpoint(conn, PROJECTOR)
    return position >= await PostgresEventStore(pool).head_position()


async def table_model(pool: AsyncConnectionPool) -> KeyCache:
    """The key cache table's contents."""
    async with pool.connection() as conn:
        return await load_all(conn)


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
