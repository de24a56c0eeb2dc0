"""Durable pull consumers: fetch a batch, let the caller store it, then ack (or terminate) each message."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import Error as JetStreamError

from keyledger.services.clock import sleep_or_stop
from keyledger.services.messaging.connection import Bus
from keyledger.services.observe import metrics

log = logging.getLogger("keyledger.bus")
ACK_WAIT_SECONDS = 30.0  # a killed consumer's unacked messages come back to another one after this


class Delivery:
    """One fetched message: its body, headers and stream sequence, and how to settle it."""

    __slots__ = ("_msg", "data", "headers", "subject")

    def __init__(self, msg: Msg) -> None:
        self._msg, self.data, self.headers, self.subject = msg, msg.data, dict(msg.headers or {}), msg.subject

    @property
    def seq(self) -> int | None:
        """The message's stream sequence (None if its metadata is unreadable)."""
        try:
            return int(self._msg.metadata.sequence.stream)
        except (nats.errors.Error, ValueError, IndexError):
            return None

    async def ack(self) -> None:
        """Done with it. A lost ack means a redelivery, which consumers skip as a duplicate."""
        try:
            await self._msg.ack()
        except nats.errors.Error as exc:
            log.warning("ack failed (%s); the message will be redelivered and skipped", type(exc).__name__)

    async def term(self) -> None:
        """Never deliver it again (it can never be processed)."""
        try:
            await self._msg.term()
        except nats.errors.Error as exc:
            log.warning("term failed (%s); it will be redelivered and dropped again", type(exc).__name__)


class Consumer:
    """A durable pull consumer on one stream, created when missing (an existing one is used as it is)."""

    def __init__(self, bus: Bus, stream: str, subject: str, durable: str, batch_size: int,
                 ensure_stream: Callable[[], Awaitable[None]], ack_wait: float = ACK_WAIT_SECONDS,
                 linger: float = 0.0) -> None:
        """``linger``: after a fetch that brought fewer than ``batch_size`` messages, keep fetching for up to
        this many seconds, so that one ``process`` call (one transaction) covers more of them."""
        self._bus, self._stream, self._subject, self._durable = bus, stream, subject, durable
        self._batch_size, self._ensure_stream, self._ack_wait = batch_size, ensure_stream, ack_wait
        self._linger = linger

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        await self._ensure_stream()
        return await self._bus._js.pull_subscribe(
            self._subject, durable=self._durable, stream=self._stream,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                                  ack_wait=self._ack_wait, max_ack_pending=20_000))

    async def run(self, stop: asyncio.Event, process: Callable[[list[Delivery]], Awaitable[None]]) -> None:
        """Fetch batches and ``process`` each until ``stop``; ``process`` settles (acks) the deliveries.
        NATS outages are ridden out by subscribing again."""
        subscription: JetStreamContext.PullSubscription | None = None
        while not stop.is_set():
            try:
                if subscription is None:
                    subscription = await self._subscribe()
                msgs = await subscription.fetch(self._batch_size, timeout=0.5)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except (nats.errors.Error, JetStreamError) as exc:
                log.warning("%s: consumer unavailable (%s); retrying", self._durable, type(exc).__name__)
                await sleep_or_stop(stop, 0.5)
                continue
            if self._linger > 0:
                msgs += await self._more(subscription, stop, len(msgs))
            if msgs:
                started = time.perf_counter()
                await process([Delivery(msg) for msg in msgs])
                self._measured(msgs, time.perf_counter() - started)

    async def _more(self, subscription: JetStreamContext.PullSubscription, stop: asyncio.Event,
                    have: int) -> list[Msg]:
        """Messages arriving within ``linger`` seconds of the first, up to a full batch (fewer on stop, or
        when the bus fails: what was fetched is processed either way)."""
        more: list[Msg] = []
        until = time.monotonic() + self._linger
        while have + len(more) < self._batch_size and not stop.is_set():
            left = until - time.monotonic()
            if left < 0.001:
                break
            try:
                more += await subscription.fetch(self._batch_size - have - len(more), timeout=min(left, 0.25))
            except (TimeoutError, nats.errors.TimeoutError):
                continue  # nothing yet: a stop is noticed within a quarter second
            except (nats.errors.Error, JetStreamError):
                break
        return more

    def _measured(self, msgs: list[Msg], seconds: float) -> None:
        metrics.CONSUMED.labels(self._durable).inc(len(msgs))
        metrics.CONSUMER_BATCH.labels(self._durable).observe(len(msgs))
        metrics.CONSUMER_SECONDS.labels(self._durable).observe(seconds)
        try:
            metrics.CONSUMER_LAG.labels(self._durable).set(msgs[-1].metadata.num_pending)
        except (nats.errors.Error, ValueError, IndexError):
            pass
