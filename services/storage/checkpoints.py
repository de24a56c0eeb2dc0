"""Checkpoints: how far each reader of the event store (relay, projector) has got."""

from __future__ import annotations

from psycopg import AsyncConnection

from keyledger.services.storage.database import Database


async def read_checkpoint(conn: AsyncConnection, name: str) -> tuple[int, int]:
    """``(position, stream_seq)`` saved under ``name``; ``(0, 0)`` when none."""
    cur = await conn.execute("SELECT position, stream_seq FROM checkpoints WHERE name = %s", (name,))
    row = await cur.fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


async def save_checkpoint(conn: AsyncConnection, name: str, position: int, stream_seq: int) -> None:
    """Move the checkpoint ``name`` forward (never back)."""
    await conn.execute(
        "INSERT INTO checkpoints (name, position, stream_seq) VALUES (%s, %s, %s) "
        "ON CONFLICT (name) DO UPDATE SET position = greatest(checkpoints.position, excluded.position), "
        "stream_seq = greatest(checkpoints.stream_seq, excluded.stream_seq), updated_at = now()",
        (name, position, stream_seq),
    )


class Checkpoints:
    """Named checkpoints in one database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def read(self, name: str) -> tuple[int, int]:
        """``(position, stream_seq)`` saved under ``name``; ``(0, 0)`` when none."""
        async with self._db._connection() as conn:
            return await read_checkpoint(conn, name)

    async def save(self, name: str, position: int, stream_seq: int) -> None:
        """Move the checkpoint ``name`` forward (never back)."""
        async with self._db._connection() as conn:
            await save_checkpoint(conn, name, position, stream_seq)
