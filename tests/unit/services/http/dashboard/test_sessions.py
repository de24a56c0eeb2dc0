"""Dashboard sessions: a random id in the cookie, the key stored only wrapped under it, a new id at each
sign-in, idle and absolute expiry."""

from datetime import UTC, datetime, timedelta

from keyledger.services.http.dashboard.sessions import (
    IDLE,
    MAX_AGE,
    Sessions,
    lookup_of,
    tokens_match,
    unwrap,
    wrap,
)
from tests.support.clock import SettableClock
from tests.unit.services.http.fakes import MemorySessionTable

T0 = datetime(2030, 1, 1, tzinfo=UTC)


async def test_the_table_holds_neither_the_key_nor_the_session_id() -> None:
    table = MemorySessionTable()
    sessions = Sessions(table, SettableClock(T0))
    session = await sessions.sign_in("kl_secret_value", "key1", "kl_key1start")
    (lookup, row), = table.rows.items()
    assert lookup == lookup_of(session.id) and session.id.encode() not in lookup
    assert b"kl_secret_value" not in row.wrapped and unwrap(session.id, row.wrapped) == "kl_secret_value"
    assert unwrap("another id", row.wrapped) is None  # only the cookie's id unwraps it
    assert "kl_secret_value" not in repr(session) and "kl_secret_value" not in str(session)
    again = await sessions.get(session.id)
    assert again is not None and (again.key, again.key_id, again.csrf) == ("kl_secret_value", "key1", session.csrf)
    other = await sessions.sign_in("kl_secret_value", "key1", "kl_key1start")
    assert other.id != session.id and other.csrf != session.csrf


async def test_a_tampered_row_or_a_foreign_id_finds_nothing() -> None:
    table = MemorySessionTable()
    sessions = Sessions(table, SettableClock(T0))
    session = await sessions.sign_in("kl_a", "key1", "s")
    assert await sessions.get("not-a-session") is None and await sessions.get("x" * 500) is None
    lookup = lookup_of(session.id)
    row = table.rows[lookup]
    table.rows[lookup] = type(row)(**{**{f: getattr(row, f) for f in row.__struct_fields__},
                                      "wrapped": wrap("someone else", "kl_b")})
    assert await sessions.get(session.id) is None and not table.rows  # forgotten


async def test_sessions_end_when_idle_or_old() -> None:
    clock = SettableClock(T0)
    sessions = Sessions(MemorySessionTable(), clock)
    session = await sessions.sign_in("kl_a", "key1", "s")
    for _ in range(3):  # each request restarts the idle time
        clock.advance(IDLE - timedelta(seconds=1))
        assert await sessions.get(session.id) is not None
    clock.advance(IDLE + timedelta(seconds=1))
    assert await sessions.get(session.id) is None
    busy, signed_in_at = await sessions.sign_in("kl_a", "key1", "s"), clock()
    while await sessions.get(busy.id) is not None:  # a request every quarter of an hour...
        clock.advance(IDLE / 2)
    assert MAX_AGE <= clock() - signed_in_at <= MAX_AGE + IDLE / 2  # ...still ends at the absolute limit


async def test_signing_out_forgets_the_session_and_csrf_tokens_compare_exactly() -> None:
    sessions = Sessions(MemorySessionTable(), SettableClock(T0))
    session = await sessions.sign_in("kl_a", "key1", "s")
    await sessions.end(session.id)
    assert await sessions.get(session.id) is None
    assert tokens_match(session.csrf, session.csrf) and not tokens_match(session.csrf[:-1], session.csrf)
    assert not tokens_match(None, session.csrf) and not tokens_match("", "")
