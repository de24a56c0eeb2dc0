"""The in-memory key cache of an API process: starts from Postgres, follows JetStream live."""

from __future__ import annotations

import asyncio
import logging

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from psycopg_pool import AsyncConnectionPool

from keyledger.domain.key import KeyState
from keyledger.projections.key_cache import KeyCache, Outcome, apply_at
from keyledger.services.messaging import bus
from keyledger.services.config import Settings
from keyledger.services.storage.event_store import PostgresEventStore
from keyledger.domain.recorded import RecordedEvent
from keyledger.services.storage.key_cache_table import PROJECTOR, load_all
from keyledger.services.storage.checkpoints import read_checkpoint

log = logging.getLogger("keyledger.live_cache")


class LiveKeyCache:
    """Every key's state in a dict: O(1) lookup, updated as events arrive over JetStream."""

    def __init__(self, pool: AsyncConnectionPool, js: JetStreamContext, settings: Settings) -> None:
        self._pool, self._js, self._settings = pool, js, settings
        self._store = PostgresEventStore(pool)
        self._keys: KeyCache = {}
        self._repairs: dict[str, asyncio.Task[None]] = {}
        self._subscription: object | None = None
        self.position = 0  # highest global position applied
        self.stream_seq = 0  # JetStream sequence of the last message seen
        self.changed = asyncio.Condition()

    def get(self, key_id: str) -> KeyState | None:
        """The key's current state, or None if unknown."""
        return self._keys.get(key_id)

    def __len__(self) -> int:
        return len(self._keys)

    def states(self) -> list[KeyState]:
        """A snapshot of every key's state."""
        return list(self._keys.values())

    def apply_local(self, recorded: list[RecordedEvent]) -> None:
        """Apply events this process just appended, before JetStream brings them back.

        The process that revoked or rotated a key must never again accept the old secret,
        not even for the milliseconds the round trip through the relay takes.
        """
        for event in recorded:
            apply_at(self._keys, event.event, event.version)

    async def start(self) -> None:
        """Load the Postgres read model, then follow the stream from the message after its checkpoint."""
        async with self._pool.connection() as conn:
            self.position, self.stream_seq = await read_checkpoint(conn, PROJECTOR)
            self._keys = await load_all(conn)
        await bus.ensure_stream(self._js, self._settings)
        await self.resubscribe()

    async def resubscribe(self) -> None:
        """(Re)start following the stream after the last message seen.

        Called at start and whenever the NATS connection comes back: the ordered consumer
        lives in server memory and is gone after a server restart. A checkpoint beyond the
        stream's end means the stream was recreated, so it is followed from its beginning
        (versions already applied are skipped; missing ones are repaired from the store).
        """
        if self._subscription is not None:
            try:
                await self._subscription.unsubscribe()  # type: ignore[attr-defined]
            except Exception as exc:  # the old consumer may be gone with the server
                log.info("old subscription could not be closed (%s)", type(exc).__name__)
        last = (await self._js.stream_info(self._settings.nats_stream)).state.last_seq
        start = (ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.stream_seq + 1)
                 if 0 < self.stream_seq <= last else ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
        self._subscription = await self._js.subscribe(
            bus.all_subjects(self._settings), stream=self._settings.nats_stream, cb=self._on_message,
            ordered_consumer=True, config=start, idle_heartbeat=0.5)

    async def stop(self) -> None:
        """Stop following the stream."""
        if self._subscription is not None:
            await self._subscription.unsubscribe()  # type: ignore[attr-defined]
            self._subscription = None
        for task in self._repairs.values():
            task.cancel()

    async def lag(self) -> int:
        """How many events the store holds beyond what this cache has applied."""
        return max(0, await self._store.head_position() - self.position)

    async def wait_for_position(self, position: int, timeout: float) -> bool:
        """Wait until events up to ``position`` are applied; False on timeout."""
        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(lambda: self.position >= position), timeout)
            except asyncio.TimeoutError:
                return False
        return True

    async def _on_message(self, msg: Msg) -> None:
        recorded = bus.decode_message(msg.data)
        self.stream_seq = max(self.stream_seq, msg.metadata.sequence.stream)
        self._apply(recorded)
        async with self.changed:
            self.changed.notify_all()

    def _apply(self, recorded: RecordedEvent) -> None:
        outcome = apply_at(self._keys, recorded.event, recorded.version)
        if outcome is Outcome.GAP and recorded.stream_id not in self._repairs:
            self._repairs[recorded.stream_id] = asyncio.create_task(self._repair(recorded.stream_id))
        self.position = max(self.position, recorded.global_position)

    async def _repair(self, stream_id: str) -> None:
        try:
            current = self._keys.get(stream_id)
            for recorded in await self._store.read_stream(stream_id, current.version if current else 0):
                apply_at(self._keys, recorded.event, recorded.version)
            log.warning("repaired a version gap in %s from the store", stream_id)
        finally:
            self._repairs.pop(stream_id, None)
