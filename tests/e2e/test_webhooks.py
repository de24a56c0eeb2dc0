"""Webhooks through a real ``keyledger serve`` (its supervised ``webhooks`` worker) over the session's Postgres
and NATS, to a real receiver on 127.0.0.1 that checks every delivery with the ``standardwebhooks`` library.

One server for the module (endpoints of different tests have different paths, so their deliveries never mix);
its retries are short (50 ms doubling, at most 1 s apart) so failing receivers cost the tests little time.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped,unused-ignore]
import psycopg
import pytest

from keyledger.services.cli.supervise import ROLES
from keyledger.services.devstack.stack import StackInfo
from tests.support.api import create, sign_in
from tests.support.asgi import csrf_of
from tests.support.module_server import module_server
from tests.support.server import ApiServer
from tests.support.wait import until_sync
from tests.support.webhooks import HOOK_ENV, Received, Receiver, arrived, register

LIFECYCLE = ["key.created", "key.access_changed", "key.rotated", "key.revoked"]


@pytest.fixture(scope="module")
def server(servers: tuple[str, str], stack_info: StackInfo | None,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One API process with its workers (the webhooks worker among them) for the whole module."""
    with module_server(servers, stack_info, tmp_path_factory, "webhooks", extra_env=HOOK_ENV, roles=ROLES) as api:
        # the bootstrap key's key.created is fed before any test registers an endpoint: no test receives it
        until_sync(lambda: fed(api.database_url), timeout=30, what="the bootstrap key's notice", explain=api.log)
        yield api


def fed(database_url: str) -> bool:
    """Whether the feeder has appended a notice."""
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM webhook_messages").fetchone() != (0,)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """The receiver every endpoint of the module points at."""
    found = Receiver()
    try:
        yield found
    finally:
        found.stop()


@pytest.fixture(scope="module")
def root(server: ApiServer) -> str:
    """A global admin key (no organization) that may poll as often as the tests do."""
    assert server.bootstrap_secret is not None, server.log()
    with httpx.Client(base_url=server.url, timeout=10) as api:
        secret: str = create(api, server.bootstrap_secret, name="webhook admin", scopes=["admin:apikeys"],
                             rate_limit=1_000_000)["secret"]
    return secret


@pytest.fixture
def api(server: ApiServer) -> Iterator[httpx.Client]:
    """An HTTP client of the module's server."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def distinct(deliveries: list[Received]) -> list[str]:
    """The message ids in the order they first arrived."""
    return list(dict.fromkeys(d.message_id for d in deliveries))


def test_every_lifecycle_type_arrives_signed_and_in_order(api: httpx.Client, root: str, receiver: Receiver,
                                                          server: ApiServer) -> None:
    endpoint = register(api, root, receiver, "lifecycle", description="all of it")
    assert endpoint["secret"].startswith("whsec_") and endpoint["status"] == "active"
    assert endpoint["events"][:4] == LIFECYCLE and endpoint["organization_id"] is None
    admin = {"x-api-key": root}
    key = create(api, root, name="hooked", scopes=["read:data"])
    assert api.patch(f"/v1/keys/{key['id']}", json={"scopes": ["read:data", "write:data"]},
                     headers=admin).status_code == 200
    assert api.post(f"/v1/keys/{key['id']}/rotate", json={}, headers=admin).status_code == 200
    assert api.post(f"/v1/keys/{key['id']}/revoke", json={"reason": "done"}, headers=admin).status_code == 200

    got = arrived(receiver, "lifecycle", 4, server)
    assert [d.type for d in got] == LIFECYCLE and receiver.rejected == []
    assert all(d.data["key"]["id"] == key["id"] for d in got)
    positions = [d.data["position"] for d in got]
    assert positions == sorted(positions) and len(set(positions)) == 4
    assert {d.data["actor"] for d in got} == {f"key:{root.split('_')[1][:12]}"}  # the admin key that acted
    assert got[1].data["key"]["scopes"] == ["read:data", "write:data"] and got[3].data["key"]["status"] == "revoked"
    bodies = b"".join(d.body for d in got)
    assert b"secret_hash" not in bodies and key["secret"].encode() not in bodies and b"argon2" not in bodies
    assert all(d.headers["content-type"] == "application/json" for d in got)

    listed = api.get("/v1/webhooks", headers=admin).json()["items"]
    assert [e["id"] for e in listed if e["id"] == endpoint["id"]] and all("secret" not in e for e in listed)
    ours = [d.message_id for d in got]
    def listed_deliveries() -> list[dict[str, Any]]:
        page: list[dict[str, Any]] = api.get(f"/v1/webhooks/{endpoint['id']}/deliveries", headers=admin).json()["items"]
        return page if set(ours) <= {d["event_id"] for d in page} else []

    deliveries = until_sync(listed_deliveries, what="the deliveries listed")
    assert [d["event_id"] for d in reversed(deliveries) if d["event_id"] in ours] == ours
    assert all(d["attempts"] == 1 and d["last_status_code"] == 200 and d["delivered_at"] for d in deliveries)


