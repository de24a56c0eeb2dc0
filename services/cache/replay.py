"""Replay: rebuild the key cache from the event store into a fresh table and swap it in."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from typing import Any, Callable, Iterator

import msgspec
from psycopg import AsyncConnection

from keyledger.domain.events import AnyEvent, decode_event
from keyledger.domain.key import KeyState
from keyledger.projections.key_cache import KeyCache, Outcome, apply, apply_at
from keyledger.services.storage.event_store import PostgresEventStore
from keyledger.services.storage.key_cache_table import PROJECTOR, encode_state, lock_key_cache, upsert_keys
from keyledger.services.storage.checkpoints import save_checkpoint

Progress = Callable[[int, int], None]  # (events replayed so far, events to replay)

# One round trip per page, and the page's events as one JSON array for a single decode.
_PAGE = """
SELECT '[' || string_agg(data::text, ',' ORDER BY global_position) || ']', max(global_position), count(*)
FROM (SELECT data, global_position FROM events WHERE global_position > %s
      ORDER BY global_position LIMIT %s) page
"""
_page_decoder: msgspec.json.Decoder[list[AnyEvent]] = msgspec.json.Decoder(list[AnyEvent])


class ReplayResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a replay did: events folded, keys written, up to which position, how fast."""

    events: int
    keys: int
    position: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        """Replay throughput."""
        return self.events / self.seconds if self.seconds > 0 else float("inf")


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC. Folding allocates millions of acyclic objects (freed by refcounting);
    with the GC on, they trigger collections that rescan the whole, growing key model each time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def _fetch_page(conn: AsyncConnection, position: int, limit: int) -> tuple[Any, ...] | None:
    return await (await conn.execute(_PAGE, (position, limit))).fetchone()


def _request_page(conn: AsyncConnection, position: int, head: int, page_size: int) -> asyncio.Task[Any] | None:
    """Start fetching the page after ``position`` (None past ``head``)."""
    if position >= head:
        return None
    return asyncio.ensure_future(_fetch_page(conn, position, min(page_size, head - position)))


async def _fold(conn: AsyncConnection, head: int, progress: Progress | None,
                page_size: int) -> tuple[KeyCache, int, dict[str, int] | None]:
    """:func:`fold_store`, plus each key's last position (None if some page was not gapless).

    The next page is requested before the current one is folded, so Postgres builds it meanwhile.
    """
    model: KeyCache = {}
    last: dict[str, int] | None = {}
    position = count = 0
    pending = _request_page(conn, position, head, page_size)
    try:
        while pending is not None:
            row, pending = await pending, None
            if row is None or row[0] is None:
                break
            start, position, count = position, row[1], count + row[2]
            pending = _request_page(conn, position, head, page_size)
            await asyncio.sleep(0)  # let that request go out before we fold this page
            events = _page_decoder.decode(row[0])
            if last is not None and position - start == len(events):  # gapless: event i is at start + 1 + i
                for event_position, event in enumerate(events, start + 1):
                    apply(model, event)
                    last[event.key_id] = event_position
            else:
                last = None
                for event in events:
                    apply(model, event)
            if progress:
                progress(count, head)
    finally:
        if pending is not None:  # folding failed: let the request finish so the connection stays usable
            with contextlib.suppress(Exception):
                await pending
    return model, count, last


async def fold_store(conn: AsyncConnection, head: int, progress: Progress | None = None,
                     page_size: int = 20_000) -> tuple[KeyCache, int]:
    """Fold every event up to position ``head`` into a new key cache; returns it and the event count."""
    with _gc_paused():
        model, count, _ = await _fold(conn, head, progress, page_size)
    return model, count


async def replay(conn: AsyncConnection, progress: Progress | None = None, page_size: int = 20_000) -> ReplayResult:
    """Rebuild ``key_cache`` from the store (the source of truth, not NATS) and swap it in atomically.

    Events committed while the rebuild runs are applied inside the swap transaction, under
    the projector's lock, so nothing falls between the rebuilt table and the live projector.
    """
    with _gc_paused():  # the model is freed (by refcounting) when _rebuild returns, before the GC resumes
        return await _rebuild(conn, progress, page_size)


async def _rebuild(conn: AsyncConnection, progress: Progress | None, page_size: int) -> ReplayResult:
    started = time.perf_counter()
    head = await PostgresEventStore.head_on(conn)
    model, count, last_positions = await _fold(conn, head, progress, page_size)
    await conn.execute("DROP TABLE IF EXISTS key_cache_rebuild")
    await conn.execute("CREATE TABLE key_cache_rebuild (key_id text NOT NULL, version integer NOT NULL, "
                       "position bigint NOT NULL, state jsonb NOT NULL)")
    if last_positions is None:
        last_positions = await _last_positions(conn, head)
    async with conn.cursor().copy("COPY key_cache_rebuild (key_id, version, position, state) FROM STDIN") as copy:
        for key_id, state in model.items():
            await copy.write_row((key_id, state.version, last_positions[key_id], encode_state(state)))
    await conn.execute("ALTER TABLE key_cache_rebuild ADD CONSTRAINT key_cache_rebuild_pkey PRIMARY KEY (key_id)")
    async with conn.transaction():
        await lock_key_cache(conn)
        position, tail = await _catch_up(conn, model, head)
        await upsert_keys(conn, tail, table="key_cache_rebuild")
        await conn.execute("DROP TABLE key_cache")
        await conn.execute("ALTER TABLE key_cache_rebuild RENAME TO key_cache")
        await conn.execute("ALTER TABLE key_cache RENAME CONSTRAINT key_cache_rebuild_pkey TO key_cache_pkey")
        await save_checkpoint(conn, PROJECTOR, position, 0)
    return ReplayResult(events=count + len(tail), keys=len(model), position=position,
                        seconds=time.perf_counter() - started)


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
