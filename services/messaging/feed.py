"""The live feed of key events for an API process: an ordered push consumer that resumes where it left off."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from keyledger.domain.recorded import RecordedEvent
from keyledger.services.config import Settings
from keyledger.services.messaging.connection import Bus
from keyledger.services.messaging.streams import all_subjects, decode_message, ensure_event_stream, last_sequence

log = logging.getLogger("keyledger.feed")
OnEvent = Callable[[RecordedEvent, int], Awaitable[None]]  # (event, its stream sequence)


class EventFeed:
    """Delivers every key event after a given stream sequence to ``on_event``, in stream order."""

    def __init__(self, bus: Bus, settings: Settings) -> None:
        self._bus, self._settings = bus, settings
        self._subscription: object | None = None
        self._changing = asyncio.Lock()  # a (re)connection and the start may both ask to follow at once

    @property
    def following(self) -> bool:
        """Whether a subscription is in place."""
        return self._subscription is not None

    @property
    def connected(self) -> bool:
        """Whether NATS is connected now."""
        return self._bus.is_connected

    async def follow(self, after_seq: int, on_event: OnEvent) -> None:
        """(Re)start following after ``after_seq``. A sequence beyond the stream's end means the stream
        was recreated, so it is followed from its beginning (consumers skip versions they have)."""
        async with self._changing:
            await self._follow(after_seq, on_event)

    async def _follow(self, after_seq: int, on_event: OnEvent) -> None:
        await self.stop()
        await ensure_event_stream(self._bus, self._settings)
        last = await last_sequence(self._bus, self._settings.nats_stream)
        start = (ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after_seq + 1)
                 if 0 < after_seq <= last else ConsumerConfig(deliver_policy=DeliverPolicy.ALL))

        async def deliver(msg: Msg) -> None:
            await on_event(decode_message(msg.data), msg.metadata.sequence.stream)

        self._subscription = await self._bus._js.subscribe(
            all_subjects(self._settings), stream=self._settings.nats_stream, cb=deliver,
            ordered_consumer=True, config=start, idle_heartbeat=0.5)

    async def stop(self) -> None:
        """Stop following (a consumer gone with a restarted server is fine)."""
        if self._subscription is None:
            return
        subscription, self._subscription = self._subscription, None
        try:
            await subscription.unsubscribe()  # type: ignore[attr-defined]
        except Exception as exc:  # the old consumer may be gone with the server
            log.info("old subscription could not be closed (%s)", type(exc).__name__)