def test_a_receiver_failing_for_a_while_gets_everything_in_order(api: httpx.Client, root: str, receiver: Receiver,
                                                                 server: ApiServer) -> None:
    answered = iter([500, 500, 503, 500, 502])
    receiver.answers["flaky"] = lambda _: next(answered, 200)
    register(api, root, receiver, "flaky", events=["key.created", "key.revoked"])
    keys = [create(api, root, name=f"flaky {n}", scopes=["read:data"]) for n in range(3)]
    assert api.post(f"/v1/keys/{keys[0]['id']}/revoke", headers={"x-api-key": root}).status_code == 200

    got = arrived(receiver, "flaky", 4, server)
    assert [(d.type, d.data["key"]["id"]) for d in got] == [("key.created", k["id"]) for k in keys] + [
        ("key.revoked", keys[0]["id"])]
    tried = receiver.of("flaky", delivered_only=False)
    assert [d.status for d in tried[:6]] == [500, 500, 503, 500, 502, 200]
    assert distinct(tried) == distinct(got), "a failed notice is tried again before any later one"
    assert receiver.rejected == []


def webhooks_worker(server: ApiServer) -> psutil.Process:
    """The server's supervised ``keyledger webhooks`` process."""
    def find() -> psutil.Process | None:
        for child in psutil.Process(server.process.pid).children():
            try:
                if child.status() != psutil.STATUS_ZOMBIE and child.cmdline()[-1:] == ["webhooks"]:
                    return child
            except psutil.Error:
                continue
        return None
    return until_sync(find, timeout=30, what="the webhooks worker process")


def test_a_worker_killed_mid_delivery_loses_nothing(api: httpx.Client, root: str, receiver: Receiver,
                                                   server: ApiServer) -> None:
    holding, release = threading.Event(), threading.Event()

    def answer(got: Received) -> int:
        if got.data["key"]["name"] == "second" and not release.is_set():
            holding.set()  # the worker waits for this answer while the test kills it
            release.wait(30)
        return 200

    receiver.answers["killed"] = answer
    register(api, root, receiver, "killed", events=["key.created"])
    worker = webhooks_worker(server)
    keys = [create(api, root, name=name, scopes=["read:data"]) for name in ("first", "second", "third", "fourth")]
    assert holding.wait(30), receiver.of("killed", False)
    os.kill(worker.pid, signal.SIGKILL)
    psutil.wait_procs([worker], timeout=10)
    release.set()
    got = arrived(receiver, "killed", 5, server)  # "second" twice: its first answer went to a dead process
    order = [k["id"] for k in keys]
    seen = [order.index(d.data["key"]["id"]) for d in got]
    assert seen == sorted(seen), "at least once, in order: only the notice in flight is sent again"
    assert sorted(set(seen)) == [0, 1, 2, 3] and seen.count(1) >= 2, seen
    assert webhooks_worker(server).pid != worker.pid and receiver.rejected == []


