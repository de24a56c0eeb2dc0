"""Suspicious-activity findings through a real ``keyledger serve`` (its watch role among the supervised
workers) on the real Postgres and NATS: every kind of finding is reproduced through ``POST /v1/verify`` with
forwarded end-client IPs, listed by ``/v1/findings``, and appended as a ``key.finding`` notice; a
``many_networks`` finding revokes its key (``KEYLEDGER_FINDINGS_AUTO_REVOKE``); acknowledging is org-scoped;
bad input is refused; ``keyledger watch rebuild`` reproduces the findings from the usage table.

The time-based findings (``new_network`` after 30 days away, ``volume_spike`` against a day of history) come
from a replica whose clock runs 31 days ahead (``KEYLEDGER_TEST_CLOCK_START``): the watch judges by the
events' own times. One server (and that replica) serve the whole module: the scenario runs once.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from keyledger.domain import token
from keyledger.services.bootstrap.runtime import Endpoints
from keyledger.services.cli.supervise import ROLES
from keyledger.services.devstack.stack import StackInfo
from tests.support.api import create, usage_for, verify
from tests.support.cli import Cli
from tests.support.clock import ReferenceClock
from tests.support.pipeline import isolated_settings
from tests.support.server import ApiServer
from tests.support.wait import until_sync

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
NET_A, NET_B = "192.0.2.0/24", "198.18.0.0/24"


@dataclass
class World:
    """The module's server, its database, and the keys of the scenario by role."""

    api: ApiServer
    database_url: str
    nats_url: str
    admin: str  # a global admin key with a rate limit high enough to poll
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_requests: list[str] = field(default_factory=list)  # the request id of each server's last verify

    def id(self, role: str) -> str:
        return str(self.keys[role]["id"])


def _endpoints(database_url: str, nats_url: str, stack_info: StackInfo | None) -> Endpoints:
    if stack_info is None:
        return Endpoints(database_url=database_url, admin_database_url=database_url, nats_url=nats_url)
    name = conninfo_to_dict(database_url)["dbname"]
    return Endpoints(database_url=make_conninfo(stack_info.database_url, dbname=name),
                     admin_database_url=database_url, nats_url=nats_url, nats_role_urls=stack_info.nats_role_urls)


