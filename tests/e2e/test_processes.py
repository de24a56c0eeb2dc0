"""``keyledger serve`` runs the relay, the projector, the audit sink, the webhooks and the watch roles as
processes of their own (``--roles`` names fewer), each restarted alone when it dies and none outliving the
server; ``--workers N`` runs N API processes, each with its own live key cache."""

from __future__ import annotations

import os
import signal
import uuid

import httpx
import psutil  # type: ignore[import-untyped,unused-ignore]
import psycopg
import pytest

from keyledger.services.cli.supervise import ROLES
from tests.support.api import create, usage_for, verify
from tests.support.server import ApiServer, StartServer
from tests.support.wait import until_sync


def role_processes(server: ApiServer) -> dict[str, psutil.Process]:
    """The server's supervised children, by role."""
    return {command[-1]: child for child, command in _children(server) if command[-1:] in [[r] for r in ROLES]}


def _children(server: ApiServer) -> list[tuple[psutil.Process, list[str]]]:
    """The server's live child processes and their command lines (a killed one not yet reaped is not one)."""
    found = []
    for child in psutil.Process(server.process.pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                found.append((child, child.cmdline()))
        except psutil.Error:
            continue
    return found


def all_roles(server: ApiServer) -> dict[str, psutil.Process]:
    """The server's supervised children, once all of its roles run."""
    return until_sync(lambda: found if len(found := role_processes(server)) == len(server.roles) else {},
                      timeout=30, what=f"{', '.join(server.roles)} processes")


@pytest.fixture
def api(start_server: StartServer) -> ApiServer:
    """A server that supervises every role (``serve`` without ``--roles``)."""
    return start_server(roles=ROLES)


def api_workers(server: ApiServer) -> list[psutil.Process]:
    """The granian worker processes serving HTTP under the server (with ``--workers N`` > 1 they are spawned,
    beside multiprocessing's resource tracker, which is not one)."""
    return [child for child, command in _children(server) if command[-1:] not in [[role] for role in ROLES]
            and not any("resource_tracker" in part for part in command)]


def projected(database_url: str, key_id: str) -> bool:
    """Whether the projector has written ``key_id`` to the key cache table."""
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT 1 FROM key_cache WHERE key_id = %s", (key_id,)).fetchone() is not None


def test_each_background_role_is_its_own_process_and_is_restarted_alone(api: ApiServer, admin: str,
                                                                       client: httpx.Client, auditor: str,
                                                                       database_url: str) -> None:
    roles = all_roles(api)
    assert len({process.pid for process in roles.values()} | {api.process.pid}) == len(ROLES) + 1
    for role in ROLES:
        os.kill(roles[role].pid, signal.SIGKILL)
        until_sync(lambda: (now := role_processes(api).get(role)) is not None and now.pid != roles[role].pid,  # noqa: B023
                   timeout=30, what=f"the {role} to be restarted")  # one listing: processes come and go between two
        others = role_processes(api)
        assert all(others[r].pid == roles[r].pid for r in ROLES if r != role), "only the dead one restarts"
        roles = others
    key = create(client, admin, scopes=["read:data"])  # the restarted relay and projector carry it on
    until_sync(lambda: projected(database_url, key["id"]), timeout=30, what="the projector to write the new key")
    rid = uuid.uuid4().hex
    client.post("/v1/verify", json={"key": key["secret"], "scope": "read:data"}, headers={"x-request-id": rid})
    assert usage_for(client, auditor, rid)  # and the restarted sink stores usage


@pytest.mark.parametrize("processes", [1, 2])
def test_no_process_outlives_the_server(start_server: StartServer, processes: int) -> None:
    """Neither the relay, projector and audit sink nor the API workers (which would go on holding the port)."""
    server = start_server(processes=processes, roles=ROLES)
    children = [*all_roles(server).values(), *api_workers(server)]
    assert len(children) == len(ROLES) + processes
    os.kill(server.process.pid, signal.SIGKILL)  # no chance to stop them itself
    server.process.wait()
    gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, f"still running after their parent died: {alive}"


def test_serve_with_no_workers_starts_no_background_process(api: ApiServer, replica: StartServer) -> None:
    assert role_processes(replica()) == {}


def test_serve_roles_starts_only_the_roles_named(start_server: StartServer) -> None:
    server = start_server(roles=("projector", "relay"))
    assert sorted(all_roles(server)) == ["projector", "relay"]


@pytest.mark.parametrize("processes", [2])
def test_every_api_worker_keeps_its_own_key_cache(start_server: StartServer, processes: int) -> None:
    server = start_server(processes=processes)
    assert len(api_workers(server)) == processes
    assert server.bootstrap_secret is not None
    admin = server.bootstrap_secret
    with httpx.Client(base_url=server.url) as one:
        key = create(one, admin, scopes=["read:data"])

        def answers() -> set[str]:  # a connection of its own each time, so every worker gets some
            codes = set()
            for _ in range(12):
                with httpx.Client(base_url=server.url) as fresh:
                    codes.add(verify(fresh, key["secret"], "read:data")["code"])
            return codes

        until_sync(lambda: answers() == {"VALID"}, timeout=15, what="every worker to accept the new key")
        assert one.post(f"/v1/keys/{key['id']}/revoke", headers={"x-api-key": admin}).status_code == 200
        until_sync(lambda: answers() == {"REVOKED"}, timeout=15, what="every worker to refuse the revoked key")
