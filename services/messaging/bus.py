"""NATS JetStream plumbing shared by the relay, the projector and the live cache."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

import msgspec
import nats
import nats.errors
import psycopg
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import Error as JetStreamError
from nats.js.errors import NotFoundError

from keyledger.services.config import Settings
from keyledger.domain.recorded import RecordedEvent

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


async def connect(url: str, name: str, **options: Any) -> Client:
    """Connect to NATS, reconnecting forever when the server goes away later."""
    async def on_error(exc: Exception) -> None:
        log.warning("nats %s: %s", name, exc)

    settings: dict[str, Any] = {
        "name": name, "max_reconnect_attempts": -1, "reconnect_time_wait": 0.25,
        "connect_timeout": 2, "error_cb": on_error,
    }
    settings.update(options)
    return await nats.connect(url, **settings)


async def ensure_stream(js: JetStreamContext, settings: Settings) -> None:
    """Create the events stream if it is missing (file storage, de-duplication window)."""
    config = StreamConfig(
        name=settings.nats_stream, subjects=[all_subjects(settings)], storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    )
    try:
        await js.stream_info(settings.nats_stream)
    except NotFoundError:
        await js.add_stream(config)
        log.info("created JetStream stream %s", settings.nats_stream)


async def ensure_usage_stream(js: JetStreamContext, settings: Settings) -> None:
    """Create the usage-events stream if it is missing (file storage, de-duplication window)."""
    try:
        await js.stream_info(settings.usage_stream)
    except NotFoundError:
        await js.add_stream(StreamConfig(
            name=settings.usage_stream, subjects=[settings.usage_subject], storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_SECONDS))
        log.info("created JetStream stream %s", settings.usage_stream)


Subscribe = Callable[[], Awaitable[JetStreamContext.PullSubscription]]


async def consume(stop: asyncio.Event, subscribe: Subscribe, batch_size: int,
                  process: Callable[[list[Msg]], Awaitable[None]], name: str) -> None:
    """Fetch batches from a durable pull consumer and ``process`` each, until ``stop``.

    NATS outages are ridden out by subscribing again.
    """
    subscription: JetStreamContext.PullSubscription | None = None
    while not stop.is_set():
        try:
            if subscription is None:
                subscription = await subscribe()
            msgs = await subscription.fetch(batch_size, timeout=0.5)
        except (asyncio.TimeoutError, nats.errors.TimeoutError):
            continue
        except (nats.errors.Error, JetStreamError) as exc:
            log.warning("%s: consumer unavailable (%s); retrying", name, type(exc).__name__)
            await asyncio.sleep(0.5)
            continue
        if msgs:
            await process(msgs)


async def retry_database(stop: asyncio.Event, action: Callable[[], Awaitable[None]], name: str) -> None:
    """Run ``action`` until it succeeds or ``stop`` is set; database errors mean wait, never drop."""
    while not stop.is_set():
        try:
            await action()
            return
        except psycopg.Error as exc:  # an outage, or e.g. a missing table
            log.warning("%s: database unavailable (%s %s); retrying the batch", name, type(exc).__name__,
                        exc.sqlstate or "")
            await asyncio.sleep(0.5)
