"""Last-used time per key, kept in memory and written to Postgres in debounced batches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime

from keyledger.services.periodic import every
from keyledger.services.storage.database import StorageError
from keyledger.services.storage.last_used_table import LastUsedTable

log = logging.getLogger("keyledger.last_used")


class LastUsedTracker:
    """``touch`` is a dict write; ``run`` flushes what changed every ``interval`` seconds."""

    def __init__(self, table: LastUsedTable, interval: float = 5.0) -> None:
        self._table, self._interval = table, interval
        self._seen: dict[str, datetime] = {}
        self._dirty: dict[str, datetime] = {}

    def touch(self, key_id: str, at: datetime) -> None:
        """Record a successful use of ``key_id`` at ``at`` (no I/O)."""
        self._seen[key_id] = at
        self._dirty[key_id] = at

    async def flush(self) -> int:
        """Write pending uses to Postgres (never moving a time backwards); returns how many."""
        if not self._dirty:
            return 0
        batch, self._dirty = self._dirty, {}
        try:
            await self._table.save(batch)
        except StorageError:
            for key_id, at in batch.items():  # keep them for the next flush
                self._dirty.setdefault(key_id, at)
            raise
        return len(batch)

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every ``interval`` seconds until ``stop``."""
        await every(stop, self._interval, self.flush, log, "last-used flush", retry=(StorageError,))

    async def lookup(self, key_ids: Iterable[str]) -> dict[str, datetime]:
        """Last-used times of ``key_ids``: the newer of memory and Postgres."""
        ids = list(key_ids)
        stored = await self._table.load(ids)
        for key_id in ids:
            if key_id in self._seen and (key_id not in stored or self._seen[key_id] > stored[key_id]):
                stored[key_id] = self._seen[key_id]
        return stored
