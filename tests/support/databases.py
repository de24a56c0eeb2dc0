"""A fresh database on the session's Postgres, and how a keyledger process reaches it: the ``database_url``
and ``endpoints`` fixtures use these, and so does a module that shares one server among its tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from keyledger.services.bootstrap.runtime import Endpoints
from keyledger.services.devstack.stack import StackInfo


@contextmanager
def own_database(admin_url: str) -> Iterator[str]:
    """A fresh database on the session's Postgres for a module's shared server, dropped afterwards."""
    name = f"kl_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(admin_url, dbname=name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def endpoints_of(database_url: str, servers: tuple[str, str], stack_info: StackInfo | None) -> Endpoints:
    """How a server reaches ``database_url`` and the session's NATS (as the ``endpoints`` fixture builds it)."""
    if stack_info is None:
        return Endpoints(database_url=database_url, admin_database_url=database_url, nats_url=servers[1])
    name = conninfo_to_dict(database_url)["dbname"]
    return Endpoints(database_url=make_conninfo(stack_info.database_url, dbname=name),
                     admin_database_url=database_url, nats_url=servers[1], nats_role_urls=stack_info.nats_role_urls)
