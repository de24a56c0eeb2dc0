"""Key events on JetStream: the relay's publisher and the projector's durable consumer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import nats.errors
from nats.js.errors import Error as JetStreamError

from keyledger.domain.recorded import RecordedEvent
from keyledger.services.config import Settings
from keyledger.services.messaging.connection import Bus, BusError
from keyledger.services.messaging.consume import Consumer
from keyledger.services.messaging.streams import all_subjects, encode_message, ensure_event_stream, subject_for

_PUBLISH_ERRORS = (asyncio.TimeoutError, nats.errors.Error, JetStreamError)


class EventPublisher:
    """Publishes stored key events to the event stream, a page at a time; every NATS failure leaves as
    :class:`BusError` (named after what failed)."""

    def __init__(self, bus: Bus, settings: Settings, ack_timeout: float = 5.0) -> None:
        self._bus, self._settings, self._ack_timeout = bus, settings, ack_timeout

    async def ready(self) -> None:
        """Create the event stream if it is missing."""
        try:
            await ensure_event_stream(self._bus, self._settings)
        except _PUBLISH_ERRORS as exc:
            raise BusError(type(exc).__name__) from exc

    async def publish(self, page: Sequence[RecordedEvent]) -> int:
        """Publish ``page`` in order, each on its key's subject with ``Nats-Msg-Id`` = its event id (so
        publishing it again is harmless), and wait up to ``ack_timeout`` for every ack; the stream sequence
        of the last."""
        try:
            futures = [
                await self._bus._js.publish_async(
                    subject_for(self._settings, recorded.stream_id), encode_message(recorded),
                    headers={"Nats-Msg-Id": str(recorded.event_id)})
                for recorded in page
            ]
            acks = await asyncio.wait_for(asyncio.gather(*futures), self._ack_timeout)
        except _PUBLISH_ERRORS as exc:
            raise BusError(type(exc).__name__) from exc
        return int(acks[-1].seq)


def event_consumer(bus: Bus, settings: Settings, durable: str, batch_size: int) -> Consumer:
    """A durable consumer of every key event (explicit acks)."""
    return Consumer(bus, settings.nats_stream, all_subjects(settings), durable, batch_size,
                    lambda: ensure_event_stream(bus, settings))
