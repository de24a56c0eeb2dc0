"""The key cache projector: a durable JetStream consumer writing the Postgres read model."""

from __future__ import annotations

import asyncio
import logging

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from keyledger.projections.key_cache import KeyCache, Outcome, apply_at
from keyledger.services.messaging import bus
from keyledger.services.config import Settings
from keyledger.services.storage.event_store import PostgresEventStore
from keyledger.domain.recorded import RecordedEvent
from keyledger.services.storage.key_cache_table import PROJECTOR, load_keys, lock_key_cache, upsert_keys
from keyledger.services.storage.checkpoints import read_checkpoint, save_checkpoint

log = logging.getLogger("keyledger.projector")


class ProjectorStats(msgspec.Struct, kw_only=True):
    """Counts since start: events applied, duplicates skipped, and events read from the store
    because the stream skipped positions (``filled``) or a key's versions (``repaired``)."""

    applied: int = 0
    duplicates: int = 0
    filled: int = 0
    repaired: int = 0


async def apply_batch(
    conn: AsyncConnection, store: PostgresEventStore, batch: list[tuple[RecordedEvent, int]], stats: ProjectorStats,
    checkpoint: str = PROJECTOR,
) -> None:
    """Apply ``(event, stream_seq)`` pairs to the key cache and move the checkpoint, in one transaction.

    The checkpoint means "every event up to here is applied": positions are gapless, so
    when a batch skips some (messages still unacked by a projector that died, or held by
    another replica), the missing ones are read from the store first. Versions a key
    already has are skipped, so their later redelivery changes nothing.
    """
    async with conn.transaction():
        await lock_key_cache(conn)
        done, _ = await read_checkpoint(conn, checkpoint)
        fresh = sorted({r.global_position: r for r, _ in batch if r.global_position > done}.values(),
                       key=lambda r: r.global_position)
        stats.duplicates += len(batch) - len(fresh)
        top = fresh[-1].global_position if fresh else done
        if len(fresh) != top - done:
            stats.filled += top - done - len(fresh)
            fresh = await store.read_page(done, top - done)
        model = await load_keys(conn, {recorded.stream_id for recorded in fresh})
        positions: dict[str, int] = {}
        for recorded in fresh:
            outcome = apply_at(model, recorded.event, recorded.version)
            if outcome is Outcome.GAP:
                await _repair(model, positions, store, recorded.stream_id, stats)
                outcome = apply_at(model, recorded.event, recorded.version)
            if outcome is Outcome.APPLIED:
                stats.applied += 1
                positions[recorded.stream_id] = recorded.global_position
            else:
                stats.duplicates += 1
        await upsert_keys(conn, [(model[key_id], position) for key_id, position in positions.items()])
        await save_checkpoint(conn, checkpoint, top, max(s for _, s in batch))


async def _repair(model: KeyCache, positions: dict[str, int], store: PostgresEventStore, stream_id: str,
                  stats: ProjectorStats) -> None:
    current = model.get(stream_id)
    missing = await store.read_stream(stream_id, after_version=current.version if current else 0)
    log.warning("version gap in %s: repairing %d event(s) from the store", stream_id, len(missing))
    for recorded in missing:
        if apply_at(model, recorded.event, recorded.version) is Outcome.APPLIED:
            stats.repaired += 1
            positions[stream_id] = recorded.global_position


class Projector:
    """Consumes the events stream with a durable consumer and explicit acks."""

    def __init__(self, pool: AsyncConnectionPool, js: JetStreamContext, settings: Settings,
                 durable: str = "key-cache-projector", batch_size: int = 500) -> None:
        self._pool, self._js, self._settings = pool, js, settings
        self._store = PostgresEventStore(pool)
        self._durable, self._batch_size = durable, batch_size
        self.stats = ProjectorStats()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; a batch is acked only after its transaction commits."""
        async def apply(msgs: list[Msg]) -> None:
            await bus.retry_database(stop, lambda: self.handle(msgs), "projector")

        await bus.consume(stop, self._subscribe, self._batch_size, apply, "projector")

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        await bus.ensure_stream(self._js, self._settings)
        return await self._js.pull_subscribe(
            bus.all_subjects(self._settings), durable=self._durable, stream=self._settings.nats_stream,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                                  ack_wait=30, max_ack_pending=20_000))

    async def handle(self, msgs: list[Msg]) -> None:
        """Apply one fetched batch, then ack every message in it."""
        batch = [(bus.decode_message(msg.data), msg.metadata.sequence.stream) for msg in msgs]
        if not batch:
            return
        async with self._pool.connection() as conn:
            await apply_batch(conn, self._store, batch, self.stats)
        try:
            for msg in msgs:
                await msg.ack()
        except nats.errors.Error as exc:  # committed already: a redelivery is skipped as a duplicate
            log.warning("ack failed (%s); the batch will be redelivered and skipped", type(exc).__name__)