@pytest.fixture(scope="module")
def world(servers: tuple[str, str], stack_info: StackInfo | None,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A fresh database and one API process (with relay, projector, audit sink and watch), auto-revoking
    on ``many_networks``; the scenario played through it (and through a replica 31 days ahead)."""
    admin_url, nats_url = servers
    name = f"kl_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = make_conninfo(admin_url, dbname=name)
    env = _endpoints(database_url, nats_url, stack_info).environment()
    clock, logs, settings = ReferenceClock(), tmp_path_factory.mktemp("findings"), isolated_settings()
    started: list[ApiServer] = []

    def start(workers: bool, ahead: timedelta = timedelta(0), **extra: str) -> ApiServer:
        started.append(ApiServer(database_url, nats_url, settings, logs, workers=workers, clock=clock, ahead=ahead,
                                 extra_env={**env, **extra}, roles=ROLES))
        return started[-1].wait_ready()

    try:
        api = start(True, KEYLEDGER_FINDINGS_AUTO_REVOKE="many_networks")
        assert api.bootstrap_secret is not None, api.log()
        with httpx.Client(base_url=api.url, timeout=10) as client:
            poller = create(client, api.bootstrap_secret, name="poller", scopes=["admin:apikeys", "read:export"],
                            rate_limit=1_000_000)["secret"]
            world = World(api=api, database_url=database_url, nats_url=nats_url, admin=poller)
            play(world, client, lambda: start(False, ahead=timedelta(days=31)))
        yield world
    finally:
        for server in reversed(started):
            server.stop()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wrong_token(key_id: str) -> str:
    """A well-formed token naming ``key_id`` with a secret that is not its own."""
    return token.format_token("kl", key_id, token.new_secret(secrets.token_bytes))


def tagged(client: httpx.Client, key: str, scope: str, **request: Any) -> str:
    """A verify carrying a request id of its own; the id."""
    request_id = uuid.uuid4().hex
    answer = client.post("/v1/verify", json={"key": key, "scope": scope, **request},
                         headers={"x-request-id": request_id})
    assert answer.status_code == 200, answer.text
    return request_id


def play(world: World, client: httpx.Client, later_replica: Any) -> None:
    """Every kind of finding, through POST /v1/verify with forwarded IPs."""
    admin = world.admin
    for role in ("revoked", "guessed", "nine", "shared", "moved", "spiky"):
        world.keys[role] = create(client, admin, name=role, organization_id="org-a", scopes=["read:data"])
    world.keys["probed"] = create(client, admin, name="probed", organization_id="org-a",
                                  access=[{"resource": "website", "id": "site-a", "scopes": ["read:data"]}])
    world.keys["theirs"] = create(client, admin, name="theirs", organization_id="org-b", scopes=["read:data"])
    secret = {role: str(made["secret"]) for role, made in world.keys.items()}

    # revoked_key_used: a revoked key presented with its correct secret (also org-b's key, for scoping)
    for role in ("revoked", "theirs"):
        assert verify(client, secret[role], "read:data", ip="203.0.113.10")["code"] == "VALID"
        revoked = client.post(f"/v1/keys/{world.id(role)}/revoke", json={"reason": "left"},
                              headers={"x-api-key": admin})
        assert revoked.status_code == 200, revoked.text
        assert verify(client, secret[role], "read:data", ip="203.0.113.10")["code"] == "REVOKED"
    # secret_guessing: 10 wrong secrets for one key id (from 10 addresses); 9 for another: no finding
    for role, count, first in (("guessed", 10, 20), ("nine", 9, 40)):
        for i in range(count):
            answer = verify(client, wrong_token(world.id(role)), "read:data", ip=f"203.0.113.{first + i}")
            assert answer["code"] == "NOT_FOUND" and answer["key_id"] is None
    # scope_probing: 10 refusals across 3 scopes (and 2 websites)
    asks = [("read:data", "site-b"), ("write:data", "site-a"), ("read:export", "site-a")]
    for i in range(10):
        scope, website = asks[i % 3]
        assert verify(client, secret["probed"], scope, website_id=website, ip="203.0.113.60")["code"] == "FORBIDDEN"
    # many_networks: 20 /24 networks within 10 minutes; the watch revokes the key
    for i in range(20):
        assert verify(client, secret["shared"], "read:data", ip=f"198.51.{i}.7")["valid"] is True
    until_sync(lambda: verify(client, secret["shared"], "read:data", ip="198.51.0.7")["code"] == "REVOKED",
               timeout=30, interval=0.1, what="the watch to revoke the shared key", explain=world.api.log)
    # new_network: 20 uses from network A, then one from B
    for _ in range(20):
        assert verify(client, secret["moved"], "read:data", ip="192.0.2.7")["valid"] is True
    assert verify(client, secret["moved"], "read:data", ip="198.18.0.7")["valid"] is True
    # history for volume_spike: one use now
    world.last_requests.append(tagged(client, secret["spiky"], "read:data", ip="192.0.2.50"))

    # 31 days later (a replica whose clock runs ahead): network A again, after 30 days away; and a spike
    replica: ApiServer = later_replica()
    with httpx.Client(base_url=replica.url, timeout=10) as later:
        assert verify(later, secret["moved"], "read:data", ip="192.0.2.99")["valid"] is True
        for _ in range(9):
            assert verify(later, secret["spiky"], "read:data", ip="192.0.2.50")["valid"] is True
        world.last_requests.append(tagged(later, secret["spiky"], "read:data", ip="192.0.2.50"))
    expected = expected_findings(world)
    until_sync(lambda: set(listed(client, admin)) >= expected, timeout=30, interval=0.2,
               what="every finding of the scenario", explain=lambda: f"{listed(client, admin)}\n{world.api.log()}")


def expected_findings(world: World) -> set[tuple[str, str, str]]:
    """(kind, key id, subject) of every finding the scenario raises."""
    return {("revoked_key_used", world.id("revoked"), "revoked"), ("revoked_key_used", world.id("theirs"), "revoked"),
            ("secret_guessing", world.id("guessed"), ""), ("scope_probing", world.id("probed"), ""),
            ("many_networks", world.id("shared"), ""), ("revoked_key_used", world.id("shared"), "revoked"),
            ("new_network", world.id("moved"), NET_B), ("new_network", world.id("moved"), NET_A),
            ("volume_spike", world.id("spiky"), "")}


def findings(client: httpx.Client, key: str, **params: Any) -> list[dict[str, Any]]:
    """Every finding ``key`` may see (all pages)."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.get("/v1/findings", params={**params, **({"cursor": cursor} if cursor else {})},
                          headers={"x-api-key": key})
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def listed(client: httpx.Client, key: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(f["kind"], f["key_id"], f["subject"]): f for f in findings(client, key)}


@pytest.fixture
def client(world: World) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=world.api.url, timeout=10) as http:
        yield http


