"""End-to-end fixtures: real API processes over the session's Postgres and NATS, on test time.

Every server of a test follows the test's ``clock`` (``tests.support.clock``): it starts at
2030-01-01T00:00:00Z, on a minute, so rate windows begin when the test begins, whatever the wall time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from keyledger.services.bootstrap.runtime import Endpoints
from keyledger.services.config import Settings
from tests.support.api import create
from tests.support.clock import ReferenceClock
from tests.support.pipeline import isolated_settings
from tests.support.server import ApiServer, StartServer
from tests.support.stderr import Stderr


@pytest.fixture
def clock() -> ReferenceClock:
    """The time this test's servers share (they read at most their start-up time behind it)."""
    return ReferenceClock()


@pytest.fixture
def start_server(database_url: str, nats_url: str, endpoints: Endpoints, tmp_path: Path,
                 clock: ReferenceClock) -> Iterator[StartServer]:
    """Start an API process on this test's database and clock and wait until it is ready; all are
    stopped after the test. Keywords: ``settings`` (default: streams of its own), ``workers``,
    ``extra_env``, ``ahead`` (a clock that much ahead of the test's), ``processes`` (API workers), ``stderr``
    (where its stderr goes, apart from its stdout)."""
    started: list[ApiServer] = []

    def start(settings: Settings | None = None, workers: bool = True, extra_env: dict[str, str] | None = None,
              ahead: timedelta = timedelta(0), processes: int = 1, stderr: Stderr | None = None) -> ApiServer:
        server = ApiServer(database_url, nats_url, settings or isolated_settings(), tmp_path, workers=workers,
                           extra_env={**endpoints.environment(), **(extra_env or {})}, clock=clock, ahead=ahead,
                           processes=processes, stderr=stderr)
        started.append(server)
        return server.wait_ready()

    try:
        yield start
    finally:
        for server in reversed(started):
            server.stop()


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
