"""The projector's durable consumer of key events."""

from __future__ import annotations

from keyledger.services.config import Settings
from keyledger.services.messaging.connection import Bus
from keyledger.services.messaging.consume import Consumer
from keyledger.services.messaging.streams import all_subjects, ensure_event_stream


def event_consumer(bus: Bus, settings: Settings, durable: str, batch_size: int) -> Consumer:
    """A durable consumer of every key event (explicit acks)."""
    return Consumer(bus, settings.nats_stream, all_subjects(settings), durable, batch_size,
                    lambda: ensure_event_stream(bus, settings))
