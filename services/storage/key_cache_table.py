"""Postgres storage of the key cache read model and of checkpoints."""

from __future__ import annotations

from typing import Iterable

import msgspec
from psycopg import AsyncConnection

from keyledger.domain.key import KeyState
from keyledger.projections.key_cache import KeyCache

PROJECTOR = "key-cache"  # checkpoint name of the key cache projector
_LOCK = 0x6B63  # advisory lock: projector batches and replay's swap never interleave
_encoder = msgspec.json.Encoder()
_state_decoder: msgspec.json.Decoder[KeyState] = msgspec.json.Decoder(KeyState)


def encode_state(state: KeyState) -> str:
    """A key's state as JSON text for the ``state`` column."""
    return _encoder.encode(state).decode()


def decode_state(text: str | bytes) -> KeyState:
    """The KeyState stored as JSON text."""
    return _state_decoder.decode(text)


async def lock_key_cache(conn: AsyncConnection) -> None:
    """Take the key cache's transaction-scoped write lock."""
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))


async def load_keys(conn: AsyncConnection, key_ids: Iterable[str]) -> KeyCache:
    """The stored states of ``key_ids`` (missing keys are simply absent)."""
    cur = await conn.execute("SELECT state::text FROM key_cache WHERE key_id = ANY(%s)", (list(key_ids),))
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
        await cur.executemany(
            f"INSERT INTO {table} (key_id, version, position, state) VALUES (%s, %s, %s, %s::jsonb) "
            f"ON CONFLICT (key_id) DO UPDATE SET version = excluded.version, position = excluded.position, "
            f"state = excluded.state WHERE {table}.version < excluded.version",
            params,
        )
