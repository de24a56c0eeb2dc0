"""The key cache read model in Postgres: one row per key, written with its checkpoint in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import msgspec
from psycopg import AsyncConnection, sql

from keyledger.domain.key import KeyState
from keyledger.domain.recorded import RecordedEvent
from keyledger.projections.key_cache import KeyCache, Outcome, apply_at
from keyledger.services.storage.checkpoints import read_checkpoint, save_checkpoint
from keyledger.services.storage.database import Database
from keyledger.services.storage.event_store import PostgresEventStore, head_on

log = logging.getLogger("keyledger.projector")

PROJECTOR = "key-cache"  # checkpoint name of the key cache projector
_LOCK = 0x6B63  # advisory lock: projector batches and replay's swap never interleave
_encoder = msgspec.json.Encoder()
_state_decoder: msgspec.json.Decoder[KeyState] = msgspec.json.Decoder(KeyState)


def encode_state(state: KeyState) -> str:
    """A key's state as JSON text for the ``state`` column."""
    return _encoder.encode(state).decode()


def encode_state_into(state: KeyState, buffer: bytearray) -> None:
    """Append a key's state as JSON (as :func:`encode_state` writes it) to ``buffer``."""
    _encoder.encode_into(state, buffer, -1)


def decode_state(text: str | bytes) -> KeyState:
    """The KeyState stored as JSON text."""
    return _state_decoder.decode(text)


async def lock_key_cache(conn: AsyncConnection) -> None:
    """Take the key cache's transaction-scoped write lock."""
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))


async def load_keys(conn: AsyncConnection, key_ids: Iterable[str], table: str = "key_cache") -> KeyCache:
    """The stored states of ``key_ids`` (missing keys are simply absent)."""
    query = sql.SQL("SELECT state::text FROM {} WHERE key_id = ANY(%s)").format(sql.Identifier(table))
    cur = await conn.execute(query, (list(key_ids),))
    return {state.key_id: state for state in (decode_state(row[0]) for row in await cur.fetchall())}


async def load_all(conn: AsyncConnection) -> KeyCache:
    """Every stored key state."""
    cur = await conn.execute("SELECT state::text FROM key_cache")
    return {state.key_id: state for state in (decode_state(row[0]) for row in await cur.fetchall())}


async def upsert_keys(conn: AsyncConnection, rows: Iterable[tuple[KeyState, int]], table: str = "key_cache") -> None:
    """Write ``(state, position)`` rows; a row never goes back to an older version."""
    params = [(state.key_id, state.version, position, encode_state(state)) for state, position in rows]
    if not params:
        return
    async with conn.cursor() as cur:
        await cur.executemany(sql.SQL(
            "INSERT INTO {table} (key_id, version, position, state) VALUES (%s, %s, %s, %s::jsonb) "
            "ON CONFLICT (key_id) DO UPDATE SET version = excluded.version, position = excluded.position, "
            "state = excluded.state WHERE {table}.version < excluded.version").format(table=sql.Identifier(table)),
            params,
        )


class ProjectorStats(msgspec.Struct, kw_only=True):
    """Counts since start: events applied, duplicates skipped, events read from the store that no
    message of the batch named (``filled``), a key's missing versions read (``repaired``), and
    messages claiming events the store does not hold (``forged``)."""

    applied: int = 0
    duplicates: int = 0
    filled: int = 0
    repaired: int = 0
    forged: int = 0


