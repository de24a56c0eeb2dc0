"""The SDK's tests run against a real ``keyledger serve`` with the suite's own Postgres and NATS: the
repository's session and ``start_server`` fixtures (``tests.support.fixtures``, ``tests.support.server_fixtures``,
registered by the root ``conftest.py``) are reused here, not copied."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from keyledger_client import Keyledger
from tests.support.server import ApiServer, StartServer


@pytest.fixture
def keyledger_server(start_server: StartServer) -> ApiServer:
    """A keyledger API whose verify callers must authenticate (as outside tests)."""
    return start_server(extra_env={"KEYLEDGER_VERIFY_OPEN": ""})


@pytest.fixture
def admin_key(keyledger_server: ApiServer) -> str:
    """The bootstrap admin key (global ``admin:apikeys``)."""
    assert keyledger_server.bootstrap_secret is not None, keyledger_server.log()
    return keyledger_server.bootstrap_secret


@pytest.fixture
def verify_credential(keyledger_server: ApiServer) -> str:
    """The verify credential the server printed on its first start."""
    assert keyledger_server.verify_credential is not None, keyledger_server.log()
    return keyledger_server.verify_credential


@pytest.fixture
def admin_client(keyledger_server: ApiServer, admin_key: str) -> Iterator[Keyledger]:
    """A management client (the bootstrap admin key)."""
    with Keyledger(keyledger_server.url, admin_key) as client:
        yield client