def test_an_organization_admin_endpoint_gets_only_its_organization(api: httpx.Client, root: str,
                                                                    receiver: Receiver, server: ApiServer) -> None:
    org_admin = create(api, root, name="org admin", organization_id="org-a", scopes=["admin:apikeys", "read:data"])
    mine = register(api, org_admin["secret"], receiver, "org-a")
    assert mine["organization_id"] == "org-a"
    other = register(api, root, receiver, "everyone", events=["key.created"])
    theirs = create(api, root, name="b key", organization_id="org-b", scopes=["read:data"])
    ours = create(api, root, name="a key", organization_id="org-a", scopes=["read:data"])

    # (the org admin key's own key.created may arrive first: it was fed after the endpoint was registered)
    until_sync(lambda: ours["id"] in {d.data["key"]["id"] for d in receiver.of("org-a")}, timeout=30,
               what="org-a's key at org-a's endpoint", explain=server.log)
    got = {d.data["key"]["id"] for d in receiver.of("org-a")}
    assert got - {org_admin["id"]} == {ours["id"]}  # org-b's key came before ours in the store: never sent
    until_sync(lambda: {theirs["id"], ours["id"]} <= {d.data["key"]["id"] for d in receiver.of("everyone")},
               timeout=30, what="both keys at the endpoint of every organization", explain=server.log)
    headers = {"x-api-key": org_admin["secret"]}
    assert [e["id"] for e in api.get("/v1/webhooks", headers=headers).json()["items"]] == [mine["id"]]
    for path in (f"/v1/webhooks/{other['id']}", f"/v1/webhooks/{other['id']}/deliveries"):
        assert api.get(path, headers=headers).json()["code"] == "NOT_FOUND"
    assert api.delete(f"/v1/webhooks/{other['id']}", headers=headers).status_code == 404
    refused = api.post("/v1/webhooks", json={"url": receiver.url("x"), "organization_id": "org-b"}, headers=headers)
    assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN"


@pytest.mark.parametrize(("url", "why"), [
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local"),
    ("http://[::ffff:169.254.169.254]/", "inside the IPv6 address"), ("http://[fd00:ec2::254]/", "private"),
    ("http://10.1.2.3/", "private"), ("http://2130706433/", "resolvers read as an IPv4 address"),
    ("ftp://hooks.example.com/", "https:// or http://"), ("https://u:p@hooks.example.com/", "credentials"),
])
def test_internal_addresses_are_refused_at_registration(api: httpx.Client, root: str, url: str, why: str) -> None:
    answer = api.post("/v1/webhooks", json={"url": url}, headers={"x-api-key": root})
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "VALIDATION_ERROR" and why in answer.json()["error"]


def test_bad_input_is_refused_and_changes_nothing(api: httpx.Client, root: str, receiver: Receiver) -> None:
    admin = {"x-api-key": root}
    before = api.get("/v1/webhooks", headers=admin).json()["items"]
    for body in ({"url": receiver.url("bad"), "events": ["key.deleted"]}, {"events": ["key.created"]},
                 {"url": receiver.url("bad"), "colour": "red"}, {"url": 7}):
        answer = api.post("/v1/webhooks", json=body, headers=admin)
        assert answer.status_code == 400 and answer.json()["success"] is False, (body, answer.text)
    assert "key.deleted" in api.post("/v1/webhooks", json={"url": receiver.url("bad"), "events": ["key.deleted"]},
                                     headers=admin).json()["error"]
    assert api.get("/v1/webhooks", headers=admin).json()["items"] == before
    assert api.get("/v1/webhooks/wh_nope", headers=admin).status_code == 404
    assert api.get("/v1/webhooks", headers={"x-api-key": "kl_nope"}).status_code == 401


