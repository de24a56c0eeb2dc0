"""Owners through a real server: ``owner_id`` on keys (create, PATCH, ``?owner_id=``), ``PUT``/``GET
/v1/owners/{owner_id}`` with a rate limit and credits shared by the owner's keys on top of each key's own, the
owner's numbers in verify answers, RATE_LIMITED / USAGE_EXCEEDED naming the owner, organization isolation and
bad input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from keyledger.services.devstack.stack import StackInfo
from tests.support.api import create, sign_in, verify
from tests.support.module_server import module_server, root_key
from tests.support.server import ApiServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(servers: tuple[str, str], stack_info: StackInfo | None,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One API process for the module."""
    with module_server(servers, stack_info, tmp_path_factory, "owners") as api:
        yield api


@pytest.fixture(scope="module")
def root(server: ApiServer) -> str:
    """A global admin key that may call as often as the tests do."""
    return root_key(server)


@pytest.fixture
def api(server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def put_owner(api: httpx.Client, admin: str, owner_id: str, body: dict[str, Any],
              organization_id: str | None = None) -> httpx.Response:
    params = {"organization_id": organization_id} if organization_id else {}
    return api.put(f"/v1/owners/{owner_id}", json=body, params=params, headers={"x-api-key": admin})


def test_owner_id_is_set_changed_cleared_and_filters_the_list(api: httpx.Client, root: str) -> None:
    auth = {"x-api-key": root}
    first = create(api, root, scopes=["read:data"], owner_id="cust-list-1")
    second = create(api, root, scopes=["read:data"], owner_id="cust-list-1")
    other = create(api, root, scopes=["read:data"])
    assert first["owner_id"] == "cust-list-1" and other["owner_id"] is None
    listed = api.get("/v1/keys", params={"owner_id": "cust-list-1"}, headers=auth).json()["items"]
    assert sorted(k["id"] for k in listed) == sorted([first["id"], second["id"]])
    moved = api.patch(f"/v1/keys/{second['id']}", headers=auth, json={"owner_id": "cust-list-2"}).json()
    assert moved["owner_id"] == "cust-list-2"
    assert [k["id"] for k in api.get("/v1/keys", params={"owner_id": "cust-list-1"}, headers=auth).json()["items"]
            ] == [first["id"]]
    cleared = api.patch(f"/v1/keys/{second['id']}", headers=auth, json={"owner_id": ""}).json()
    assert cleared["owner_id"] is None
    bad = api.post("/v1/keys", headers=auth, json={"name": "bad owner", "owner_id": "has space"})
    assert bad.status_code == 400 and "owner_id" in bad.json()["error"]


def test_an_owners_rate_limit_is_shared_by_its_keys(api: httpx.Client, root: str) -> None:
    made = put_owner(api, root, "cust-rate", {"rate_limit": 3})
    assert made.status_code == 200, made.text
    assert (made.json()["rate_limit"], made.json()["credits"], made.json()["version"]) == (3, None, 1)
    one = create(api, root, scopes=["read:data"], owner_id="cust-rate")
    two = create(api, root, scopes=["read:data"], owner_id="cust-rate")
    answers = [verify(api, key["secret"], "read:data") for key in (one, two, one)]
    assert [a["code"] for a in answers] == ["VALID"] * 3
    assert [a["owner"]["ratelimit"]["remaining"] for a in answers] == [2, 1, 0]
    assert answers[0]["owner"]["owner_id"] == "cust-rate" and answers[0]["ratelimit"]["limit"] == 100  # its own
    over = verify(api, two["secret"], "read:data")
    assert (over["valid"], over["code"]) == (False, "RATE_LIMITED")
    assert "owner cust-rate" in over["reason"], over
    alone = create(api, root, scopes=["read:data"])  # a key of no owner is not held back
    assert verify(api, alone["secret"], "read:data")["code"] == "VALID"


def test_an_owners_credits_are_shared_and_a_refusal_spends_none_of_the_keys(api: httpx.Client, root: str) -> None:
    assert put_owner(api, root, "cust-credits", {"credits": {"remaining": 3}}).status_code == 200
    metered = create(api, root, scopes=["read:data"], owner_id="cust-credits", credits={"remaining": 10})
    plain = create(api, root, scopes=["read:data"], owner_id="cust-credits")
    first = verify(api, metered["secret"], "read:data", cost=2)
    assert (first["code"], first["credits"], first["owner"]["credits"]) == ("VALID", {"remaining": 8},
                                                                           {"remaining": 1})
    short = verify(api, plain["secret"], "read:data", cost=2)
    assert (short["valid"], short["code"]) == (False, "USAGE_EXCEEDED")
    assert "owner cust-credits" in short["reason"] and short["owner"]["credits"] == {"remaining": 1}
    refused = verify(api, metered["secret"], "read:data", cost=2)  # the key has 8, the owner 1
    assert (refused["code"], refused["credits"]) == ("USAGE_EXCEEDED", {"remaining": 8})  # nothing spent
    last = verify(api, plain["secret"], "read:data")
    assert (last["code"], last["owner"]["credits"]) == ("VALID", {"remaining": 0})
    shown = api.get("/v1/owners/cust-credits", headers={"x-api-key": root}).json()
    assert shown["credits"]["remaining"] == 0 and sorted(shown["keys"]) == sorted([metered["id"], plain["id"]])
    # more credits for the owner: a new setting, a new balance; null removes the shared limit
    assert put_owner(api, root, "cust-credits", {"credits": {"remaining": 5}}).json()["credits"]["remaining"] == 5
    assert verify(api, plain["secret"], "read:data")["owner"]["credits"] == {"remaining": 4}
    removed = put_owner(api, root, "cust-credits", {"credits": None}).json()
    assert (removed["credits"], removed["version"]) == (None, 3)
    free = verify(api, plain["secret"], "read:data", cost=50)
    assert free["code"] == "VALID" and "owner" not in free


def test_owners_belong_to_an_organization(api: httpx.Client, root: str) -> None:
    acme = create(api, root, scopes=["admin:apikeys", "read:data"], organization_id="acme", rate_limit=1_000_000)
    globex = create(api, root, scopes=["admin:apikeys", "read:data"], organization_id="globex",
                    rate_limit=1_000_000)
    acme_key = create(api, acme["secret"], scopes=["read:data"], owner_id="shared-name")
    globex_key = create(api, globex["secret"], scopes=["read:data"], owner_id="shared-name")
    assert put_owner(api, acme["secret"], "shared-name", {"credits": {"remaining": 1}}).status_code == 200
    assert verify(api, acme_key["secret"], "read:data")["code"] == "VALID"
    assert verify(api, acme_key["secret"], "read:data")["code"] == "USAGE_EXCEEDED"
    assert verify(api, globex_key["secret"], "read:data")["code"] == "VALID"  # globex's owner of that name: none
    seen = api.get("/v1/owners/shared-name", headers={"x-api-key": globex["secret"]})
    assert seen.status_code == 200 and seen.json()["credits"] is None and seen.json()["keys"] == [globex_key["id"]]
    assert api.get("/v1/owners/shared-name", headers={"x-api-key": acme["secret"]}).json()["keys"] == [acme_key["id"]]
    crossing = put_owner(api, acme["secret"], "shared-name", {"rate_limit": 1}, organization_id="globex")
    assert crossing.status_code == 403 and crossing.json()["code"] == "FORBIDDEN"
    as_root = api.get("/v1/owners/shared-name", params={"organization_id": "acme"}, headers={"x-api-key": root})
    assert as_root.json()["organization_id"] == "acme" and as_root.json()["credits"]["remaining"] == 0


@pytest.mark.parametrize(("owner_id", "body", "status", "named"), [
    ("cust-bad", {"rate_limit": 0}, 400, "rate_limit"),
    ("cust-bad", {"credits": {"remaining": -3}}, 400, "credits.remaining"),
    ("cust-bad", {}, 400, "nothing to set"),
    ("cust-bad", {"limit": 5}, 400, "limit"),
    ("bad%20owner", {"rate_limit": 5}, 400, "owner_id"),
])
def test_bad_owner_input_is_a_400_and_changes_nothing(api: httpx.Client, root: str, owner_id: str,
                                                      body: dict[str, Any], status: int, named: str) -> None:
    refused = put_owner(api, root, owner_id, body)
    assert refused.status_code == status and named in refused.json()["error"], refused.text
    assert refused.json()["success"] is False
    assert api.get("/v1/owners/cust-bad", headers={"x-api-key": root}).status_code == 404


def test_an_unknown_owner_is_a_404(api: httpx.Client, root: str) -> None:
    missing = api.get("/v1/owners/nobody-here", headers={"x-api-key": root})
    assert missing.status_code == 404 and missing.json() == {
        "success": False, "error": "owner nobody-here not found", "code": "NOT_FOUND"}


def test_the_dashboard_shows_and_finds_a_keys_owner(server: ApiServer, api: httpx.Client, root: str) -> None:
    owned = create(api, root, name="owned by someone", scopes=["read:data"], owner_id="Cust-Dashboard-7",
                   credits={"remaining": 12, "refill": {"amount": 30, "interval": "daily"}})
    unowned = create(api, root, name="owned by nobody", scopes=["read:data"])
    with httpx.Client(base_url=server.url, timeout=10) as browser:
        assert sign_in(browser, root).status_code == 303
        found = browser.get("/dashboard/keys", params={"q": "cust-dashboard"}).text
        assert "owned by someone" in found and "owned by nobody" not in found
        assert "Cust-Dashboard-7" in found
        page = browser.get(f"/dashboard/keys/{owned['id']}").text
        assert "Cust-Dashboard-7" in page and "set to 12, refilled to 30 daily (UTC)" in page
        assert "unlimited" in browser.get(f"/dashboard/keys/{unowned['id']}").text
