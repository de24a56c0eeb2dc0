"""The audit sink: usage-event batches from JetStream into the day-partitioned ``usage_events`` table.

One message is one batch (``Kl-Batch-Id``/``Nats-Msg-Id`` = its uuid). Per fetch, one transaction
records the batch ids in ``usage_batches`` and COPYs the events of the batches not seen before;
messages are acked only after the commit, so a crash loses nothing and a redelivery duplicates nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import date

import msgspec
import nats.errors
import psycopg
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from keyledger.domain.usage import USAGE_COLUMNS, UsageEvent, decode_batch
from keyledger.services.messaging import bus
from keyledger.services.storage.usage_partitions import ensure_partition, utc_day
from keyledger.services.config import Settings

log = logging.getLogger("keyledger.audit_sink")

BATCH_HEADERS = ("Kl-Batch-Id", "Nats-Msg-Id")  # where a message's batch id is read, in this order
_CLAIM = ("INSERT INTO usage_batches (batch_id, events) SELECT * FROM unnest(%s::uuid[], %s::int[]) "
          "ON CONFLICT DO NOTHING RETURNING batch_id")
_COPY = f"COPY usage_events ({', '.join(USAGE_COLUMNS)}) FROM STDIN"
ACK_WAIT_SECONDS = 30.0  # a killed sink's unacked batches come back to another sink after this


class SinkStats(msgspec.Struct, kw_only=True):
    """Counts since start: events and batches stored, batches skipped as already stored, and
    messages terminated as malformed (undecodable, or refused by Postgres as data)."""

    stored: int = 0
    batches: int = 0
    duplicates: int = 0
    malformed: int = 0


@dataclass
class Batch:
    """One batch of usage events and the message(s) that carried it in this fetch."""

    batch_id: uuid.UUID
    events: list[UsageEvent]
    days: set[date]
    msgs: list[Msg] = field(default_factory=list)


def consumer_config(ack_wait: float = ACK_WAIT_SECONDS) -> ConsumerConfig:
    """The durable consumer the sink creates when it is missing (an existing one is used as it is)."""
    return ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL, ack_wait=ack_wait,
                          max_ack_pending=20_000)


class PoisonBatch(Exception):
    """Postgres refused a batch's contents (bad data, not an outage): retrying cannot help."""


def batch_id_of(msg: Msg) -> uuid.UUID:
    """The message's batch id from its headers; without a valid one, a uuid derived from the body
    (so a redelivery of the same message is still recognised)."""
    for name in BATCH_HEADERS:
        try:
            return uuid.UUID((msg.headers or {})[name])
        except (KeyError, ValueError):
            continue
    return uuid.UUID(bytes=hashlib.sha256(msg.data).digest()[:16], version=5)


def decode(msg: Msg) -> Batch:
    """The batch a message carries; raises ValueError (or a msgspec error) when it is malformed."""
    events = decode_batch(msg.data)
    days = set()
    for event in events:
        if event.at.tzinfo is None:
            raise ValueError("an event time has no time zone")
        days.add(utc_day(event.at))
    if days and max(days) == date.max:
        raise ValueError("an event time is out of range")
    return Batch(batch_id_of(msg), events, days, [msg])


