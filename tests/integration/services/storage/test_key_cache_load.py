"""A process's start streams the key cache table: every state comes back exactly as stored, whatever its
text holds (COPY's escaping undone), with the checkpoint the states are consistent with."""

from __future__ import annotations

import msgspec
from psycopg_pool import AsyncConnectionPool

from keyledger.domain.key import KeyState, evolve
from keyledger.services.storage.checkpoints import save_checkpoint
from keyledger.services.storage.database import Database
from keyledger.services.storage.event_store import PostgresEventStore
from keyledger.services.storage.key_cache_table import PROJECTOR, KeyCacheTable, upsert_keys
from tests.support.factories import created


async def test_every_stored_state_streams_back_equal(db: Database, pool: AsyncConnectionPool) -> None:
    names = ["plain", 'quotes " and \\ backslashes \\\\', "tab\tand\nnewline", "ünïcode ✓ 鍵", "\\N"]
    states = [msgspec.structs.replace(evolve(None, created(f"key{i:09d}")), name=name, description=name)
              for i, name in enumerate(names * 300)]
    async with pool.connection() as conn, conn.transaction():
        await upsert_keys(conn, [(state, i + 1) for i, state in enumerate(states)])
        await save_checkpoint(conn, PROJECTOR, len(states), 17)
    loaded: list[KeyState] = []
    position, stream_seq = await KeyCacheTable(db, PostgresEventStore(db)).load_into(loaded.append)
    assert (position, stream_seq) == (len(states), 17)
    assert sorted(loaded, key=lambda s: s.key_id) == states
