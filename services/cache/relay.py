"""The relay: tails the event store in position order and publishes each event to JetStream."""

from __future__ import annotations

import asyncio
import logging

from keyledger.services.clock import sleep_or_stop
from keyledger.services.config import Settings
from keyledger.services.messaging.connection import Bus, BusError
from keyledger.services.messaging.events import EventPublisher
from keyledger.services.observe import metrics
from keyledger.services.storage.checkpoints import Checkpoints
from keyledger.services.storage.database import Database
from keyledger.services.storage.event_store import EventStore
from keyledger.services.storage.notifications import listening

log = logging.getLogger("keyledger.relay")
RELAY = "relay"


class Relay:
    """Publishes every stored event once per position, resuming from its checkpoint.

    Re-publishing after a crash is harmless: ``Nats-Msg-Id`` is the event id, so JetStream
    drops duplicates within its window, and consumers skip versions they already have.
    """

    def __init__(self, db: Database, store: EventStore, checkpoints: Checkpoints, bus: Bus, settings: Settings,
                 page_size: int = 1000, ack_timeout: float = 5.0) -> None:
        self._db, self._store, self._checkpoints = db, store, checkpoints
        self._publisher = EventPublisher(bus, settings, ack_timeout)
        self._page_size = page_size
        self.published = 0
        self.position = 0  # the global position published up to (the checkpoint)

    async def publish_pending(self) -> int:
        """Publish every event after the checkpoint, page by page; returns how many."""
        position, _ = await self._checkpoints.read(RELAY)
        self.position = position
        metrics.RELAY_POSITION.set(position)
        total = 0
        while page := await self._store.read_page(position, self._page_size):
            sequence = await self._publisher.publish(page)
            position = page[-1].global_position
            await self._checkpoints.save(RELAY, position, sequence)
            total += len(page)
            self.published += len(page)
            self.position = position
            metrics.RELAY_PUBLISHED.inc(len(page))
            metrics.RELAY_BATCH.observe(len(page))
            metrics.RELAY_POSITION.set(position)
        return total

    async def run(self, stop: asyncio.Event, poll_interval: float = 0.5) -> None:
        """Publish until ``stop`` is set, woken by Postgres NOTIFY or every ``poll_interval``."""
        backoff, ready = 0.1, False
        async with listening(self._db) as notified:
            while not stop.is_set():
                try:
                    if not ready:
                        await self._publisher.ready()
                        ready = True
                    if await self.publish_pending():
                        backoff = 0.1
                        continue
                except BusError as exc:
                    log.warning("publishing paused (%s); retrying in %.1fs", exc, backoff)
                    await sleep_or_stop(stop, backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                await notified(poll_interval)