def test_each_kind_of_finding_is_raised_through_verify(world: World, client: httpx.Client) -> None:
    found = listed(client, world.admin)
    assert set(found) == expected_findings(world)  # nothing for 9 wrong secrets, nor for the admin keys
    guessing = found[("secret_guessing", world.id("guessed"), "")]
    assert (guessing["severity"], guessing["status"], guessing["count"]) == ("medium", "open", 1)
    assert guessing["evidence"]["wrong_secrets"] == 10 and guessing["evidence"]["ip"] == "203.0.113.29"
    assert guessing["organization_id"] == "org-a"
    probing = found[("scope_probing", world.id("probed"), "")]
    assert probing["evidence"]["scopes"] == ["read:data", "read:export", "write:data"]
    assert probing["evidence"]["resources"] == ["website:site-a", "website:site-b"]
    shared = found[("many_networks", world.id("shared"), "")]
    assert (shared["severity"], shared["evidence"]["distinct_networks"]) == ("high", 20)
    back = found[("new_network", world.id("moved"), NET_A)]
    assert back["evidence"]["previously_seen"] is not None and back["evidence"]["ip"] == "192.0.2.99"
    assert found[("new_network", world.id("moved"), NET_B)]["evidence"]["uses_before"] == 20
    spike = found[("volume_spike", world.id("spiky"), "")]
    assert (spike["severity"], spike["evidence"]["uses"], spike["evidence"]["hourly_median"]) == ("low", 10, 0)
    assert when(spike["first_seen"]) - when(guessing["first_seen"]) > timedelta(days=30)  # the replica's time
    revoked = found[("revoked_key_used", world.id("revoked"), "revoked")]
    assert (revoked["severity"], revoked["count"]) == ("high", 1)
    by_key = findings(client, world.admin, key_id=world.id("moved"), kind="new_network")
    assert {f["subject"] for f in by_key} == {NET_A, NET_B}


def test_each_finding_is_appended_as_a_key_finding_notice(world: World, client: httpx.Client) -> None:
    found = listed(client, world.admin)
    with psycopg.connect(world.database_url) as conn:
        rows = conn.execute("SELECT message_id, organization_id, key_id, data FROM webhook_messages "
                            "WHERE type = 'key.finding' ORDER BY position").fetchall()
    assert {row[0] for row in rows} == {f"finding:{f['id']}:{f['severity']}" for f in found.values()}
    for message_id, organization, key_id, data in rows:
        finding = data["finding"]
        assert message_id == f"finding:{finding['id']}:{finding['severity']}"
        assert (organization, key_id) == (finding["organization_id"], finding["key_id"])
        assert data["key"]["id"] == key_id and "evidence" in finding
        assert not {"secret", "secret_hash"} & set(data["key"])
    assert all(str(made["secret"]) not in str(rows) for made in world.keys.values())


def test_many_networks_revoked_the_key_as_actor_watch(world: World, client: httpx.Client) -> None:
    shared = client.get(f"/v1/keys/{world.id('shared')}", headers={"x-api-key": world.admin}).json()
    finding = listed(client, world.admin)[("many_networks", world.id("shared"), "")]
    assert shared["status"] == "revoked"
    assert shared["revoke_reason"] == f"automatic: many_networks finding {finding['id']}"
    trail = client.get("/v1/audit", params={"key_id": world.id("shared"), "kind": "lifecycle"},
                       headers={"x-api-key": world.admin}).json()["items"]
    assert [(r["action"], r["actor"]) for r in trail if r["action"] == "key.revoked"] == [("key.revoked", "watch")]
    moved = client.get(f"/v1/keys/{world.id('moved')}", headers={"x-api-key": world.admin}).json()
    assert moved["status"] == "active"  # new_network is not set to revoke