class AuditSink:
    """Consumes the usage stream with a durable pull consumer and explicit acks."""

    def __init__(self, pool: AsyncConnectionPool, js: JetStreamContext, settings: Settings,
                 durable: str = "audit-sink", fetch_batch: int = 200) -> None:
        self._pool, self._js, self._settings = pool, js, settings
        self._durable, self._fetch_batch = durable, fetch_batch
        self._days: set[date] = set()  # partitions known to exist
        self.stats = SinkStats()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, riding out NATS and Postgres outages."""
        async def store(msgs: list[Msg]) -> None:
            batches = await self.accept(msgs)  # decoded once: a malformed message is terminated once
            await bus.retry_database(stop, lambda: self.commit(batches), "audit sink")

        await bus.consume(stop, self._subscribe, self._fetch_batch, store, "audit sink")

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        await bus.ensure_usage_stream(self._js, self._settings)
        return await self._js.pull_subscribe(self._settings.usage_subject, durable=self._durable,
                                             stream=self._settings.usage_stream, config=consumer_config())

    async def handle(self, msgs: list[Msg]) -> None:
        """Store one fetched set of messages and ack them (one attempt; errors propagate)."""
        await self.commit(await self.accept(msgs))

    async def accept(self, msgs: list[Msg]) -> list[Batch]:
        """Decode the messages into batches (one per batch id); terminate the malformed ones."""
        batches: dict[uuid.UUID, Batch] = {}
        for msg in msgs:
            try:
                batch = decode(msg)
            except (msgspec.DecodeError, ValueError, OverflowError) as exc:
                await self._reject(msg, f"{type(exc).__name__}: {exc}")
                continue
            if batch.batch_id in batches:
                batches[batch.batch_id].msgs.append(msg)
                self.stats.duplicates += 1
            else:
                batches[batch.batch_id] = batch
        return list(batches.values())

    async def commit(self, batches: list[Batch]) -> None:
        """Store the batches in one transaction, then ack their messages. A batch Postgres refuses
        as data is isolated and terminated; the others are stored."""
        if not batches:
            return
        async with self._pool.connection() as conn:
            try:
                await self._store(conn, batches)
            except PoisonBatch:
                batches = await self._store_one_by_one(conn, batches)
        for batch in batches:
            for msg in batch.msgs:
                try:
                    await msg.ack()
                except nats.errors.Error as exc:  # committed already: a redelivery is skipped
                    log.warning("ack failed (%s); the batch will be redelivered and skipped", type(exc).__name__)

    async def _store_one_by_one(self, conn: AsyncConnection, batches: list[Batch]) -> list[Batch]:
        stored = []
        for batch in batches:
            try:
                await self._store(conn, [batch])
                stored.append(batch)
            except PoisonBatch as exc:
                for msg in batch.msgs:
                    await self._reject(msg, f"batch {batch.batch_id} refused by Postgres ({exc})")
        return stored

    async def _store(self, conn: AsyncConnection, batches: list[Batch]) -> None:
        for attempt in (1, 2):
            for day in sorted(set[date]().union(*(batch.days for batch in batches)) - self._days):
                await ensure_partition(conn, day)
                self._days.add(day)
            try:
                fresh = await _insert(conn, batches)
                break
            except psycopg.errors.CheckViolation:  # no partition for a row: dropped since we made it
                self._days.clear()
                if attempt == 2:
                    raise
            except (psycopg.DataError, psycopg.IntegrityError, UnicodeEncodeError) as exc:
                raise PoisonBatch(getattr(exc, "sqlstate", None) or type(exc).__name__) from None
        self.stats.batches += len(fresh)
        self.stats.duplicates += len(batches) - len(fresh)
        self.stats.stored += sum(len(batch.events) for batch in fresh)

    async def _reject(self, msg: Msg, why: str) -> None:
        """Terminate a message that can never be stored; the payload is not logged."""
        self.stats.malformed += 1
        try:
            seq: int | None = msg.metadata.sequence.stream
        except (nats.errors.Error, ValueError, IndexError):
            seq = None
        log.error("usage message %s (stream seq %s) is malformed and dropped: %s", msg.subject, seq, why)
        try:
            await msg.term()
        except nats.errors.Error as exc:
            log.warning("term failed (%s); it will be redelivered and dropped again", type(exc).__name__)


async def _insert(conn: AsyncConnection, batches: list[Batch]) -> list[Batch]:
    """In one transaction: claim the batch ids, COPY the events of the newly claimed ones."""
    async with conn.transaction():
        cur = await conn.execute(_CLAIM, ([b.batch_id for b in batches], [len(b.events) for b in batches]))
        claimed = {row[0] for row in await cur.fetchall()}
        fresh = [batch for batch in batches if batch.batch_id in claimed]
        if any(batch.events for batch in fresh):
            async with conn.cursor().copy(_COPY) as copy:
                for batch in fresh:
                    for event in batch.events:
                        await copy.write_row(msgspec.structs.astuple(event))
    return fresh
