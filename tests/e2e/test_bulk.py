"""``POST /v1/keys/bulk`` through a real server: revoke, add and remove tags on the keys named by id or
selected by a filter, each key's own result and event, dry runs that change nothing, the clear refusals
(nothing matched, too many, bad input), organization isolation, and a batch revoke that returns only once
another replica holds every revoke."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from keyledger.services.devstack.stack import StackInfo
from tests.e2e.test_replicas import hears
from tests.support.api import create, verify
from tests.support.module_server import module_server, root_key
from tests.support.server import ApiServer, StartServer
from tests.support.wait import until_sync

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(servers: tuple[str, str], stack_info: StackInfo | None,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One API process for the module."""
    with module_server(servers, stack_info, tmp_path_factory, "bulk") as api:
        yield api


@pytest.fixture(scope="module")
def root(server: ApiServer) -> str:
    """A global admin key that may call as often as the tests do."""
    return root_key(server)


@pytest.fixture
def api(server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def bulk(api: httpx.Client, admin: str, status: int = 200, **body: Any) -> dict[str, Any]:
    answer = api.post("/v1/keys/bulk", json=body, headers={"x-api-key": admin})
    assert answer.status_code == status, answer.text
    return answer.json()  # type: ignore[no-any-return]


def key(api: httpx.Client, admin: str, key_id: str) -> dict[str, Any]:
    return api.get(f"/v1/keys/{key_id}", headers={"x-api-key": admin}).json()  # type: ignore[no-any-return]


def test_revoke_by_ids_reports_every_key_and_records_one_event_each(api: httpx.Client, root: str) -> None:
    made = [create(api, root, scopes=["read:data"]) for _ in range(3)]
    gone = create(api, root, scopes=["read:data"])
    assert api.post(f"/v1/keys/{gone['id']}/revoke", headers={"x-api-key": root}).status_code == 200
    ids = [k["id"] for k in made] + [gone["id"], "nosuchkey000", made[0]["id"]]  # a repeat counts once

    tried = bulk(api, root, action="revoke", ids=ids, reason="offboarding", dry_run=True)
    assert [(r["id"], r["code"]) for r in tried["results"]] == [
        *((k["id"], "OK") for k in made), (gone["id"], "CONFLICT"), ("nosuchkey000", "NOT_FOUND")]
    assert all(verify(api, k["secret"], "read:data")["code"] == "VALID" for k in made)  # the dry run changed nothing
    assert all(key(api, root, k["id"])["version"] == 1 for k in made)

    done = bulk(api, root, action="revoke", ids=ids, reason="offboarding")
    assert (done["matched"], done["succeeded"], done["failed"], done["dry_run"]) == (5, 3, 2, False)
    assert [r["ok"] for r in done["results"]] == [True, True, True, False, False]
    assert "revoked" in done["results"][3]["error"] and done["results"][4]["error"].startswith("key nosuchkey000")
    for k in made:
        shown = key(api, root, k["id"])
        assert (shown["status"], shown["revoke_reason"], shown["version"]) == ("revoked", "offboarding", 2)
        assert verify(api, k["secret"], "read:data")["code"] == "REVOKED"
    assert key(api, root, gone["id"])["version"] == 2  # the already revoked key got nothing more


def test_tags_are_added_and_removed_by_filter(api: httpx.Client, root: str) -> None:
    first = create(api, root, organization_id="tagging", tags=["batch-1"])
    second = create(api, root, organization_id="tagging", tags=["batch-1", "blue"])
    other = create(api, root, organization_id="elsewhere", tags=["batch-1"])
    wanted = {"organization_id": "tagging", "tag": "batch-1"}

    added = bulk(api, root, action="add_tags", filter=wanted, tags=["Blue", "audited"])
    assert [(r["id"], r["code"]) for r in added["results"]] == sorted([(first["id"], "OK"), (second["id"], "OK")])
    assert key(api, root, first["id"])["tags"] == ["batch-1", "blue", "audited"]
    assert key(api, root, second["id"])["tags"] == ["batch-1", "blue", "audited"]
    assert key(api, root, other["id"])["tags"] == ["batch-1"]  # outside the filter

    removed = bulk(api, root, action="remove_tags", filter={"tag": "audited"}, tags=["blue"], dry_run=True)
    assert removed["dry_run"] and {r["code"] for r in removed["results"]} == {"OK"}
    assert key(api, root, first["id"])["tags"] == ["batch-1", "blue", "audited"]
    bulk(api, root, action="remove_tags", ids=[first["id"]], tags=["blue"])
    again = bulk(api, root, action="remove_tags", ids=[first["id"], second["id"]], tags=["blue"])
    assert [r["code"] for r in again["results"]] == ["UNCHANGED", "OK"]  # nothing to take from the first
    assert key(api, root, first["id"])["version"] == 3  # created, tagged, untagged: one event per change


def test_created_before_selects_older_keys_and_never_the_calling_key(api: httpx.Client, root: str) -> None:
    older = create(api, root, organization_id="aging")
    newer = create(api, root, organization_id="aging")
    picked = bulk(api, root, action="add_tags", filter={"organization_id": "aging",
                                                        "created_before": newer["created_at"]}, tags=["old"])
    assert [r["id"] for r in picked["results"]] == [older["id"]]
    admin = create(api, root, organization_id="aging", scopes=["admin:apikeys"], rate_limit=1_000_000)
    mine = bulk(api, admin["secret"], action="revoke", filter={"organization_id": "aging"}, dry_run=True)
    assert admin["id"] not in {r["id"] for r in mine["results"]} and len(mine["results"]) == 2


def test_owner_id_selects_the_owners_keys(api: httpx.Client, root: str) -> None:
    owned = [create(api, root, owner_id="customer-7", scopes=["read:data"]) for _ in range(2)]
    other = create(api, root, owner_id="customer-8", scopes=["read:data"])
    done = bulk(api, root, action="revoke", filter={"owner_id": "customer-7"}, reason="customer left")
    assert sorted(r["id"] for r in done["results"]) == sorted(k["id"] for k in owned) and done["failed"] == 0
    assert [verify(api, k["secret"], "read:data")["code"] for k in [*owned, other]] == ["REVOKED", "REVOKED", "VALID"]


def test_bad_input_and_empty_selections_are_refused_and_change_nothing(api: httpx.Client, root: str) -> None:
    kept = create(api, root, organization_id="untouched", tags=["keep"])
    nothing = bulk(api, root, 404, action="revoke", filter={"tag": "no-such-tag"})
    assert nothing["code"] == "NOT_FOUND" and "no key matches" in nothing["error"]
    assert bulk(api, root, 400, action="revoke", filter={})["code"] == "VALIDATION_ERROR"
    assert "ids or a filter" in bulk(api, root, 400, action="revoke")["error"]
    assert "ids or a filter" in bulk(api, root, 400, action="revoke", ids=[kept["id"]], filter={"tag": "keep"})["error"]
    too_many = bulk(api, root, 400, action="revoke", ids=[f"id{n:010d}" for n in range(10_001)])
    assert "10,001" in too_many["error"] and "10,000" in too_many["error"]
    assert "'bad tag!'" in bulk(api, root, 400, action="add_tags", ids=[kept["id"]], tags=["bad tag!"])["error"]
    assert "needs tags" in bulk(api, root, 400, action="add_tags", ids=[kept["id"]])["error"]
    assert bulk(api, root, 400, action="purge", ids=[kept["id"]])["code"] == "VALIDATION_ERROR"
    assert bulk(api, root, 400, action="revoke", filter={"tag": "keep", "colour": "red"})["code"] == "VALIDATION_ERROR"
    shown = key(api, root, kept["id"])
    assert (shown["status"], shown["version"], shown["tags"]) == ("active", 1, ["keep"])


def test_an_organization_admin_touches_only_its_organization(api: httpx.Client, root: str) -> None:
    ours = create(api, root, organization_id="org-a", tags=["cleanup"])
    theirs = create(api, root, organization_id="org-b", tags=["cleanup"])
    admin = create(api, root, organization_id="org-a", scopes=["admin:apikeys"], rate_limit=1_000_000)["secret"]

    named = bulk(api, admin, action="revoke", ids=[ours["id"], theirs["id"]])
    assert [(r["id"], r["code"]) for r in named["results"]] == [(ours["id"], "OK"), (theirs["id"], "NOT_FOUND")]
    assert bulk(api, admin, 403, action="revoke", filter={"organization_id": "org-b"})["code"] == "FORBIDDEN"
    again = create(api, root, organization_id="org-a", tags=["cleanup"])
    filtered = bulk(api, admin, action="revoke", filter={"tag": "cleanup"})
    assert [r["id"] for r in filtered["results"]] == [again["id"]]  # org-b's key carries the tag too
    assert key(api, root, theirs["id"])["status"] == "active"


def test_a_batch_revoke_returns_once_the_other_replica_holds_every_revoke(start_server: StartServer) -> None:
    """No relay runs here, so nothing but the batch's one nudge makes the other replica read the store."""
    first = start_server(workers=False)
    second = start_server(first.settings, workers=False)
    admin = first.bootstrap_secret
    assert admin is not None, first.log()
    until_sync(lambda: hears(first, 1) and hears(second, 1), timeout=20, what="the replicas to hear each other")
    with httpx.Client(base_url=first.url, timeout=30) as one, httpx.Client(base_url=second.url, timeout=10) as two:
        made = [create(one, admin, scopes=["read:data"], tags=["fleet"]) for _ in range(20)]
        assert all(verify(two, k["secret"], "read:data")["code"] == "VALID" for k in made)
        done = bulk(one, admin, action="revoke", filter={"tag": "fleet"})
        assert done["succeeded"] == 20
        assert [verify(two, k["secret"], "read:data")["code"] for k in made] == ["REVOKED"] * 20  # at once