class KeyCacheTable:
    """The ``key_cache`` table and its checkpoint."""

    def __init__(self, db: Database, store: PostgresEventStore) -> None:
        self._db, self._store = db, store

    async def load(self) -> tuple[KeyCache, int, int]:
        """Every stored key state, with the checkpoint ``(position, stream_seq)`` it is consistent with."""
        async with self._db._connection() as conn, conn.transaction():
            # one snapshot for both reads: under READ COMMITTED a projector batch committed between them made
            # the states newer than the checkpoint (their events then read as duplicates, never "applied")
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            position, stream_seq = await read_checkpoint(conn, PROJECTOR)
            return await load_all(conn), position, stream_seq

    async def load_into(self, sink: Callable[[KeyState], object]) -> tuple[int, int]:
        """Hand every stored key state to ``sink`` as it streams in (one state object alive at a time, never
        the whole table), with the checkpoint ``(position, stream_seq)`` the states are consistent with."""
        async with self._db._connection() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")  # as in load()
            position, stream_seq = await read_checkpoint(conn, PROJECTOR)
            decode, rest = _state_decoder.decode, b""
            async with conn.cursor().copy("COPY (SELECT state FROM key_cache) TO STDOUT") as copy:
                async for chunk in copy:
                    lines = (rest + bytes(chunk)).split(b"\n")
                    rest = lines.pop()
                    for line in lines:  # COPY's text format doubles a backslash; JSON has no raw tab or newline
                        sink(decode(line.replace(b"\\\\", b"\\") if b"\\" in line else line))
            return position, stream_seq

    async def apply(self, batch: list[tuple[RecordedEvent, int]], stats: ProjectorStats,
                    checkpoint: str = PROJECTOR) -> None:
        """Apply what the store holds up to the highest position ``batch`` names, and move the
        checkpoint, in one transaction.

        Messages are only notifications: the events applied are read from the store (positions
        are gapless, so every position up to the checkpoint is applied exactly once, also those
        whose messages were skipped, e.g. still unacked by a projector that died). A message
        claiming an event the store does not hold (a forgery on the bus) changes nothing; it is
        counted in ``stats.forged`` and logged. Versions a key already has are skipped, so a
        redelivery changes nothing.
        """
        async with self._db._connection() as conn, conn.transaction():
            await lock_key_cache(conn)
            done, _ = await read_checkpoint(conn, checkpoint)
            claimed = {r.global_position: r for r, _ in batch if r.global_position > done}
            stats.duplicates += len(batch) - len(claimed)
            top = min(max(claimed, default=done), await head_on(conn))
            fresh = await self._store.read_page(done, top - done) if top > done else []
            held = {(r.global_position, r.event_id, r.stream_id, r.version) for r in fresh}
            forged = [r for r in claimed.values()
                      if (r.global_position, r.event_id, r.stream_id, r.version) not in held]
            if forged:
                stats.forged += len(forged)
                log.warning("%d message(s) on the bus claim events the store does not hold (e.g. version %d of "
                            "%s): ignored", len(forged), forged[0].version, forged[0].stream_id)
            stats.filled += len(fresh) - (len(claimed) - len(forged))
            model = await load_keys(conn, {recorded.stream_id for recorded in fresh})
            positions: dict[str, int] = {}
            for recorded in fresh:
                outcome = apply_at(model, recorded.event, recorded.version)
                if outcome is Outcome.GAP:
                    await self._repair(model, positions, recorded.stream_id, stats)
                    outcome = apply_at(model, recorded.event, recorded.version)
                if outcome is Outcome.APPLIED:
                    stats.applied += 1
                    positions[recorded.stream_id] = recorded.global_position
                else:
                    stats.duplicates += 1
            await upsert_keys(conn, [(model[key_id], position) for key_id, position in positions.items()])
            await save_checkpoint(conn, checkpoint, max(top, done), max(s for _, s in batch))

    async def _repair(self, model: KeyCache, positions: dict[str, int], stream_id: str,
                      stats: ProjectorStats) -> None:
        current = model.get(stream_id)
        missing = await self._store.read_stream(stream_id, after_version=current.version if current else 0)
        log.warning("version gap in %s: repairing %d event(s) from the store", stream_id, len(missing))
        for recorded in missing:
            if apply_at(model, recorded.event, recorded.version) is Outcome.APPLIED:
                stats.repaired += 1
                positions[stream_id] = recorded.global_position
