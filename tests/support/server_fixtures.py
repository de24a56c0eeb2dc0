"""Real keyledger API processes on the session's Postgres and NATS, as a pytest plugin (registered by the root
``conftest.py``) for the end-to-end tests and the client SDK's: ``start_server`` and the ``clock`` its
servers follow (``tests.support.clock``: it starts at 2030-01-01T00:00:00Z, on a minute, so rate windows begin
when the test begins, whatever the wall time)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from keyledger.services.bootstrap.runtime import Endpoints
from keyledger.services.config import Settings
from tests.support.clock import ReferenceClock
from tests.support.pipeline import isolated_settings
from tests.support.server import BASE_ROLES, ApiServer, StartServer
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
    (where its stderr goes, apart from its stdout), ``roles`` (the worker roles it supervises)."""
    started: list[ApiServer] = []

    def start(settings: Settings | None = None, workers: bool = True, extra_env: dict[str, str] | None = None,
              ahead: timedelta = timedelta(0), processes: int = 1, stderr: Stderr | None = None,
              roles: Sequence[str] = BASE_ROLES) -> ApiServer:
        server = ApiServer(database_url, nats_url, settings or isolated_settings(), tmp_path, workers=workers,
                           extra_env={**endpoints.environment(), **(extra_env or {})}, clock=clock, ahead=ahead,
                           processes=processes, stderr=stderr, roles=roles)
        started.append(server)
        return server.wait_ready()

    try:
        yield start
    finally:
        for server in reversed(started):
            server.stop()
