"""The ``webhooks`` worker role: the feeder, the expiry checker and the dispatcher in one process that needs
Postgres only. One such process works at a time (an advisory lock); another one stands by until it is free."""

from __future__ import annotations

import asyncio
import logging

from keyledger.services.clock import Clock, sleep_or_stop
from keyledger.services.storage.database import Database, StorageError
from keyledger.services.storage.locks import WEBHOOKS, leading
from keyledger.services.storage.notifications import listening
from keyledger.services.webhooks.dispatcher import Dispatcher
from keyledger.services.webhooks.expiry import CHECK_EVERY, ExpiryChecker
from keyledger.services.webhooks.feeder import LifecycleFeeder

log = logging.getLogger("keyledger.webhooks")


class WebhooksWorker:
    """Feeds notices from the event store and the clock, and delivers them."""

    def __init__(self, db: Database, feeder: LifecycleFeeder, checker: ExpiryChecker, dispatcher: Dispatcher,
                 clock: Clock) -> None:
        self._db, self.feeder, self.checker, self.dispatcher, self._clock = db, feeder, checker, dispatcher, clock
        self._check_now = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, once this process holds the webhooks lock (retried through outages)."""
        while not stop.is_set():
            try:
                async with leading(self._db, WEBHOOKS, stop) as leader:
                    if not leader:
                        return
                    log.info("webhooks: feeding and delivering")
                    async with asyncio.TaskGroup() as group:  # one part failing stops the others, then all retry
                        for part in (self._feed(stop), self._check(stop), self.dispatcher.run(stop)):
                            group.create_task(part)
            except* StorageError as failures:
                log.warning("webhooks: database unavailable (%s); retrying", failures.exceptions[0])
                await sleep_or_stop(stop, 1.0)

    async def _feed(self, stop: asyncio.Event, poll: float = 1.0) -> None:
        """Feed the store's new events, woken by their NOTIFY (or every ``poll`` seconds)."""
        async with listening(self._db) as notified:
            while not stop.is_set():
                await self.feeder.feed_pending()
                if self.feeder.soonest is not None and self.feeder.soonest <= self._clock():
                    self._check_now.set()  # e.g. a key created inside a warning threshold
                await notified(poll)

    async def _check(self, stop: asyncio.Event) -> None:
        """Tell due deadlines at once, then every ``CHECK_EVERY`` seconds or when the feeder asks."""
        while not stop.is_set():
            try:
                await self.checker.check()
            except StorageError as exc:
                log.warning("webhooks: expiry check failed (%s); will retry", exc)
            waits = [asyncio.create_task(self._check_now.wait()), asyncio.create_task(stop.wait())]
            await asyncio.wait(waits, timeout=CHECK_EVERY, return_when=asyncio.FIRST_COMPLETED)
            for waiting in waits:
                waiting.cancel()
            self._check_now.clear()