def test_findings_are_org_scoped_and_acknowledged(world: World, client: httpx.Client) -> None:
    org_a = create(client, world.admin, name="org-a admin", organization_id="org-a", scopes=["admin:apikeys"],
                   rate_limit=10_000)
    org_b = create(client, world.admin, name="org-b admin", organization_id="org-b", scopes=["admin:apikeys"],
                   rate_limit=10_000)
    every = listed(client, world.admin)
    theirs = every[("revoked_key_used", world.id("theirs"), "revoked")]
    assert set(listed(client, org_a["secret"])) == set(every) - {("revoked_key_used", world.id("theirs"), "revoked")}
    assert set(listed(client, org_b["secret"])) == {("revoked_key_used", world.id("theirs"), "revoked")}
    assert findings(client, org_b["secret"], key_id=world.id("guessed")) == []  # another organization's key
    target = every[("secret_guessing", world.id("guessed"), "")]
    foreign = client.post(f"/v1/findings/{target['id']}/acknowledge", headers={"x-api-key": org_b["secret"]})
    assert (foreign.status_code, foreign.json()["code"], foreign.json()["success"]) == (404, "NOT_FOUND", False)
    assert listed(client, world.admin)[("secret_guessing", world.id("guessed"), "")]["status"] == "open"
    done = client.post(f"/v1/findings/{target['id']}/acknowledge", headers={"x-api-key": org_a["secret"]})
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["acknowledged_by"]) == ("acknowledged", f"key:{org_a['id']}")
    again = client.post(f"/v1/findings/{target['id']}/acknowledge", headers={"x-api-key": world.admin})
    assert again.json()["acknowledged_by"] == f"key:{org_a['id']}"  # acknowledged once
    assert [f["id"] for f in findings(client, org_a["secret"], status="acknowledged")] == [target["id"]]
    assert target["id"] not in {f["id"] for f in findings(client, org_a["secret"], status="open")}
    assert client.post(f"/v1/findings/{theirs['id']}/acknowledge",
                       headers={"x-api-key": org_a["secret"]}).status_code == 404


@pytest.mark.parametrize(("path", "params", "status", "code"), [
    ("/v1/findings", {"kind": "leak"}, 400, "VALIDATION_ERROR"),
    ("/v1/findings", {"status": "closed"}, 400, "VALIDATION_ERROR"),
    ("/v1/findings", {"key_id": "short"}, 400, "VALIDATION_ERROR"),
    ("/v1/findings", {"cursor": "bm90LW91cnM"}, 400, "VALIDATION_ERROR"),
    ("/v1/findings", {"limit": "0"}, 400, "VALIDATION_ERROR"),
    ("/v1/findings", {"limit": "101"}, 400, "VALIDATION_ERROR"),
])
def test_bad_input_is_refused_with_the_structured_error(world: World, client: httpx.Client, path: str,
                                                        params: dict[str, str], status: int, code: str) -> None:
    answer = client.get(path, params=params, headers={"x-api-key": world.admin})
    assert (answer.status_code, answer.json()["success"], answer.json()["code"]) == (status, False, code)
    assert answer.json()["error"]


def test_callers_without_admin_rights_are_refused(world: World, client: httpx.Client) -> None:
    assert client.get("/v1/findings").json()["code"] == "AUTH_REQUIRED"
    reader = create(client, world.admin, name="reader", scopes=["read:data"])["secret"]
    refused = client.get("/v1/findings", headers={"x-api-key": reader})
    assert (refused.status_code, refused.json()["code"]) == (403, "FORBIDDEN")
    for finding_id in ("not-a-uuid", str(uuid.uuid4())):
        missing = client.post(f"/v1/findings/{finding_id}/acknowledge", headers={"x-api-key": world.admin})
        assert (missing.status_code, missing.json()["code"]) == (404, "NOT_FOUND")


def test_pages_are_newest_first(world: World, client: httpx.Client) -> None:
    pages, cursor = [], None
    while True:
        page = client.get("/v1/findings", params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                          headers={"x-api-key": world.admin}).json()
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    items = [f for page in pages for f in page]
    assert all(len(page) == 2 for page in pages[:-1]) and len(pages) >= 5
    assert len({f["id"] for f in items}) == len(items) == len(listed(client, world.admin))
    order = [(when(f["first_seen"]), f["id"]) for f in items]
    assert order == sorted(order, reverse=True)


def test_a_rebuild_reproduces_the_findings(world: World, client: httpx.Client) -> None:
    for request_id in world.last_requests:  # every use is in the usage table (asked of the server at test time:
        usage_for(client, world.admin, request_id)  # a call to the replica would be a use 31 days on)
    spike = listed(client, world.admin)[("volume_spike", world.id("spiky"), "")]
    assert client.post(f"/v1/findings/{spike['id']}/acknowledge", headers={"x-api-key": world.admin}).status_code == 200
    columns = "id, kind, key_id, subject, severity, count, first_seen, last_seen, evidence, status, acknowledged_by"
    with psycopg.connect(world.database_url, autocommit=True) as conn:
        before = conn.execute(f"SELECT {columns} FROM findings ORDER BY id").fetchall()
        conn.execute("UPDATE findings SET count = 0, evidence = '{}'")
        conn.execute("DELETE FROM findings WHERE status = 'open'")  # the acknowledged ones stay, to keep theirs
    done = Cli(world.database_url, world.nats_url).json("watch", "rebuild")
    assert done["findings"] == len(before) and done["events"] > 100
    with psycopg.connect(world.database_url) as conn:
        after = conn.execute(f"SELECT {columns} FROM findings ORDER BY id").fetchall()
    assert after == before
