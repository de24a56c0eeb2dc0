"""A server on a stack of its own, whose Postgres or NATS the test stops: warm verifies keep answering
through a Postgres outage while commands answer 503 at once, the API starts and serves without NATS,
and SIGTERM stops the server within seconds with its Postgres gone."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil  # type: ignore[import-untyped,unused-ignore]
import pytest

from keyledger.services.bootstrap.runtime import Endpoints
from keyledger.services.devstack import credentials, nats, postgres
from keyledger.services.devstack.stack import ANY_NAMES, StackInfo, stack_down, stack_up
from tests.support.api import create, verify
from tests.support.fixtures import TEST_PG_SETTINGS
from tests.support.pipeline import isolated_settings
from tests.support.server import ApiServer
from tests.support.wait import until_sync

STALENESS = 2  # seconds: the outage outlasts it several times over


class Stack:
    """A private embedded stack whose servers the test stops and starts again on the same ports."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.info: StackInfo = stack_up(data_dir, pg_settings=TEST_PG_SETTINGS, names=ANY_NAMES)
        self.settings = isolated_settings()

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

    def server(self, log_dir: Path, workers: bool = True) -> ApiServer:
        endpoints = Endpoints(database_url=self.info.database_url, admin_database_url=self.info.admin_database_url,
                              nats_url=self.info.nats_url, nats_role_urls=self.info.nats_role_urls)
        return ApiServer(self.info.admin_database_url, self.info.nats_url, self.settings, log_dir, workers=workers,
                         extra_env={**endpoints.environment(), "KEYLEDGER_MAX_STALENESS": str(STALENESS)})


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    own = Stack(tmp_path / "stack")
    try:
        yield own
    finally:
        stack_down(own.data_dir)


def test_warm_verifies_keep_answering_through_a_postgres_outage(stack: Stack, tmp_path: Path) -> None:
    api = stack.server(tmp_path).wait_ready()
    try:
        assert api.bootstrap_secret is not None
        admin = api.bootstrap_secret
        with httpx.Client(base_url=api.url, timeout=10) as client:
            key = create(client, admin, scopes=["read:data"], rate_limit=1_000_000)
            assert verify(client, key["secret"], "read:data")["code"] == "VALID"  # warm now
            stack.kill_postgres()
            refused = client.post("/v1/keys", json={"name": "during"}, headers={"x-api-key": admin})
            assert refused.status_code == 503 and refused.json()["code"] == "UNAVAILABLE"
            away_until = time.monotonic() + 3 * STALENESS  # well past the staleness bound, the store still away
            while time.monotonic() < away_until:
                assert verify(client, key["secret"], "read:data")["code"] == "VALID"
            assert client.get("/v1/keys", headers={"x-api-key": admin}).status_code == 503
            assert verify(client, "kl_" + "A" * 48, "read:data")["code"] in ("MALFORMED", "NOT_FOUND")
            ready = client.get("/readyz")
            assert ready.status_code == 200 and any("event store unreachable" in d for d in ready.json()["degraded"])
            stack.start_postgres()
            until_sync(lambda: client.post("/v1/keys", json={"name": "after"},
                                           headers={"x-api-key": admin}).status_code == 201,
                       timeout=30, what="commands to work again once Postgres is back")
            assert verify(client, key["secret"], "read:data")["code"] == "VALID"
            until_sync(lambda: client.get("/readyz").json()["degraded"] == [], timeout=15,
                       what="/readyz to see the store again")
    finally:
        api.stop()


def test_sigterm_stops_the_server_within_seconds_with_postgres_gone(stack: Stack, tmp_path: Path) -> None:
    api = stack.server(tmp_path).wait_ready()
    try:
        stack.kill_postgres()
        api.process.send_signal(signal.SIGTERM)
        api.process.wait(timeout=15)  # raises if it hangs
    finally:
        api.stop()


def test_the_api_starts_and_serves_without_nats(stack: Stack, tmp_path: Path) -> None:
    stack.stop_nats()
    first = stack.server(tmp_path).wait_ready()
    second = stack.server(tmp_path, workers=False).wait_ready()
    try:
        assert first.bootstrap_secret is not None
        admin = first.bootstrap_secret
        with httpx.Client(base_url=first.url, timeout=10) as one, httpx.Client(base_url=second.url, timeout=10) as two:
            assert "NATS unreachable" in " ".join(one.get("/readyz").json()["degraded"])
            key = create(one, admin, scopes=["read:data"])
            until_sync(lambda: verify(two, key["secret"], "read:data")["code"] == "VALID", timeout=15,
                       what="the other replica to learn the key from the store alone")
            assert one.post(f"/v1/keys/{key['id']}/revoke", headers={"x-api-key": admin}).status_code == 200
            until_sync(lambda: verify(two, key["secret"], "read:data")["code"] == "REVOKED", timeout=15,
                       what="the other replica to refuse the revoked key, from the store alone")
            stack.start_nats()
            until_sync(lambda: one.get("/readyz").json()["degraded"] == [] and
                       two.get("/readyz").json()["degraded"] == [], timeout=30, what="both to follow NATS again")
    finally:
        second.stop()
        first.stop()
