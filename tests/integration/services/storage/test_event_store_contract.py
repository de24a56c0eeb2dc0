"""The Postgres event store keeps every promise of the shared EventStore contract."""

from __future__ import annotations

import pytest
from psycopg_pool import AsyncConnectionPool

from keyledger.services.storage.event_store import EventStore, PostgresEventStore
from tests.contracts.event_store import EventStoreContract


class TestPostgresEventStore(EventStoreContract):
    """The real store, on a fresh migrated database per test."""

    @pytest.fixture
    def store(self, pool: AsyncConnectionPool) -> EventStore:
        """A PostgresEventStore on the test's own database."""
        return PostgresEventStore(pool)
