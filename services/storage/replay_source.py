"""Replay's Postgres side: the events of a share of the keys as pages of JSON, and the rebuild table
(``key_cache_rebuild``) that one or more folding processes fill and that is then swapped in for ``key_cache``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any, NamedTuple

from psycopg import AsyncConnection

from keyledger.domain.events import decode_event
from keyledger.projections.key_cache import KeyCache, Outcome, apply_at
from keyledger.services.storage.checkpoints import save_checkpoint
from keyledger.services.storage.database import Database
from keyledger.services.storage.event_store import head_on
from keyledger.services.storage.key_cache_table import (
    PROJECTOR,
    encode_state_into,
    load_keys,
    lock_key_cache,
    upsert_keys,
)

REBUILD = "key_cache_rebuild"
# One round trip per page: the events with positions (start, end] (of one share of the keys) as one JSON
# array for a single decode, and their positions as another. Read through the primary key, in order.
PAGE_QUERY = """
SELECT '[' || string_agg(data::text, ',' ORDER BY global_position) || ']',
       '[' || string_agg(global_position::text, ',' ORDER BY global_position) || ']'
FROM events WHERE global_position > %s AND global_position <= %s
"""
# A key's share: a cheap hash of its id, so every event of a key is in the same share.
SHARE_FILTER = " AND (hashtext(stream_id) & 2147483647) %% %s = %s"


class Share(NamedTuple):
    """Share ``part`` of ``parts``: the keys whose id hashes to ``part`` modulo ``parts``."""

    part: int = 0
    parts: int = 1


ALL = Share()


class EventPage:
    """The events of a share with positions in ``(start, end]`` as one JSON array, and their positions
    (a JSON array of integers, in the same order)."""

    __slots__ = ("start", "end", "json", "positions")

    def __init__(self, start: int, end: int, json: str, positions: str) -> None:
        self.start, self.end, self.json, self.positions = start, end, json, positions


class ReplaySource:
    """Reads the event store for a rebuild, writes the rebuild table and swaps it in."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def url(self) -> str:
        """The database's URL: folding processes connect with it."""
        return self._db.url

    async def head_position(self) -> int:
        """The store's head now: the rebuild folds up to here."""
        async with self._db._connection() as conn:
            return await head_on(conn)

    async def pages(self, head: int, page_size: int, share: Share = ALL) -> AsyncIterator[EventPage]:
        """The share's events up to ``head``, a page per ``page_size`` events of it (pages without any are
        skipped); the next page is requested before this one is handed out, so Postgres builds it while
        the caller folds."""
        span = page_size * share.parts  # positions per page: about page_size events of this share
        query = PAGE_QUERY + (SHARE_FILTER if share.parts > 1 else "")
        extra = (share.parts, share.part) if share.parts > 1 else ()
        async with self._db._connection() as conn:
            def request(start: int) -> asyncio.Future[Any] | None:
                if start >= head:
                    return None
                return asyncio.ensure_future(_fetch(conn, query, (start, min(start + span, head), *extra)))

            start, pending = 0, request(0)
            try:
                while pending is not None:
                    row, pending = await pending, None
                    end = min(start + span, head)
                    pending = request(end)
                    await asyncio.sleep(0)  # let that request go out before the caller folds this page
                    if row is not None and row[0] is not None:
                        yield EventPage(start, end, row[0], row[1])
                    start = end
            finally:
                if pending is not None:  # abandoned early: let the request finish so the connection stays usable
                    with contextlib.suppress(Exception):
                        await pending

    async def create_rebuild(self) -> None:
        """A fresh, empty rebuild table (an earlier one, e.g. of a failed replay, is dropped)."""
        async with self._db._connection() as conn:
            await conn.execute(f"DROP TABLE IF EXISTS {REBUILD}")
            await conn.execute(f"CREATE TABLE {REBUILD} (key_id text NOT NULL, version integer NOT NULL, "
                               "position bigint NOT NULL, state jsonb NOT NULL)")

    async def write_rebuild(self, model: KeyCache, last_positions: dict[str, int]) -> None:
        """COPY ``model``'s keys, each with its last event's position, into the rebuild table."""
        async with self._db._connection() as conn, conn.cursor().copy(
                f"COPY {REBUILD} (key_id, version, position, state) FROM STDIN") as copy:
            for chunk in copy_text(model, last_positions):
                await copy.write(chunk)

    async def drop_rebuild(self) -> None:
        """Drop the rebuild table (a failed replay: nothing is swapped in)."""
        async with self._db._connection() as conn:
            await conn.execute(f"DROP TABLE IF EXISTS {REBUILD}")

    async def swap_rebuilt(self, head: int) -> tuple[int, int]:
        """Swap the rebuild table (every key folded up to ``head``) in for ``key_cache``.

        Events committed while the rebuild ran are applied inside the swap transaction, under
        the projector's lock, so nothing falls between the rebuilt table and the live projector.
        Returns the new checkpoint position and how many late events were applied.
        """
        async with self._db._connection() as conn:
            await conn.execute(f"ALTER TABLE {REBUILD} ADD CONSTRAINT {REBUILD}_pkey PRIMARY KEY (key_id)")
            await conn.execute(f"GRANT SELECT, INSERT, UPDATE ON {REBUILD} TO keyledger_app")  # as 0010
            async with conn.transaction():
                await lock_key_cache(conn)
                position, late = await _catch_up(conn, head)
                await conn.execute("DROP TABLE key_cache")
                await conn.execute(f"ALTER TABLE {REBUILD} RENAME TO key_cache")
                await conn.execute(f"ALTER TABLE key_cache RENAME CONSTRAINT {REBUILD}_pkey TO key_cache_pkey")
                await save_checkpoint(conn, PROJECTOR, position, 0)
        return position, late

    async def swap_in(self, model: KeyCache, last_positions: dict[str, int], head: int) -> tuple[int, int]:
        """Write ``model`` (folded up to ``head`` in this process) to a fresh rebuild table and swap it in
        (see :meth:`swap_rebuilt`)."""
        await self.create_rebuild()
        await self.write_rebuild(model, last_positions)
        return await self.swap_rebuilt(head)


