"""Usage batches onto JetStream: one message per batch, ``Nats-Msg-Id`` = batch id (a re-send is dropped)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid

import nats.errors
from nats.js.errors import Error as JetStreamError

from keyledger.services.config import Settings
from keyledger.services.messaging.connection import Bus
from keyledger.services.messaging.consume import Consumer, Delivery
from keyledger.services.messaging.streams import ensure_usage_stream

log = logging.getLogger("keyledger.usage")
_SEND_ERRORS = (asyncio.TimeoutError, nats.errors.Error, JetStreamError, OSError)
BATCH_HEADERS = ("Kl-Batch-Id", "Nats-Msg-Id")  # where a message's batch id is read, in this order


def batch_id_of(delivery: Delivery) -> uuid.UUID:
    """The message's batch id from its headers; without a valid one, a uuid derived from the body (so a
    redelivery of the same message is still recognised). The audit sink and the watch read it alike."""
    for name in BATCH_HEADERS:
        try:
            return uuid.UUID(delivery.headers[name])
        except (KeyError, ValueError):
            continue
    return uuid.UUID(bytes=hashlib.sha256(delivery.data).digest()[:16], version=5)


class UsagePublisher:
    """Publishes usage batches; every failure is a False, never an exception."""

    def __init__(self, bus: Bus, settings: Settings) -> None:
        self._bus, self._settings = bus, settings

    @property
    def max_payload(self) -> int:
        """The largest batch body the server accepts."""
        return self._bus.max_payload

    async def ready(self) -> bool:
        """Connected, and the usage stream exists (created if missing)."""
        if not self._bus.is_connected:
            return False
        try:
            await ensure_usage_stream(self._bus, self._settings)
            return True
        except _SEND_ERRORS as exc:
            log.warning("usage stream unavailable (%s)", type(exc).__name__)
            return False

    async def publish(self, batch_id: str, body: bytes) -> bool:
        """Publish one batch and wait for the stream's ack; False when NATS did not take it."""
        if not self._bus.is_connected:
            return False
        try:
            await self._bus._js.publish(self._settings.usage_subject, body, timeout=2.0,
                                        headers={"Nats-Msg-Id": batch_id, "Kl-Batch-Id": batch_id})
        except _SEND_ERRORS as exc:
            log.warning("usage batch not published (%s); spooling", type(exc).__name__)
            return False
        return True


def usage_consumer(bus: Bus, settings: Settings, durable: str, batch_size: int) -> Consumer:
    """The audit sink's durable consumer of usage batches."""
    return Consumer(bus, settings.usage_stream, settings.usage_subject, durable, batch_size,
                    lambda: ensure_usage_stream(bus, settings), linger=settings.sink_linger_ms / 1000)
