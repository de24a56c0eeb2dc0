"""Fixtures shared by the audit integration tests."""

import pytest
from psycopg_pool import AsyncConnectionPool

from keyledger.services.storage.event_store import PostgresEventStore
from tests.support.audit_trail import Trail, write_trail


@pytest.fixture
async def trail(store: PostgresEventStore, pool: AsyncConnectionPool) -> Trail:
    """Three lifecycle events now, usage over three days (three partitions) around and between them."""
    return await write_trail(store, pool)
