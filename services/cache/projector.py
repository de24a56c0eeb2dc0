"""The key cache projector: a durable JetStream consumer writing the Postgres read model."""

from __future__ import annotations

import asyncio

from keyledger.services.messaging.consume import Consumer, Delivery
from keyledger.services.messaging.streams import decode_message
from keyledger.services.storage.database import retry_database
from keyledger.services.storage.key_cache_table import KeyCacheTable, ProjectorStats

__all__ = ["Projector", "ProjectorStats"]


class Projector:
    """Applies each fetched batch to the key cache table, then acks it (after the commit)."""

    def __init__(self, table: KeyCacheTable, consumer: Consumer) -> None:
        self._table, self._consumer = table, consumer
        self.stats = ProjectorStats()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; a batch is acked only after its transaction commits."""
        async def apply(deliveries: list[Delivery]) -> None:
            await retry_database(stop, lambda: self.handle(deliveries), "projector")

        await self._consumer.run(stop, apply)

    async def handle(self, deliveries: list[Delivery]) -> None:
        """Apply one fetched batch in one transaction, then ack every message in it."""
        batch = [(decode_message(d.data), d.seq or 0) for d in deliveries]
        if not batch:
            return
        await self._table.apply(batch, self.stats)
        for delivery in deliveries:
            await delivery.ack()
