"""Two API processes over one store: a key command returns only once every replica holds it, so the other
replica accepts a key as soon as its create returned, and refuses it as soon as its revoke returned — not
a few milliseconds later (how long commands wait for that is measured by ``make bench``)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped,unused-ignore]

from tests.support.api import create, verify
from tests.support.server import ApiServer, StartServer
from tests.support.wait import until_sync


def hears(server: ApiServer, replicas: int) -> bool:
    """Whether ``server`` hears that many other replicas (its /readyz says)."""
    return bool(httpx.get(f"{server.url}/readyz", timeout=5).json()["replicas"] == replicas)


def test_a_command_returns_once_the_other_replica_holds_it(api: ApiServer, admin: str,
                                                           replica: StartServer) -> None:
    second = replica()
    until_sync(lambda: hears(api, 1) and hears(second, 1), timeout=20, what="the replicas to hear each other")
    with httpx.Client(base_url=api.url) as one, httpx.Client(base_url=second.url) as two:
        for _ in range(10):
            key = create(one, admin, scopes=["read:data"])
            assert verify(two, key["secret"], "read:data")["code"] == "VALID"  # at once: no waiting here
            changed = one.patch(f"/v1/keys/{key['id']}", headers={"x-api-key": admin, "If-Match": '"1"'},
                                json={"scopes": ["read:analytics"]})
            assert changed.status_code == 200, changed.text
            assert verify(two, key["secret"], "read:data")["code"] == "FORBIDDEN"
            assert one.post(f"/v1/keys/{key['id']}/revoke", headers={"x-api-key": admin}).status_code == 200
            assert verify(one, key["secret"], "read:analytics")["code"] == "REVOKED"
            assert verify(two, key["secret"], "read:analytics")["code"] == "REVOKED"


def test_a_stopped_replica_does_not_hold_commands_back(api: ApiServer, admin: str, replica: StartServer) -> None:
    """A replica that stops says it is leaving; one killed is forgotten once it has been silent a while. Either
    way the next revoke returns, and the replicas still running refuse the key."""
    second, third = replica(), replica()
    until_sync(lambda: hears(api, 2), timeout=20, what="the first replica to hear the two others")
    second.stop()  # SIGTERM: it says goodbye
    until_sync(lambda: hears(api, 1), timeout=20, what="the stopped replica to leave the roll")
    for worker in psutil.Process(third.process.pid).children(recursive=True):
        worker.kill()  # its API worker first (left alone, it would stop by itself when serve is gone, saying goodbye)
    third.process.kill()  # no goodbye: silent from now on
    with httpx.Client(base_url=api.url) as one:
        key = create(one, admin, scopes=["read:data"])
        assert one.post(f"/v1/keys/{key['id']}/revoke", headers={"x-api-key": admin}).status_code == 200
        assert verify(one, key["secret"], "read:data")["code"] == "REVOKED"


def cli(server: ApiServer, *args: str) -> Any:
    """``keyledger ARGS --json`` beside ``server``, as an operator runs it; its output."""
    done = subprocess.run([sys.executable, "-m", "keyledger.services.cli", *args, "--json"], env=server.environment(),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_cli_command_returns_once_every_replica_holds_it(start_server: StartServer) -> None:
    """No relay runs here, so nothing but the command's nudge makes the replicas read the store at once."""
    first = start_server(workers=False)
    second = start_server(first.settings, workers=False)
    until_sync(lambda: hears(first, 1) and hears(second, 1), timeout=20, what="the replicas to hear each other")
    with httpx.Client(base_url=first.url) as one, httpx.Client(base_url=second.url) as two:
        for _ in range(3):
            key = cli(first, "keys", "create", "--name", "from the cli", "--scope", "read:data")
            assert verify(one, key["secret"], "read:data")["code"] == "VALID"  # at once: no waiting here
            assert verify(two, key["secret"], "read:data")["code"] == "VALID"
            assert cli(first, "keys", "revoke", key["id"])["status"] == "revoked"
            assert verify(one, key["secret"], "read:data")["code"] == "REVOKED"
            assert verify(two, key["secret"], "read:data")["code"] == "REVOKED"
