"""The SDK's tests run against a real ``keyledger serve`` with the suite's own Postgres and NATS: the
repository's session and ``start_server`` fixtures (``tests.support.fixtures``, ``tests.support.server_fixtures``,
registered by the root ``conftest.py``) are reused here, not copied. Each test module shares one server (a keyledger
start costs seconds): the tests make keys, owners and credentials of their own and look only at those."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from keyledger.services.devstack.stack import StackInfo
from keyledger_client import Keyledger
from tests.support.module_server import module_server, root_key
from tests.support.server import ApiServer


@pytest.fixture(scope="module")
def keyledger_server(servers: tuple[str, str], stack_info: StackInfo | None,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A keyledger API whose verify callers must authenticate (as outside tests), one per test module."""
    with module_server(servers, stack_info, tmp_path_factory, "sdk", extra_env={"KEYLEDGER_VERIFY_OPEN": ""}) as api:
        yield api


@pytest.fixture(scope="module")
def admin_key(keyledger_server: ApiServer) -> str:
    """A global ``admin:apikeys`` key (made with the bootstrap key) that may call as often as the module's
    tests do together."""
    return root_key(keyledger_server)


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
