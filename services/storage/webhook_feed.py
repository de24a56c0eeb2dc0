"""The webhook feeder's writes: notices, the keys' expiry deadlines and its checkpoint in one transaction; and
the expiry checker's: due deadlines turned into notices."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from keyledger.domain.notices import Notice
from keyledger.domain.webhooks import Deadline
from keyledger.services.storage.checkpoints import read_checkpoint
from keyledger.services.storage.database import Database
from keyledger.services.storage.notices import append_notice

FEEDER = "webhook-feeder"  # its checkpoint's name
_LOCK = 0x6B776866  # advisory lock: one feeder batch at a time


class DeadlineChange(msgspec.Struct, frozen=True, kw_only=True):
    """One change to the deadlines: add ``deadline``, or (none) forget the pending ones of ``types`` of
    ``key_id`` (a rotation replaces the grace period's, a revoke ends them all)."""

    deadline: Deadline | None = None
    key_id: str = ""
    types: tuple[str, ...] = ()


class WebhookFeed:
    """The feeder's checkpoint, notices and deadlines; the checker's due deadlines."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def checkpoint(self) -> int:
        """The last event position the feeder is done with."""
        async with self._db._connection() as conn:
            return (await read_checkpoint(conn, FEEDER))[0]

    async def commit(self, after: int, upto: int, notices: Sequence[Notice], changes: Sequence[DeadlineChange]) -> bool:
        """Append ``notices``, apply ``changes`` and move the checkpoint from ``after`` to ``upto``, in one
        transaction; False (nothing done) when another feeder moved the checkpoint first."""
        async with self._db._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            if (await read_checkpoint(conn, FEEDER))[0] != after:
                return False
            for notice in notices:
                await append_notice(conn, notice)
            for change in changes:
                if change.deadline is not None:
                    d = change.deadline
                    await conn.execute("INSERT INTO webhook_deadlines (message_id, key_id, type, days, due_at) "
                                       "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (message_id) DO NOTHING",
                                       (d.message_id, d.key_id, d.type, d.days, d.due_at))
                else:
                    await conn.execute("DELETE FROM webhook_deadlines WHERE key_id = %s AND type = ANY(%s)",
                                       (change.key_id, list(change.types)))
            await conn.execute(
                "INSERT INTO checkpoints (name, position, stream_seq) VALUES (%s, %s, 0) ON CONFLICT (name) "
                "DO UPDATE SET position = excluded.position, updated_at = now()", (FEEDER, upto))
        return True

    async def due(self, now: datetime, limit: int = 500) -> list[Deadline]:
        """Deadlines due at ``now``, earliest first."""
        async with self._db._connection() as conn:
            cur = await conn.execute("SELECT message_id, key_id, type, days, due_at FROM webhook_deadlines "
                                     "WHERE due_at <= %s ORDER BY due_at, message_id LIMIT %s", (now, limit))
            return [Deadline(message_id=m, key_id=k, type=t, days=d, due_at=at)
                    for m, k, t, d, at in await cur.fetchall()]

    async def tell(self, notices: Sequence[Notice], done: Sequence[str]) -> None:
        """Append ``notices`` and forget the deadlines ``done`` (by message id), in one transaction."""
        async with self._db._connection() as conn, conn.transaction():
            for notice in notices:
                await append_notice(conn, notice)
            await conn.execute("DELETE FROM webhook_deadlines WHERE message_id = ANY(%s)", (list(done),))
