"""The notices table (``webhook_messages``): append in commit order, read after a position."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from psycopg import AsyncConnection

from keyledger.domain.notices import Notice, StoredNotice
from keyledger.services.storage.database import Database

_APPEND = (
    "WITH next AS (UPDATE webhook_message_position SET value = value + 1 RETURNING value) "
    "INSERT INTO webhook_messages (position, message_id, type, organization_id, key_id, data, occurred_at) "
    "SELECT next.value, %s, %s, %s, %s, %s::jsonb, %s FROM next "
    "ON CONFLICT (message_id) DO NOTHING RETURNING position"
)
_COLUMNS = "position, message_id, type, organization_id, key_id, data, occurred_at"
_encode = msgspec.json.Encoder().encode


async def append_notice(conn: AsyncConnection, notice: Notice) -> int | None:
    """Append ``notice`` on ``conn`` (inside the caller's transaction, so that it commits with whatever
    produced it); its position, or None when a notice with its ``message_id`` is already stored. The position
    counter stays locked until the transaction ends: keep such transactions short."""
    cur = await conn.execute(_APPEND, (notice.message_id, notice.type, notice.organization_id, notice.key_id,
                                       _encode(notice.data).decode(), notice.occurred_at))
    row = await cur.fetchone()
    return int(row[0]) if row else None


def _stored(row: tuple[object, ...]) -> StoredNotice:
    position, message_id, type_, organization_id, key_id, data, occurred_at = row
    return StoredNotice(position=position, message_id=message_id, type=type_,  # type: ignore[arg-type]
                        organization_id=organization_id, key_id=key_id, data=data,  # type: ignore[arg-type]
                        occurred_at=occurred_at)  # type: ignore[arg-type]


class Notices:
    """The notices of one database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(self, notices: Sequence[Notice]) -> list[int | None]:
        """Append ``notices`` in one transaction, in this order (see :func:`append_notice`)."""
        async with self._db._connection() as conn, conn.transaction():
            return [await append_notice(conn, notice) for notice in notices]

    async def after(self, position: int, limit: int = 100) -> list[StoredNotice]:
        """Up to ``limit`` notices after ``position``, in order."""
        async with self._db._connection() as conn:
            cur = await conn.execute(f"SELECT {_COLUMNS} FROM webhook_messages WHERE position > %s "
                                     "ORDER BY position LIMIT %s", (position, limit))
            return [_stored(row) for row in await cur.fetchall()]

    async def head(self) -> int:
        """The last position handed out (0 when none)."""
        async with self._db._connection() as conn:
            cur = await conn.execute("SELECT value FROM webhook_message_position")
            row = await cur.fetchone()
            return int(row[0]) if row else 0
