"""End-to-end fixtures: real API processes over the session's Postgres and NATS, on test time, started with
``start_server`` (``tests.support.server_fixtures``, shared with the client SDK's tests).

Every server of a test follows the test's ``clock``: it starts at 2030-01-01T00:00:00Z, on a minute, so rate
windows begin when the test begins, whatever the wall time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from keyledger.services.devstack.stack import stack_down
from tests.support.api import create
from tests.support.gateway import EchoUpstream
from tests.support.own_stack import Stack
from tests.support.server import ApiServer, StartServer


@pytest.fixture
def api(start_server: StartServer) -> ApiServer:
    """One API process (with relay + projector) on a fresh database and its own NATS streams."""
    return start_server()


@pytest.fixture
def replica(api: ApiServer, start_server: StartServer) -> StartServer:
    """Start more API processes (no relay or projector) beside ``api``: same database and streams;
    ``ahead=timedelta(...)`` gives one a clock that far in the future."""
    def start(ahead: timedelta = timedelta(0), extra_env: dict[str, str] | None = None) -> ApiServer:
        return start_server(api.settings, workers=False, extra_env=extra_env, ahead=ahead)
    return start


@pytest.fixture
def admin(api: ApiServer) -> str:
    """The bootstrap admin secret the API printed on first start."""
    assert api.bootstrap_secret is not None, api.log()
    return api.bootstrap_secret


@pytest.fixture
def client(api: ApiServer) -> Iterator[httpx.Client]:
    """An HTTP client for the API."""
    with httpx.Client(base_url=api.url, timeout=10) as http:
        yield http


@pytest.fixture
def auditor(client: httpx.Client, admin: str) -> str:
    """A key that reads the audit trail and keys as often as a test polls (its own, huge rate limit)."""
    secret: str = create(client, admin, scopes=["admin:apikeys", "read:export"], rate_limit=1_000_000)["secret"]
    return secret


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A private embedded stack of the test's own, whose Postgres or NATS it may stop (taken down after)."""
    own = Stack(tmp_path / "stack")
    try:
        yield own
    finally:
        stack_down(own.data_dir)


@pytest.fixture
def closed_api(start_server: StartServer) -> ApiServer:
    """A server whose verify callers must authenticate (the default outside tests)."""
    return start_server(extra_env={"KEYLEDGER_VERIFY_OPEN": ""})


@pytest.fixture
def admin_of(closed_api: ApiServer) -> str:
    """The bootstrap admin key of ``closed_api``."""
    assert closed_api.bootstrap_secret is not None, closed_api.log()
    return closed_api.bootstrap_secret


@pytest.fixture
def http(closed_api: ApiServer) -> Iterator[httpx.Client]:
    """An HTTP client for ``closed_api``."""
    with httpx.Client(base_url=closed_api.url, timeout=10) as client:
        yield client


@pytest.fixture
def upstream() -> Iterator[EchoUpstream]:
    """The application behind a test's gateway: it echoes what reached it."""
    server = EchoUpstream()
    try:
        yield server
    finally:
        server.stop()
