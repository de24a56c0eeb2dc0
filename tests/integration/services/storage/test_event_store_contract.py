"""The Postgres event store keeps every promise of the shared EventStore contract."""

from __future__ import annotations

import pytest

from keyledger.services.storage.database import Database
from keyledger.services.storage.event_store import EventStore, PostgresEventStore
from tests.contracts.event_store import EventStoreContract


class TestPostgresEventStore(EventStoreContract):
    """The real store, on a fresh migrated database per test (conftest's ``db``, built on ``pool``)."""

    @pytest.fixture
    def store(self, db: Database) -> EventStore:
        """A PostgresEventStore on the test's own database."""
        return PostgresEventStore(db)
