"""The audit sink: usage-event batches from JetStream into the day-partitioned ``usage_events`` table.

One message is one batch (``Kl-Batch-Id``/``Nats-Msg-Id`` = its uuid). Per fetch, one transaction
records the batch ids in ``usage_batches`` and COPYs the events of the batches not seen before;
messages are acked only after the commit, so a crash loses nothing and a redelivery duplicates nothing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import date

import msgspec

from keyledger.domain.usage import clean_text, decode_batch
from keyledger.services.messaging.consume import Consumer, Delivery
from keyledger.services.messaging.usage import batch_id_of
from keyledger.services.observe import metrics
from keyledger.services.storage.database import retry_database
from keyledger.services.storage.usage_partitions import utc_day
from keyledger.services.storage.usage_table import PoisonBatch, UsageBatch, UsageTable

log = logging.getLogger("keyledger.audit_sink")


class SinkStats(msgspec.Struct, kw_only=True):
    """Counts since start: events and batches stored, batches skipped as already stored, messages
    terminated as malformed (undecodable), and events set aside because Postgres refused them."""

    stored: int = 0
    batches: int = 0
    duplicates: int = 0
    malformed: int = 0
    dead_letters: int = 0  # events Postgres refused, set aside in usage_dead_letters (their neighbours stored)


@dataclass
class Batch:
    """One batch of usage events and the message(s) that carried it in this fetch."""

    usage: UsageBatch
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def batch_id(self) -> uuid.UUID:
        """The batch's id (its deliveries all carry it)."""
        return self.usage.batch_id


def decode(delivery: Delivery) -> Batch:
    """The batch a message carries; raises ValueError (or a msgspec error) when it is malformed."""
    events = decode_batch(delivery.data)
    for event in events:
        if event.at.tzinfo is None:
            raise ValueError("an event time has no time zone")
        if utc_day(event.at) == date.max:
            raise ValueError("an event time is out of range")
    return Batch(UsageBatch(batch_id_of(delivery), events), [delivery])


class AuditSink:
    """Stores each fetched set of usage batches in one transaction, then acks their messages."""

    def __init__(self, table: UsageTable, consumer: Consumer) -> None:
        self._table, self._consumer = table, consumer
        self.stats = SinkStats()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, riding out NATS and Postgres outages.

        Pipelined by one fetch: while a fetch's transaction runs in Postgres, the next fetch is received and
        decoded. Transactions still run one at a time, in order, and each fetch's messages are acked only
        after its own commit, so a crash at any point loses nothing (unacked messages come back)."""
        committing: asyncio.Task[None] | None = None

        async def store(deliveries: list[Delivery]) -> None:
            nonlocal committing
            batches = await self.accept(deliveries)  # decoded once: a malformed message is terminated once
            if committing is not None:
                await committing  # the previous fetch's transaction first (its failure ends the run here)
            committing = asyncio.create_task(retry_database(stop, lambda: self.commit(batches), "audit sink"))

        try:
            await self._consumer.run(stop, store)
        finally:
            if committing is not None:
                if not stop.is_set():  # the run failed or was cancelled: the last fetch's messages stay unacked
                    committing.cancel()
                    await asyncio.wait([committing])
                else:
                    await committing

    async def accept(self, deliveries: list[Delivery]) -> list[Batch]:
        """Decode the messages into batches (one per batch id); terminate the malformed ones."""
        batches: dict[uuid.UUID, Batch] = {}
        for delivery in deliveries:
            try:
                batch = decode(delivery)
            except (msgspec.DecodeError, ValueError, OverflowError) as exc:
                await self._reject(delivery, f"{type(exc).__name__}: {exc}")
                continue
            if batch.batch_id in batches:
                batches[batch.batch_id].deliveries.append(delivery)
                self.stats.duplicates += 1
            else:
                batches[batch.batch_id] = batch
        return list(batches.values())

    async def commit(self, batches: list[Batch]) -> None:
        """Store the batches in one transaction, then ack their messages. When Postgres refuses some
        event's data, the batches are stored one by one and the refused events set aside."""
        if not batches:
            return
        try:
            await self._store(batches)
        except PoisonBatch:
            batches = await self._store_one_by_one(batches)
        for batch in batches:
            for delivery in batch.deliveries:
                await delivery.ack()  # committed already: a lost ack means a redelivery, skipped

    async def _store_one_by_one(self, batches: list[Batch]) -> list[Batch]:
        """After Postgres refused a set of batches: each alone, and a batch it still refuses event by
        event, so only the refused events are set aside (dead letters), never their neighbours."""
        for batch in batches:
            try:
                await self._store([batch])
            except PoisonBatch:
                stored, dead = await self._table.store_isolating(batch.usage)
                self.stats.stored += stored
                metrics.SINK_STORED.inc(stored)
                metrics.SINK_REJECTED.labels("dead_letter").inc(len(dead))
                self.stats.batches += 1 if stored or dead else 0
                self.stats.duplicates += 0 if stored or dead else 1
                self.stats.dead_letters += len(dead)
                for event, reason in dead:  # the payload is not logged: it is the attacker's
                    log.error("usage event %r of batch %s refused by Postgres (%s): kept in usage_dead_letters",
                              clean_text(event.id, 64), batch.batch_id, reason)
        return batches

    async def _store(self, batches: list[Batch]) -> None:
        fresh = await self._table.store([b.usage for b in batches])
        self.stats.batches += len(fresh)
        self.stats.duplicates += len(batches) - len(fresh)
        stored = sum(len(b.usage.events) for b in batches if b.batch_id in fresh)
        self.stats.stored += stored
        metrics.SINK_STORED.inc(stored)

    async def _reject(self, delivery: Delivery, why: str) -> None:
        """Terminate a message that can never be stored; the payload is not logged."""
        self.stats.malformed += 1
        metrics.SINK_REJECTED.labels("malformed").inc()
        log.error("usage message %s (stream seq %s) is malformed and dropped: %s", delivery.subject, delivery.seq, why)
        await delivery.term()