def copy_text(model: KeyCache, last_positions: dict[str, int], chunk_bytes: int = 1 << 20) -> Iterator[bytearray]:
    """The rebuild table's rows in COPY's text format, in chunks of about ``chunk_bytes``. Each state is
    encoded straight into the chunk (no bytes object per row: half the cost of ``write_row``)."""
    chunk = bytearray()
    for key_id, state in model.items():
        chunk += b"%s\t%d\t%d\t" % (_copy_field(key_id), state.version, last_positions[key_id])
        start = len(chunk)
        encode_state_into(state, chunk)
        if chunk.find(b"\\", start) >= 0:  # COPY text escapes backslashes (JSON has no raw tabs or newlines)
            chunk[start:] = chunk[start:].replace(b"\\", b"\\\\")
        chunk += b"\n"
        if len(chunk) >= chunk_bytes:
            yield chunk
            chunk = bytearray()
    if chunk:
        yield chunk


def _copy_field(text: str) -> bytes:
    """``text`` escaped for COPY's text format."""
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text.encode()


async def _fetch(conn: AsyncConnection, query: str, params: tuple[int, ...]) -> tuple[Any, ...] | None:
    return await (await conn.execute(query, params)).fetchone()


async def _catch_up(conn: AsyncConnection, head: int) -> tuple[int, int]:
    """Apply events committed after ``head`` to the rebuild table; returns the new position and how many."""
    cur = await conn.execute(
        "SELECT stream_id, version, global_position, data::text FROM events WHERE global_position > %s "
        "ORDER BY global_position", (head,))
    rows = await cur.fetchall()
    if not rows:
        return head, 0
    model = await load_keys(conn, {row[0] for row in rows}, table=REBUILD)
    changed: dict[str, int] = {}
    for stream_id, version, global_position, data in rows:
        if apply_at(model, decode_event(data), version) is Outcome.APPLIED:
            changed[stream_id] = global_position
    await upsert_keys(conn, [(model[key_id], at) for key_id, at in changed.items()], table=REBUILD)
    return int(rows[-1][2]), len(rows)
