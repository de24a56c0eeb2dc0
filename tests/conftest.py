"""Shared fixtures: one real Postgres + NATS per test session, a fresh database per test."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import AsyncIterator, Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

from keyledger.services.storage.database import Database, open_database
from keyledger.services.storage.event_store import PostgresEventStore
from keyledger.services.storage.migrations import migrate
from keyledger.services.devstack.stack import StackInfo, stack_down, stack_up

# Fast, throw-away durability for the test cluster only.
TEST_PG_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


@pytest.fixture(scope="session")
def stack_info(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo | None]:
    """A private embedded stack for this session; None when DATABASE_URL and NATS_URL are set."""
    if os.environ.get("DATABASE_URL") and os.environ.get("NATS_URL"):
        yield None
        return
    data_dir: Path = tmp_path_factory.mktemp("stack")
    try:
        yield stack_up(data_dir, pg_settings=TEST_PG_SETTINGS)
    finally:
        stack_down(data_dir)


@pytest.fixture(scope="session")
def servers(stack_info: StackInfo | None) -> tuple[str, str]:
    """(database_url, nats_url) of the servers the tests use."""
    if stack_info is None:
        return os.environ["DATABASE_URL"], os.environ["NATS_URL"]
    return stack_info.database_url, stack_info.nats_url


@pytest.fixture
def nats_url(servers: tuple[str, str]) -> str:
    """The NATS server of this test session."""
    return servers[1]


@pytest.fixture
def database_url(servers: tuple[str, str]) -> Iterator[str]:
    """A fresh, empty database (migrations not yet applied), dropped after the test."""
    admin_url = servers[0]
    name = f"kl_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(admin_url, dbname=name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
