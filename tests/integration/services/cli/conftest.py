"""Fixtures shared by the CLI's integration tests."""

import psycopg
import pytest

from tests.support.cli import Cli


@pytest.fixture
def cli(database_url: str, nats_url: str) -> Cli:
    """The CLI on a fresh database whose every statement goes into the server log (for the secret checks)."""
    with psycopg.connect(database_url, autocommit=True) as conn:  # every statement into the server log
        conn.execute(f"ALTER DATABASE {conn.info.dbname} SET log_statement = 'all'")
    return Cli(database_url, nats_url)
