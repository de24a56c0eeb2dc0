"""The notices table: one order in commit order, a producer's repeat stored once, facts never changed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from keyledger.domain.notices import KEY_CREATED, KEY_EXPIRING, Notice
from keyledger.services.storage.database import Database
from keyledger.services.storage.notices import Notices, append_notice
from tests.support.wait import until

AT = datetime(2030, 1, 1, tzinfo=UTC)


async def waiting_on_a_lock(pool: AsyncConnectionPool) -> bool:
    """Whether some backend of this database is blocked on a lock (the second producer, on the counter row)."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                 "AND wait_event_type = 'Lock'")
        row = await cur.fetchone()
        return row is not None and row[0] > 0


def notice(message_id: str, kind: str = KEY_CREATED, key_id: str = "abcdefghijkl") -> Notice:
    return Notice(message_id=message_id, type=kind, organization_id="org-1", key_id=key_id,
                  data={"key": {"key_id": key_id}, "n": message_id}, occurred_at=AT)


async def test_notices_come_back_in_order_and_a_repeat_is_stored_once(db: Database) -> None:
    notices = Notices(db)
    assert await notices.append([notice("m1"), notice("m2", KEY_EXPIRING)]) == [1, 2]
    assert await notices.append([notice("m1")]) == [None]  # the producer ran again: stored once
    stored = await notices.after(0)
    assert [(n.position, n.message_id, n.type, n.data["n"]) for n in stored] == [
        (1, "m1", KEY_CREATED, "m1"), (2, "m2", KEY_EXPIRING, "m2")]
    assert [n.message_id for n in await notices.after(1)] == ["m2"]
    assert stored[0].occurred_at == AT and stored[0].organization_id == "org-1"


async def test_a_reader_never_sees_a_later_position_before_an_earlier_one(db: Database,
                                                                          pool: AsyncConnectionPool) -> None:
    notices = Notices(db)
    async with pool.connection() as slow:
        async with slow.transaction():
            first = await append_notice(slow, notice("slow"))
            # a second producer waits for the first to commit: positions are handed out in commit order
            fast = asyncio.create_task(notices.append([notice("fast")]))
            await until(lambda: waiting_on_a_lock(pool), what="the second producer to wait for the first")
            assert await notices.after(0) == []
            assert not fast.done()
    assert await fast == [(first or 0) + 1]
    assert [n.message_id for n in await notices.after(0)] == ["slow", "fast"]


async def test_a_stored_notice_cannot_be_changed(db: Database, pool: AsyncConnectionPool) -> None:
    await Notices(db).append([notice("m1")])
    async with pool.connection() as conn:
        with pytest.raises(psycopg.errors.RaiseException):
            await conn.execute("UPDATE webhook_messages SET type = 'key.revoked'")
