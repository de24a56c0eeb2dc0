"""Replay's Postgres side: every event as pages of JSON, and the swap of a rebuilt ``key_cache`` table."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from psycopg import AsyncConnection

from keyledger.domain.events import decode_event
from keyledger.domain.key import KeyState
from keyledger.projections.key_cache import KeyCache, Outcome, apply_at
from keyledger.services.storage.checkpoints import save_checkpoint
from keyledger.services.storage.database import Database
from keyledger.services.storage.event_store import head_on
from keyledger.services.storage.key_cache_table import PROJECTOR, encode_state, lock_key_cache, upsert_keys

# One round trip per page, and the page's events as one JSON array for a single decode.
PAGE_QUERY = """
SELECT '[' || string_agg(data::text, ',' ORDER BY global_position) || ']', max(global_position), count(*)
FROM (SELECT data, global_position FROM events WHERE global_position > %s
      ORDER BY global_position LIMIT %s) page
"""


class EventPage:
    """Events ``(start, end]`` by global position as one JSON array; ``count`` < ``end - start`` means gaps."""

    __slots__ = ("start", "end", "count", "json")

    def __init__(self, start: int, end: int, count: int, json: str) -> None:
        self.start, self.end, self.count, self.json = start, end, count, json


class ReplaySource:
    """Reads the whole event store for a rebuild and swaps the rebuilt table in."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def head_position(self) -> int:
        """The store's head now: the rebuild folds up to here."""
        async with self._db._connection() as conn:
            return await head_on(conn)

    async def pages(self, head: int, page_size: int) -> AsyncIterator[EventPage]:
        """Every event up to ``head`` in pages; the next page is requested before this one is handed out,
        so Postgres builds it while the caller folds."""
        async with self._db._connection() as conn:
            position = 0
            pending = _request(conn, position, head, page_size)
            try:
                while pending is not None:
                    row, pending = await pending, None
                    if row is None or row[0] is None:
                        return
                    start, position = position, int(row[1])
                    pending = _request(conn, position, head, page_size)
                    await asyncio.sleep(0)  # let that request go out before the caller folds this page
                    yield EventPage(start, position, int(row[2]), row[0])
            finally:
                if pending is not None:  # abandoned early: let the request finish so the connection stays usable
                    with contextlib.suppress(Exception):
                        await pending

    async def swap_in(self, model: KeyCache, last_positions: dict[str, int] | None,
                      head: int) -> tuple[int, int]:
        """Write ``model`` (folded up to ``head``) to a fresh table and swap it in for ``key_cache``.

        Events committed while the rebuild ran are applied inside the swap transaction, under
        the projector's lock, so nothing falls between the rebuilt table and the live projector.
        Returns the new checkpoint position and how many late events were applied.
        """
        async with self._db._connection() as conn:
            await conn.execute("DROP TABLE IF EXISTS key_cache_rebuild")
            await conn.execute("CREATE TABLE key_cache_rebuild (key_id text NOT NULL, version integer NOT NULL, "
                               "position bigint NOT NULL, state jsonb NOT NULL)")
            if last_positions is None:
                last_positions = await _last_positions(conn, head)
            async with conn.cursor().copy(
                    "COPY key_cache_rebuild (key_id, version, position, state) FROM STDIN") as copy:
                for key_id, state in model.items():
                    await copy.write_row((key_id, state.version, last_positions[key_id], encode_state(state)))
            await conn.execute(
                "ALTER TABLE key_cache_rebuild ADD CONSTRAINT key_cache_rebuild_pkey PRIMARY KEY (key_id)")
            await conn.execute("GRANT SELECT, INSERT, UPDATE ON key_cache_rebuild TO keyledger_app")  # as 0010
            async with conn.transaction():
                await lock_key_cache(conn)
                position, tail = await _catch_up(conn, model, head)
                await upsert_keys(conn, tail, table="key_cache_rebuild")
                await conn.execute("DROP TABLE key_cache")
                await conn.execute("ALTER TABLE key_cache_rebuild RENAME TO key_cache")
                await conn.execute("ALTER TABLE key_cache RENAME CONSTRAINT key_cache_rebuild_pkey TO key_cache_pkey")
                await save_checkpoint(conn, PROJECTOR, position, 0)
        return position, len(tail)


def _request(conn: AsyncConnection, position: int, head: int, page_size: int) -> asyncio.Future[Any] | None:
    """Start fetching the page after ``position`` (None past ``head``)."""
    if position >= head:
        return None
    return asyncio.ensure_future(_fetch(conn, position, min(page_size, head - position)))


async def _fetch(conn: AsyncConnection, position: int, limit: int) -> tuple[Any, ...] | None:
    return await (await conn.execute(PAGE_QUERY, (position, limit))).fetchone()


async def _last_positions(conn: AsyncConnection, head: int) -> dict[str, int]:
    cur = await conn.execute(
        "SELECT stream_id, max(global_position) FROM events WHERE global_position <= %s GROUP BY stream_id", (head,))
    return {stream_id: position for stream_id, position in await cur.fetchall()}


async def _catch_up(conn: AsyncConnection, model: KeyCache, head: int) -> tuple[int, list[tuple[KeyState, int]]]:
    """Apply events committed after ``head``; returns the new position and the changed rows."""
    cur = await conn.execute(
        "SELECT stream_id, version, global_position, data::text FROM events WHERE global_position > %s "
        "ORDER BY global_position", (head,))
    changed: dict[str, tuple[KeyState, int]] = {}
    position = head
    for stream_id, version, global_position, data in await cur.fetchall():
        event = decode_event(data)
        if apply_at(model, event, version) is Outcome.APPLIED:
            changed[stream_id] = (model[stream_id], global_position)
        position = global_position
    return position, list(changed.values())
