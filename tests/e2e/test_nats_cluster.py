"""keyledger on a three-node NATS cluster (``keyledger stack up --nats-cluster 3``): streams keep three
copies, and killing a node under traffic loses no usage event and stops no revocation."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest

from keyledger.services.bootstrap.runtime import Endpoints
from keyledger.services.devstack.stack import ANY_NAMES, StackInfo, stack_down, stack_up
from keyledger.services.messaging.connection import servers
from tests.support.api import create, usage_with, verify
from tests.support.fixtures import TEST_PG_SETTINGS
from tests.support.pipeline import isolated_settings
from tests.support.server import ApiServer
from tests.support.wait import until_sync

FAILOVER_SECONDS = 60  # a deadline for the surviving nodes to elect new stream leaders and deliver


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[StackInfo]:
    data_dir = tmp_path / "stack"
    try:
        yield stack_up(data_dir, pg_settings=TEST_PG_SETTINGS, names=ANY_NAMES, nats_cluster=3)
    finally:
        stack_down(data_dir)


def replicas_of(info: StackInfo, stream: str) -> int:
    async def ask() -> int:
        nc = await nats.connect(servers(info.nats_url))
        try:
            return int((await nc.jetstream().stream_info(stream)).config.num_replicas or 1)
        finally:
            await nc.close()

    return asyncio.run(ask())


@pytest.mark.parametrize("victim", [1, 3])
def test_killing_a_nats_node_under_traffic_loses_nothing(cluster: StackInfo, tmp_path: Path, victim: int) -> None:
    assert len(cluster.nats_ports) == 3
    settings = isolated_settings()
    endpoints = Endpoints(database_url=cluster.database_url, admin_database_url=cluster.admin_database_url,
                          nats_url=cluster.nats_url, nats_role_urls=cluster.nats_role_urls)
    started: list[ApiServer] = []

    def start(workers: bool) -> ApiServer:
        server = ApiServer(cluster.admin_database_url, cluster.nats_url, settings, tmp_path, workers=workers,
                           extra_env=endpoints.environment())
        started.append(server)
        return server.wait_ready()

    try:
        api, replica = start(True), start(False)
        assert api.bootstrap_secret is not None
        admin = api.bootstrap_secret
        with httpx.Client(base_url=api.url, timeout=10) as one, httpx.Client(base_url=replica.url, timeout=10) as two:
            auditor = create(one, admin, scopes=["admin:apikeys", "read:export"], rate_limit=1_000_000)["secret"]
            key = create(one, admin, scopes=["read:data"], rate_limit=1_000_000)
            until_sync(lambda: verify(two, key["secret"], "read:data")["code"] == "VALID", timeout=15,
                       what="the replica to know the key")
            assert replicas_of(cluster, settings.nats_stream) == replicas_of(cluster, settings.usage_stream) == 3

            state = json.loads((cluster.data_dir / "stack.json").read_text())
            os.kill(state["nats_nodes"][victim - 1]["pid"], signal.SIGKILL)
            request_ids = []
            for i in range(40):  # traffic through the failover, on both replicas
                request_ids.append(uuid.uuid4().hex)
                answer = (one if i % 2 else two).post("/v1/verify", json={"key": key["secret"], "scope": "read:data"},
                                                      headers={"x-request-id": request_ids[-1]})
                assert answer.status_code == 200 and answer.json()["code"] == "VALID"
            assert one.post(f"/v1/keys/{key['id']}/revoke", headers={"x-api-key": admin}).status_code == 200
            until_sync(lambda: verify(two, key["secret"], "read:data")["code"] == "REVOKED", timeout=15,
                       what="the replica to refuse the revoked key")
            # every usage event of every answered request, once. Batches published while the killed node led
            # the usage stream were spooled; they reach the store once the two survivors have elected a new
            # stream leader, which takes JetStream's election timeout (5-10 s here, more on a loaded machine)
            for request_id in request_ids:
                found = until_sync(functools.partial(usage_with, one, auditor, request_id), timeout=FAILOVER_SECONDS,
                                   interval=0.1, what=f"the usage event of request {request_id}")
                assert len(found) == 1, request_id
    finally:
        for server in reversed(started):
            server.stop()
