"""The in-memory key cache of an API process: starts from Postgres, follows JetStream live."""

from __future__ import annotations

import asyncio
import logging

from keyledger.domain.key import KeyState
from keyledger.domain.recorded import RecordedEvent
from keyledger.projections.key_cache import KeyCache, Outcome, apply_at
from keyledger.services.messaging.feed import EventFeed
from keyledger.services.storage.event_store import EventStore
from keyledger.services.storage.key_cache_table import KeyCacheTable

log = logging.getLogger("keyledger.live_cache")


class LiveKeyCache:
    """Every key's state in a dict: O(1) lookup, updated as events arrive over JetStream."""

    def __init__(self, store: EventStore, table: KeyCacheTable, feed: EventFeed) -> None:
        self._store, self._table, self._feed = store, table, feed
        self._keys: KeyCache = {}
        self._repairs: dict[str, asyncio.Task[None]] = {}
        self.position = 0  # highest global position applied
        self.stream_seq = 0  # JetStream sequence of the last message seen

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
        self._keys, self.position, self.stream_seq = await self._table.load()
        await self.resubscribe()

    async def resubscribe(self) -> None:
        """(Re)start following the stream after the last message seen: at start and whenever the NATS
        connection comes back (the ordered consumer lives in server memory and is gone after a restart)."""
        await self._feed.follow(self.stream_seq, self._on_event)

    async def stop(self) -> None:
        """Stop following the stream."""
        await self._feed.stop()
        for task in self._repairs.values():
            task.cancel()

    async def lag(self) -> int:
        """How many events the store holds beyond what this cache has applied."""
        return max(0, await self._store.head_position() - self.position)

    async def _on_event(self, recorded: RecordedEvent, stream_seq: int) -> None:
        self.stream_seq = max(self.stream_seq, stream_seq)
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
