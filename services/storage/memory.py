"""The in-memory event store: the fake that passes the same contract tests as the Postgres one.

No I/O. Events are kept encoded, as the Postgres store keeps them as JSON, and decoded on every
read, so no caller can change what is stored through an object it passed in or got back.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import msgspec

from keyledger.domain.errors import ConcurrencyError
from keyledger.domain.events import Event, decode_event, encode_event, event_type
from keyledger.domain.recorded import Metadata, RecordedEvent
from keyledger.services.clock import Clock, utc_now
from keyledger.services.storage.event_store import pages_of

_meta_encoder = msgspec.json.Encoder()
_meta_decoder = msgspec.json.Decoder(Metadata)


class _Row(msgspec.Struct, frozen=True, kw_only=True):
    """One stored event: the envelope plus the event and metadata as JSON (like a table row)."""

    global_position: int
    event_id: uuid.UUID
    stream_id: str
    version: int
    type: str
    data: bytes
    metadata: bytes
    recorded_at: datetime

    def decode(self) -> RecordedEvent:
        """A fresh RecordedEvent decoded from this row."""
        return RecordedEvent(
            global_position=self.global_position, event_id=self.event_id, stream_id=self.stream_id,
            version=self.version, type=self.type, event=decode_event(self.data),
            metadata=_meta_decoder.decode(self.metadata), recorded_at=self.recorded_at,
        )


class InMemoryEventStore:
    """An :class:`~keyledger.services.storage.event_store.EventStore` held in a list.

    Global positions are 1, 2, 3... in append order (the list index plus one); each stream
    keeps the positions of its events in version order. Every operation first yields to the
    event loop once, as real I/O would, and then runs without awaiting, so an append checks
    the expected version and writes atomically.
    """

    def __init__(self, clock: Clock = utc_now) -> None:
        self._clock = clock
        self._log: list[_Row] = []
        self._streams: dict[str, list[int]] = {}

    async def append(
        self, stream_id: str, expected_version: int, events: Sequence[Event], metadata: Metadata | None = None
    ) -> list[RecordedEvent]:
        """Append ``events`` after ``expected_version`` (0 for a new stream), all or nothing.

        Raises ConcurrencyError when the stream is not at ``expected_version``. An empty
        ``events`` returns ``[]`` without checking the version, as the Postgres store does.
        """
        await asyncio.sleep(0)
        if not events:
            return []
        positions = self._streams.get(stream_id, [])
        if len(positions) != expected_version:
            raise ConcurrencyError(f"stream {stream_id} is at version {len(positions)}, expected {expected_version}")
        base, at, meta = len(self._log), self._clock(), _meta_encoder.encode(metadata or Metadata())
        rows = [
            _Row(global_position=base + i, event_id=uuid.uuid4(), stream_id=stream_id, version=expected_version + i,
                 type=event_type(event), data=encode_event(event), metadata=meta, recorded_at=at)
            for i, event in enumerate(events, 1)
        ]
        self._log.extend(rows)
        self._streams.setdefault(stream_id, []).extend(row.global_position for row in rows)
        return [row.decode() for row in rows]

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version (0 when it has no events)."""
        await asyncio.sleep(0)
        return len(self._streams.get(stream_id, ()))

    async def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        """All events of one stream after ``after_version``, in version order."""
        await asyncio.sleep(0)
        positions = self._streams.get(stream_id, [])[max(after_version, 0):]
        return [self._log[position - 1].decode() for position in positions]

    async def read_page(self, after_position: int, limit: int = 1000) -> list[RecordedEvent]:
        """Up to ``limit`` events with global position above ``after_position``, in order."""
        if limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        await asyncio.sleep(0)
        start = max(after_position, 0)
        return [row.decode() for row in self._log[start:start + limit]]

    async def read_all(self, after_position: int = 0, page_size: int = 5000) -> AsyncIterator[list[RecordedEvent]]:
        """Every event after ``after_position`` as pages (events appended meanwhile included)."""
        async for page in pages_of(self, after_position, page_size):
            yield page

    async def head_position(self) -> int:
        """The highest global position appended so far (0 for an empty store)."""
        await asyncio.sleep(0)
        return len(self._log)
