"""A private embedded stack whose Postgres or NATS a test stops and starts again on the same ports (outage
tests: the ``stack`` fixture of tests/e2e/conftest.py), and a server on it."""

from __future__ import annotations

import json
from pathlib import Path

import psutil  # type: ignore[import-untyped,unused-ignore]

from keyledger.services.bootstrap.runtime import Endpoints
from keyledger.services.devstack import credentials, nats, postgres
from keyledger.services.devstack.stack import ANY_NAMES, StackInfo, stack_up
from tests.support.clock import ReferenceClock
from tests.support.fixtures import TEST_PG_SETTINGS
from tests.support.pipeline import isolated_settings
from tests.support.server import ApiServer

STALENESS = 2  # seconds (KEYLEDGER_MAX_STALENESS) of its servers: an outage test outlasts it several times over


class Stack:
    """A private embedded stack whose servers the test stops and starts again on the same ports."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.info: StackInfo = stack_up(data_dir, pg_settings=TEST_PG_SETTINGS, names=ANY_NAMES)
        self.settings = isolated_settings()

    @property
    def endpoints(self) -> Endpoints:
        """Its servers' URLs, the app's and each NATS role's."""
        info = self.info
        return Endpoints(database_url=info.database_url, admin_database_url=info.admin_database_url,
                         nats_url=info.nats_url, nats_role_urls=info.nats_role_urls)

    def state(self) -> dict[str, int]:
        return json.loads((self.data_dir / "stack.json").read_text())  # type: ignore[no-any-return]

    def kill_postgres(self) -> None:
        """SIGKILL the postmaster and its backends at once (no shutdown: as a crash of the host)."""
        postmaster = psutil.Process(self.state()["pg_pid"])
        processes = [postmaster, *postmaster.children(recursive=True)]
        for process in processes:
            process.kill()
        psutil.wait_procs(processes, timeout=10)

    def start_postgres(self) -> None:
        postgres.start_postgres(self.data_dir, TEST_PG_SETTINGS, port=self.info.pg_port)

    def stop_nats(self) -> None:
        nats.stop_nats(self.state()["nats_pid"], self.data_dir)

    def start_nats(self) -> None:
        nats.start_nats(self.data_dir, credentials.load_or_create(self.data_dir), ANY_NAMES, port=self.info.nats_port)

    def server(self, log_dir: Path, workers: bool = True, clock: ReferenceClock | None = None) -> ApiServer:
        """An API process on this stack (``KEYLEDGER_MAX_STALENESS`` :data:`STALENESS`), on ``clock``'s time
        when given; not waited for."""
        return ApiServer(self.info.admin_database_url, self.info.nats_url, self.settings, log_dir, workers=workers,
                         clock=clock, extra_env={**self.endpoints.environment(),
                                                 "KEYLEDGER_MAX_STALENESS": str(STALENESS)})

