"""Dashboard sessions in Postgres: shared by every process, the key only wrapped, expiry and sign-out."""

from datetime import UTC, datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from keyledger.services.http.dashboard.sessions import IDLE, Sessions
from keyledger.services.storage.dashboard_sessions import DashboardSessionTable
from keyledger.services.storage.database import Database
from tests.support.clock import SettableClock

T0 = datetime(2030, 1, 1, tzinfo=UTC)


async def test_a_session_made_by_one_process_is_found_by_another(db: Database, pool: AsyncConnectionPool) -> None:
    clock = SettableClock(T0)
    one, other = Sessions(DashboardSessionTable(db), clock), Sessions(DashboardSessionTable(db), clock)
    session = await one.sign_in("kl_the_admin_secret", "key1", "kl_key1start")
    found = await other.get(session.id)
    assert found is not None and (found.key, found.key_id, found.start, found.csrf) == (
        "kl_the_admin_secret", "key1", "kl_key1start", session.csrf)
    async with pool.connection() as conn:
        dump = str(await (await conn.execute("SELECT * FROM dashboard_sessions")).fetchall())
    assert "kl_the_admin_secret" not in dump and session.id not in dump  # neither the key nor the cookie's id
    await other.end(session.id)
    assert await one.get(session.id) is None


async def test_expired_sessions_are_refused_and_cleared_at_the_next_sign_in(db: Database,
                                                                           pool: AsyncConnectionPool) -> None:
    clock = SettableClock(T0)
    sessions = Sessions(DashboardSessionTable(db), clock)
    old = await sessions.sign_in("kl_a", "key1", "s")
    clock.advance(timedelta(minutes=5))
    assert await sessions.get(old.id) is not None  # seen again: seen_at moves on
    clock.advance(IDLE + timedelta(minutes=1))
    await sessions.sign_in("kl_a", "key1", "s")
    async with pool.connection() as conn:
        count = await (await conn.execute("SELECT count(*) FROM dashboard_sessions")).fetchone()
    assert count == (1,) and await sessions.get(old.id) is None
