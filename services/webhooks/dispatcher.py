"""The dispatcher: one task per active endpoint, delivering the notices after the endpoint's position that it
receives, one at a time and in order. A notice is done only when a 2xx is recorded with the endpoint's new
position (one transaction), so whatever stops the process meanwhile, the notice is delivered again: at least
once, in store order. A failure is tried again by the retry schedule; when retries are exhausted the endpoint
is marked failing, and it resumes from that notice when enabled again."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from datetime import timedelta

import httpx

from keyledger.domain.notices import StoredNotice
from keyledger.domain.webhooks import RetrySchedule, body_of, headers_of
from keyledger.services.clock import Clock, sleep_or_stop
from keyledger.services.storage.database import Database, StorageError
from keyledger.services.storage.notifications import listening
from keyledger.services.storage.webhook_dispatch import WebhookDispatch
from keyledger.services.storage.webhooks import SigningEndpoint, WebhookEndpoints
from keyledger.services.webhooks.transport import Sender, new_client

log = logging.getLogger("keyledger.webhooks")
IDLE_CHECK = 5.0  # seconds an idle endpoint waits for a wake-up before it looks for notices anyway


class Signal:
    """Wakes every waiter at once (new notices)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        """Wake the current waiters."""
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        """Until the next :meth:`fire`, at most ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            pass


class Dispatcher:
    """Delivers to every active endpoint, each in a task of its own."""

    def __init__(self, db: Database, endpoints: WebhookEndpoints, dispatch: WebhookDispatch, sender: Sender,
                 schedule: RetrySchedule, clock: Clock, jitter: Callable[[], float] = random.random,
                 wall: Callable[[], float] = time.time) -> None:
        # ``wall``: the webhook-timestamp of each attempt is real time whatever ``clock`` says, since receivers
        # compare it with their own clock to refuse replays (the standard's tolerance is five minutes)
        self._db, self._endpoints, self._dispatch, self._sender = db, endpoints, dispatch, sender
        self._schedule, self._clock, self._jitter, self._wall = schedule, clock, jitter, wall
        self._news = Signal()
        self.delivered = 0

    async def run(self, stop: asyncio.Event, poll: float = 1.0) -> None:
        """Follow the active endpoints (woken by Postgres NOTIFY, else every ``poll`` seconds) until ``stop``."""
        tasks: dict[str, asyncio.Task[None]] = {}
        try:
            async with listening(self._db, "keyledger_notices") as notified:
                while not stop.is_set():
                    try:
                        active = {e.id: e for e in await self._endpoints.signing()}
                    except StorageError as exc:
                        log.warning("webhook endpoints unavailable (%s); retrying", exc)
                        await sleep_or_stop(stop, poll)
                        continue
                    for endpoint_id in [i for i, task in tasks.items() if task.done() or i not in active]:
                        tasks.pop(endpoint_id).cancel()
                    for endpoint_id, endpoint in active.items():
                        if endpoint_id not in tasks:
                            tasks[endpoint_id] = asyncio.create_task(self._serve(endpoint, stop))
                    self._news.fire()
                    await notified(poll)
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)

    async def _serve(self, endpoint: SigningEndpoint, stop: asyncio.Event) -> None:
        """Deliver to ``endpoint`` until it is no longer active or ``stop``."""
        async with new_client() as client:
            while not stop.is_set():
                try:
                    notice = await self._dispatch.next_notice(endpoint)
                    if notice is None:
                        await self._news.wait(IDLE_CHECK)
                        continue
                    if not await self._attempt(endpoint, notice, client, stop):
                        return
                except StorageError as exc:
                    log.warning("webhook %s: database unavailable (%s); retrying", endpoint.id, exc)
                    await sleep_or_stop(stop, 1.0)

    async def _attempt(self, endpoint: SigningEndpoint, notice: StoredNotice, client: httpx.AsyncClient,
                       stop: asyncio.Event) -> bool:
        """One attempt at ``notice`` once it is due; False when the endpoint stopped being active."""
        pending = await self._dispatch.pending(endpoint.id, notice.position)
        if pending is not None and pending.next_attempt_at is not None:
            wait = (pending.next_attempt_at - self._clock()).total_seconds()
            if wait > 0:
                await sleep_or_stop(stop, wait)
                return True
        body = body_of(notice)
        headers = headers_of(notice, endpoint.secret, int(self._wall()), body)
        outcome = await self._sender.post(client, endpoint.url, body, headers)
        now = self._clock()
        if outcome.delivered:
            self.delivered += 1
            return await self._dispatch.delivered(endpoint.id, notice, outcome.status or 200, now)
        since = pending.retrying_since if pending is not None and pending.retrying_since is not None else now
        failures = (pending.failures if pending is not None and pending.retrying_since is not None else 0) + 1
        error = outcome.error or "failed"
        if self._schedule.gives_up(since, now):
            log.warning("webhook %s: %s failed for %s; the endpoint is failing until enabled again (%s)",
                        endpoint.id, notice.message_id, now - since, error)
            await self._dispatch.failed(endpoint.id, notice, outcome.status, error, now, None)
            return False
        delay = self._schedule.delay(failures, self._jitter())
        await self._dispatch.failed(endpoint.id, notice, outcome.status, error, now, now + timedelta(seconds=delay))
        log.info("webhook %s: %s failed (%s); next attempt in %.1f s", endpoint.id, notice.message_id, error, delay)
        await sleep_or_stop(stop, delay)
        return True