def test_a_failing_endpoint_shows_in_api_and_dashboard_and_resumes_when_enabled(
        api: httpx.Client, root: str, receiver: Receiver, server: ApiServer) -> None:
    down = threading.Event()
    down.set()
    receiver.answers["down"] = lambda _: 500 if down.is_set() else 200
    endpoint = register(api, root, receiver, "down", events=["key.created"])
    headers = {"x-api-key": root}
    keys = [create(api, root, name=f"while down {n}", scopes=["read:data"]) for n in range(2)]
    until_sync(lambda: api.get(f"/v1/webhooks/{endpoint['id']}", headers=headers).json()["status"] == "failing",
               timeout=30, what="the endpoint to be marked failing after KEYLEDGER_WEBHOOK_RETRY_FOR (5 s)")
    with httpx.Client(base_url=server.url, timeout=10) as browser:
        assert sign_in(browser, root).status_code == 303
        page = browser.get(f"/dashboard/webhooks/{endpoint['id']}").text
        assert "failing" in page and "Enable" in page and "answered 500" in page
        assert 'badge webhook-failing' in browser.get("/dashboard/webhooks").text
        down.clear()
        enabled = browser.post(f"/dashboard/webhooks/{endpoint['id']}/enable",
                               data={"csrf_token": csrf_of(browser.get(f"/dashboard/webhooks/{endpoint['id']}"))})
        assert enabled.status_code == 303
    got = arrived(receiver, "down", 2, server)  # resumed from the notice it stopped at: none skipped
    assert [d.data["key"]["id"] for d in got] == [k["id"] for k in keys]
    assert api.get(f"/v1/webhooks/{endpoint['id']}", headers=headers).json()["status"] == "active"


def test_the_dashboard_registers_an_endpoint_and_shows_its_secret_once(server: ApiServer, root: str,
                                                                      receiver: Receiver) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as browser:
        assert sign_in(browser, root).status_code == 303
        assert 'href="/dashboard/webhooks"' in browser.get("/dashboard/keys").text
        form = {"csrf_token": csrf_of(browser.get("/dashboard/webhooks")), "url": receiver.url("dashboard"),
                "description": "from the page", "type_key.revoked": "1"}
        created = browser.post("/dashboard/webhooks", data=form)
        assert created.status_code == 200 and "copy its signing secret now" in created.text
        secret = re.search(r'value="(whsec_[^"]+)"', created.text)
        assert secret is not None
        listing = browser.get("/dashboard/webhooks").text
        assert receiver.url("dashboard") in listing and secret.group(1) not in listing
        refused = browser.post("/dashboard/webhooks", data={**form, "url": "http://169.254.169.254/"})
        assert refused.status_code == 400 and "169.254.169.254 is a link-local" in refused.text
        forged = browser.post("/dashboard/webhooks", data={**form, "csrf_token": "forged"})
        assert forged.status_code == 403


def test_findings_and_leaks_arrive_as_signed_webhooks(api: httpx.Client, root: str, receiver: Receiver,
                                                      server: ApiServer) -> None:
    """The watch's key.finding and leak intake's key.leak_reported reach a receiver like every other notice."""
    register(api, root, receiver, "watched", events=["key.finding", "key.leak_reported"])
    admin = {"x-api-key": root}
    used = create(api, root, name="revoked but used", scopes=["read:data"])
    assert api.post(f"/v1/keys/{used['id']}/revoke", json={"reason": "retired"}, headers=admin).status_code == 200
    refused = api.post("/v1/verify", json={"key": used["secret"], "scope": "read:data", "ip": "198.51.100.7"})
    assert refused.status_code == 200 and refused.json()["code"] == "REVOKED"
    leaked = create(api, root, name="leaked", scopes=["read:data"])
    reported = api.post("/v1/leaks", json={"tokens": [leaked["secret"]], "url": "https://paste.example/x"})
    assert reported.status_code == 202

    def both() -> list[Received]:
        found = receiver.of("watched")
        return found if {d.type for d in found} >= {"key.finding", "key.leak_reported"} else []

    got = {d.type: d for d in until_sync(both, timeout=30, what="a finding and a leak delivered", explain=server.log)}
    assert [why for endpoint, why in receiver.rejected if endpoint == "watched"] == []
    finding = got["key.finding"].data
    assert finding["finding"]["kind"] == "revoked_key_used" and finding["finding"]["key_id"] == used["id"]
    assert finding["key"]["id"] == used["id"] and finding["finding"]["severity"] == "high"
    leak = got["key.leak_reported"].data
    assert leak["key"]["id"] == leaked["id"] and leak["leak"]["source"] == "public"
    assert leak["leak"]["url"] == "https://paste.example/x"
    bodies = b"".join(d.body for d in receiver.of("watched"))
    assert used["secret"].encode() not in bodies and leaked["secret"].encode() not in bodies
