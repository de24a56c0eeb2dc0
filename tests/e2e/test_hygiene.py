"""The hygiene report through a real ``keyledger serve`` (API, relay, projector and audit sink over real Postgres
and NATS): a key holding global ``read:data``, ``write:data`` and ``read:export`` that only verified ``read:data``
on ``site-a`` gets exactly that website grant suggested; applying the suggestion as it is (with ``If-Match``)
keeps those verifies VALID and refuses the rest. The report is scoped like the keys; the CLI prints the same
report; a server whose clock runs 100 days ahead finds the keys unused and not rotated."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.support.api import create, verify
from tests.support.cli import Cli
from tests.support.clock import ReferenceClock
from tests.support.server import ApiServer, StartServer
from tests.support.wait import until_sync

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
WEBSITE_A = [{"resource": "website", "id": "site-a", "scopes": ["read:data"]}]


def report(client: httpx.Client, key: str, **params: str) -> httpx.Response:
    return client.get("/v1/reports/hygiene", params=params, headers={"x-api-key": key})


def item_of(client: httpx.Client, admin: str, key_id: str) -> dict[str, Any] | None:
    answer = report(client, admin)
    assert answer.status_code == 200, answer.text
    return next((item for item in answer.json()["items"] if item["id"] == key_id), None)


def suggested(client: httpx.Client, admin: str, key_id: str) -> dict[str, Any]:
    """The key's report item, once the audit sink has stored its uses and the report suggests narrowing it."""
    def ready() -> dict[str, Any] | None:
        item = item_of(client, admin, key_id)
        return item if item is not None and item["suggestion"] is not None else None
    found = until_sync(ready, timeout=20, interval=0.2, what=f"a suggestion for key {key_id}")
    assert found is not None
    return found


def test_applying_the_suggestion_keeps_what_the_key_used_and_refuses_the_rest(client: httpx.Client, admin: str,
                                                                              auditor: str) -> None:
    key = create(client, admin, name="ingest", scopes=["read:data", "write:data", "read:export"])
    for _ in range(3):
        assert verify(client, key["secret"], "read:data", website_id="site-a")["code"] == "VALID"
    assert item_of(client, auditor, key["id"]) is not None  # listed at once; its suggestion waits for the sink

    item = suggested(client, auditor, key["id"])
    assert item["issues"] == ["no_expiry", "overprivileged"]
    assert item["suggestion"] == {
        "patch": {"scopes": [], "access": WEBSITE_A},
        "unused_grants": [{"resource": "global", "scopes": ["read:data", "read:export", "write:data"]}]}
    assert item["version"] == key["version"] and item["last_used_at"] is not None
    assert (item["age_days"], item["last_rotated_at"], item["expires_at"]) == (0, None, None)

    applied = client.patch(f"/v1/keys/{key['id']}", json=item["suggestion"]["patch"],
                           headers={"x-api-key": admin, "If-Match": f'"{item["version"]}"'})
    assert applied.status_code == 200, applied.text
    assert applied.json()["scopes"] == [] and applied.json()["access"] == WEBSITE_A
    for _ in range(3):
        assert verify(client, key["secret"], "read:data", website_id="site-a")["code"] == "VALID"
    assert verify(client, key["secret"], "read:data", website_id="site-a", data="error_data")["code"] == "VALID"
    for scope, where in (("write:data", {"website_id": "site-a"}), ("read:data", {"website_id": "site-b"}),
                         ("read:data", {}), ("read:export", {})):
        assert verify(client, key["secret"], scope, **where)["code"] == "FORBIDDEN", (scope, where)

    after = item_of(client, auditor, key["id"])
    assert after is not None and after["issues"] == ["no_expiry"] and after["suggestion"] is None
    stale = client.patch(f"/v1/keys/{key['id']}", json=item["suggestion"]["patch"],
                         headers={"x-api-key": admin, "If-Match": f'"{item["version"]}"'})
    assert stale.status_code == 409 and stale.json()["code"] == "CONFLICT"


