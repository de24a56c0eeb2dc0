"""The test session, as a pytest plugin for every test of the repository (tests/ and the client SDK's
clients/python/tests/, registered once by the root ``conftest.py``): one real Postgres + NATS per session,
a fresh database per test.

Imported before anything else of the suite: it removes the caller's keyledger settings from the
environment (``tests.support.env``) and gives the session a private folder for its data and pytest's
temporary files, removed after a green run.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from tests.support.env import isolate
from tests.support.session import finish_session, new_session_dir

# Before any settings are read. TEST_DATABASE_URL/TEST_NATS_URL are the suite's own, never the service's.
SESSION_DIR = new_session_dir()
isolate(SESSION_DIR / "data")
EXTERNAL_SERVERS = (os.environ.get("TEST_DATABASE_URL"), os.environ.get("TEST_NATS_URL"))

import pytest  # noqa: E402
from psycopg_pool import AsyncConnectionPool  # noqa: E402

from keyledger.services.bootstrap.runtime import Endpoints  # noqa: E402
from keyledger.services.devstack.stack import ANY_NAMES, StackInfo, stack_down, stack_up  # noqa: E402
from keyledger.services.storage.database import Database, open_database  # noqa: E402
from keyledger.services.storage.event_store import PostgresEventStore  # noqa: E402
from keyledger.services.storage.migrations import migrate  # noqa: E402
from tests.support.databases import endpoints_of, own_database  # noqa: E402

# Fast, throw-away durability for the test cluster only.
TEST_PG_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Temporary files under the session's own folder: pytest's shared /tmp/pytest-of-<user> is reset to
    mode 0700 by every new session, which cuts the embedded Postgres (a separate OS user when we
    are root) off from its data directory in any other session running at the same time."""
    if config.option.basetemp is None:
        config.option.basetemp = str(SESSION_DIR / "tmp")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the session's folder after a green run; keep it (and say where) after a red one."""
    finish_session(SESSION_DIR, passed=exitstatus == 0)
    if exitstatus != 0:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"test data and server logs kept in {SESSION_DIR}")


@pytest.fixture(scope="session")
def stack_info(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo | None]:
    """A private embedded stack for this session; None when TEST_DATABASE_URL and TEST_NATS_URL are set."""
    if all(EXTERNAL_SERVERS):
        yield None
        return
    data_dir: Path = tmp_path_factory.mktemp("stack")
    try:
        yield stack_up(data_dir, pg_settings=TEST_PG_SETTINGS, names=ANY_NAMES)  # each test has streams of its own
    finally:
        stack_down(data_dir)


@pytest.fixture(scope="session")
def servers(stack_info: StackInfo | None) -> tuple[str, str]:
    """(database_url, nats_url) of the servers the tests use."""
    if stack_info is None:
        database_url, nats_url = EXTERNAL_SERVERS
        assert database_url and nats_url
        return database_url, nats_url
    return stack_info.admin_database_url, stack_info.nats_url  # the owner and the NATS operator


@pytest.fixture
def nats_url(servers: tuple[str, str]) -> str:
    """The NATS server of this test session."""
    return servers[1]


@pytest.fixture
def database_url(servers: tuple[str, str]) -> Iterator[str]:
    """A fresh, empty database (migrations not yet applied), dropped after the test."""
    with own_database(servers[0]) as url:
        yield url


@pytest.fixture
def endpoints(database_url: str, stack_info: StackInfo | None, servers: tuple[str, str]) -> Endpoints:
    """How a keyledger process reaches this test's database and NATS: as the application role and one NATS
    user per role on the session's embedded stack (as ``keyledger serve`` does on its own), else as the
    external servers' one user."""
    return endpoints_of(database_url, servers, stack_info)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    """A migrated database's connection pool (autocommit, like the service's)."""
    await migrate(database_url)
    async with AsyncConnectionPool(database_url, min_size=1, max_size=8, kwargs={"autocommit": True}) as p:
        yield p


@pytest.fixture
async def db(pool: AsyncConnectionPool, database_url: str) -> AsyncIterator[Database]:
    """The service's Database on the same fresh, migrated database as ``pool``."""
    async with open_database(database_url, max_size=8) as database:
        yield database


@pytest.fixture
def store(db: Database) -> PostgresEventStore:
    """A PostgresEventStore on a fresh, migrated database."""
    return PostgresEventStore(db)
