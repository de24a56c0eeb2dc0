"""The JetStream streams: key events (one subject per key) and usage batches; their messages' encoding."""

from __future__ import annotations

import logging

import msgspec
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from keyledger.domain.recorded import RecordedEvent
from keyledger.services.config import Settings
from keyledger.services.messaging.connection import Bus

log = logging.getLogger("keyledger.bus")

DUPLICATE_WINDOW_SECONDS = 120.0
_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[RecordedEvent] = msgspec.json.Decoder(RecordedEvent)


def subject_for(settings: Settings, key_id: str) -> str:
    """The subject an event of ``key_id`` is published on: ``<prefix>.<key_id>``."""
    return f"{settings.nats_subject_prefix}.{key_id}"


def all_subjects(settings: Settings) -> str:
    """The wildcard covering every key's subject."""
    return f"{settings.nats_subject_prefix}.>"


def encode_message(recorded: RecordedEvent) -> bytes:
    """The message body: the event with its envelope, as JSON."""
    return _encoder.encode(recorded)


def decode_message(data: bytes) -> RecordedEvent:
    """The RecordedEvent carried by a message body."""
    return _decoder.decode(data)


def replicas_for(bus: Bus, settings: Settings) -> int:
    """How many copies a new stream keeps: ``KEYLEDGER_STREAM_REPLICAS``, else 3 on a cluster, 1 alone."""
    return settings.stream_replicas or (3 if bus.clustered else 1)


async def _ensure(bus: Bus, settings: Settings, name: str, subjects: list[str]) -> None:
    try:
        await bus._js.stream_info(name)
    except NotFoundError:
        replicas = replicas_for(bus, settings)
        await bus._js.add_stream(StreamConfig(name=name, subjects=subjects, storage=StorageType.FILE,
                                              duplicate_window=DUPLICATE_WINDOW_SECONDS, num_replicas=replicas))
        log.info("created JetStream stream %s (%d replica%s)", name, replicas, "s" if replicas > 1 else "")


async def ensure_event_stream(bus: Bus, settings: Settings) -> None:
    """Create the key events stream if it is missing (file storage, de-duplication window)."""
    await _ensure(bus, settings, settings.nats_stream, [all_subjects(settings)])


async def ensure_usage_stream(bus: Bus, settings: Settings) -> None:
    """Create the usage-events stream if it is missing (file storage, de-duplication window)."""
    await _ensure(bus, settings, settings.usage_stream, [settings.usage_subject])


async def last_sequence(bus: Bus, stream: str) -> int:
    """The stream's last sequence number."""
    return int((await bus._js.stream_info(stream)).state.last_seq)