def test_the_report_is_scoped_like_the_keys_and_the_cli_prints_it(client: httpx.Client, admin: str, auditor: str,
                                                                  api: ApiServer, clock: ReferenceClock,
                                                                  replica: StartServer) -> None:
    org_admin = create(client, admin, name="org-a admin", organization_id="org-a",
                       scopes=["admin:apikeys", "read:data"], rate_limit=1_000_000)  # the test polls its report
    mine = create(client, org_admin["secret"], name="mine", scopes=["read:data"])
    theirs = create(client, admin, name="theirs", organization_id="org-b", scopes=["read:data"])
    reader = create(client, admin, name="reader", scopes=["read:data"])
    verify(client, mine["secret"], "read:data", website_id="site-a")
    rotated = client.post(f"/v1/keys/{theirs['id']}/rotate", headers={"x-api-key": admin}).json()

    own = report(client, org_admin["secret"])
    assert own.status_code == 200, own.text
    assert {item["id"] for item in own.json()["items"]} == {org_admin["id"], mine["id"]}
    assert own.json()["organization_id"] == "org-a"
    asked = report(client, org_admin["secret"], organization_id="org-a").json()["items"]
    assert [item["id"] for item in asked] == [item["id"] for item in own.json()["items"]]
    other = report(client, org_admin["secret"], organization_id="org-b")
    assert other.status_code == 403 and other.json() == {"success": False, "code": "FORBIDDEN",
                                                          "error": other.json()["error"]}
    global_view = report(client, auditor, organization_id="org-b").json()
    assert [item["id"] for item in global_view["items"]] == [theirs["id"]]
    assert global_view["items"][0]["last_rotated_at"] == rotated["updated_at"]
    everything = report(client, auditor).json()
    assert {mine["id"], theirs["id"], reader["id"], org_admin["id"]} <= {item["id"] for item in everything["items"]}
    assert everything["summary"]["keys"] == len(everything["items"])
    assert report(client, reader["secret"]).json()["code"] == "FORBIDDEN"  # no admin:apikeys
    assert report(client, "kl_not_a_key").json()["code"] == "AUTH_REQUIRED"
    assert report(client, auditor, organization_id="a\x00b").json()["code"] == "VALIDATION_ERROR"

    suggested(client, org_admin["secret"], mine["id"])  # the sink stored the verify: the CLI sees it too
    # the organization's admin only managed keys: what it used of its grants is admin:apikeys
    assert suggested(client, org_admin["secret"], org_admin["id"])["suggestion"] == {
        "patch": {"scopes": ["admin:apikeys"], "access": []},
        "unused_grants": [{"resource": "global", "scopes": ["read:data"]}]}
    cli = Cli(api.database_url, api.nats_url)
    cli.env.update(clock.start_env())
    printed = cli.json("report", "hygiene", "--org", "org-a")
    assert [(i["id"], i["issues"], i["suggestion"]) for i in printed["items"]] == [
        (i["id"], i["issues"], i["suggestion"]) for i in report(client, org_admin["secret"]).json()["items"]]
    assert f"PATCH /v1/keys/{mine['id']}" in cli.run("report", "hygiene").stdout

    later = replica(ahead=timedelta(days=100))  # the same keys, 100 days on
    with httpx.Client(base_url=later.url, timeout=10) as ahead:
        items = {item["id"]: item for item in report(ahead, auditor).json()["items"]}
    assert items[reader["id"]]["issues"] == ["unused", "not_rotated", "no_expiry"]  # never used, 100 days old
    assert items[mine["id"]]["issues"] == ["unused", "not_rotated", "no_expiry"]  # last used 100 days ago
    assert items[mine["id"]]["suggestion"] is None  # no use within the last 30 days: nothing to learn from
    assert items[theirs["id"]]["issues"] == ["unused", "not_rotated", "no_expiry"]
    assert items[theirs["id"]]["age_days"] == 100
