"""Usage credits through a real server: ``credits`` on create and PATCH (``null`` removes them), ``cost`` in a
verify (0 checks without spending), ``USAGE_EXCEEDED`` with nothing spent, ``credits.remaining`` in every answer
for such a key, ``X-Keyledger-Credits-Remaining`` from forward-auth, ``key.credits_set`` in the key's history,
what each verify spent in its usage event, bad input, and organization isolation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from keyledger.services.devstack.stack import StackInfo
from tests.support.api import create, usage_for, verify
from tests.support.module_server import module_server, root_key
from tests.support.server import ApiServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(servers: tuple[str, str], stack_info: StackInfo | None,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One API process for the module."""
    with module_server(servers, stack_info, tmp_path_factory, "credits") as api:
        yield api


@pytest.fixture(scope="module")
def root(server: ApiServer) -> str:
    """A global admin key that may call as often as the tests do."""
    return root_key(server, ["admin:apikeys", "read:export"])


@pytest.fixture
def api(server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def codes(answers: list[dict[str, Any]]) -> list[str]:
    return [answer["code"] for answer in answers]


def test_each_valid_verify_spends_its_cost_and_too_few_left_spends_nothing(api: httpx.Client, root: str) -> None:
    key = create(api, root, scopes=["read:data"], rate_limit=1_000_000, credits={"remaining": 5})
    assert key["credits"] == {"remaining": 5, "refill": None, "refilled_at": None}
    secret = key["secret"]
    first = verify(api, secret, "read:data")
    assert (first["code"], first["credits"]) == ("VALID", {"remaining": 4})
    assert verify(api, secret, "read:data", cost=3)["credits"] == {"remaining": 1}
    checked = verify(api, secret, "read:data", cost=0)  # checks without spending
    assert (checked["code"], checked["credits"]) == ("VALID", {"remaining": 1})
    short = verify(api, secret, "read:data", cost=2)
    assert (short["valid"], short["code"], short["credits"]) == (False, "USAGE_EXCEEDED", {"remaining": 1})
    assert "credits" in short["reason"]
    forbidden = verify(api, secret, "write:data")  # refused for its scope: spends nothing, still shows credits
    assert (forbidden["code"], forbidden["credits"]) == ("FORBIDDEN", {"remaining": 1})
    last = verify(api, secret, "read:data")
    assert (last["code"], last["credits"]) == ("VALID", {"remaining": 0})
    assert codes([verify(api, secret, "read:data") for _ in range(2)]) == ["USAGE_EXCEEDED"] * 2
    plain = create(api, root, scopes=["read:data"])
    assert "credits" not in verify(api, plain["secret"], "read:data")  # a key without credits: none shown


def test_credits_are_set_and_removed_by_patch_and_recorded_as_events(api: httpx.Client, root: str) -> None:
    key = create(api, root, scopes=["read:data"], rate_limit=1_000_000)
    assert key["credits"] is None
    auth = {"x-api-key": root}
    refill = {"amount": 100, "interval": "monthly", "day_of_month": 15}
    changed = api.patch(f"/v1/keys/{key['id']}", headers=auth, json={"credits": {"remaining": 1, "refill": refill}})
    assert changed.status_code == 200, changed.text
    assert changed.json()["credits"] == {"remaining": 1, "refill": refill, "refilled_at": None}
    assert verify(api, key["secret"], "read:data")["credits"] == {"remaining": 0}
    assert verify(api, key["secret"], "read:data")["code"] == "USAGE_EXCEEDED"
    renamed = api.patch(f"/v1/keys/{key['id']}", headers=auth, json={"name": "renamed"})  # credits unchanged
    assert renamed.json()["credits"]["remaining"] == 0
    again = api.patch(f"/v1/keys/{key['id']}", headers=auth, json={"credits": {"remaining": 2}}).json()
    assert again["credits"] == {"remaining": 2, "refill": None, "refilled_at": None}  # a new setting: a new balance
    assert verify(api, key["secret"], "read:data")["credits"] == {"remaining": 1}
    removed = api.patch(f"/v1/keys/{key['id']}", headers=auth, json={"credits": None}).json()
    assert removed["credits"] is None
    unlimited = verify(api, key["secret"], "read:data")
    assert unlimited["code"] == "VALID" and "credits" not in unlimited
    history = api.get("/v1/audit", params={"kind": "lifecycle", "key_id": key["id"]}, headers=auth).json()["items"]
    sets = [entry for entry in reversed(history) if entry["action"] == "key.credits_set"]
    assert [entry["detail"]["credits"] for entry in sets] == [
        {"remaining": 1, "refill": refill}, {"remaining": 2, "refill": None}, None]
    assert {entry["actor"] for entry in sets} == {f"key:{root.split('_')[1][:12]}"}  # who set them


def test_forward_auth_shows_credits_left_and_refuses_when_exhausted(api: httpx.Client, root: str) -> None:
    key = create(api, root, scopes=["read:data"], rate_limit=1_000_000, credits={"remaining": 1})
    gate = {"x-api-key": key["secret"]}
    allowed = api.get("/v1/forward-auth", params={"scope": "read:data"}, headers=gate)
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["x-keyledger-credits-remaining"] == "0"
    refused = api.get("/v1/forward-auth", params={"scope": "read:data"}, headers=gate)
    assert refused.status_code == 429
    body = refused.json()
    assert (body["success"], body["code"]) == (False, "USAGE_EXCEEDED") and body["error"]
    assert refused.headers["x-keyledger-credits-remaining"] == "0"
    plain = create(api, root, scopes=["read:data"])
    answered = api.get("/v1/forward-auth", params={"scope": "read:data"}, headers={"x-api-key": plain["secret"]})
    assert answered.status_code == 200 and "x-keyledger-credits-remaining" not in answered.headers


def test_the_usage_event_says_what_each_verify_spent(api: httpx.Client, root: str) -> None:
    key = create(api, root, scopes=["read:data"], rate_limit=1_000_000, credits={"remaining": 10})
    spent = {}
    for request_id, cost in (("credits-spend-4", 4), ("credits-check-0", 0), ("credits-short-9", 9)):
        response = api.post("/v1/verify", json={"key": key["secret"], "scope": "read:data", "cost": cost},
                            headers={"x-request-id": request_id})
        assert response.status_code == 200
        [event] = usage_for(api, root, request_id)
        spent[request_id] = (event["outcome"], event["detail"])
    assert spent == {"credits-spend-4": ("VALID", {"credits_spent": 4}), "credits-check-0": ("VALID", None),
                     "credits-short-9": ("USAGE_EXCEEDED", None)}


@pytest.mark.parametrize(("body", "named"), [
    ({"credits": {"remaining": -1}}, "credits.remaining"),
    ({"credits": {"remaining": 5, "refill": {"amount": 0, "interval": "daily"}}}, "credits.refill.amount"),
    ({"credits": {"remaining": 5, "refill": {"amount": 5, "interval": "weekly"}}}, "interval"),
    ({"credits": {"remaining": 5, "refill": {"amount": 5, "interval": "daily", "day_of_month": 3}}},
     "day_of_month"),
    ({"credits": {"remaining": 5, "refill": {"amount": 5, "interval": "monthly", "day_of_month": 32}}},
     "day_of_month"),
    ({"credits": {"left": 5}}, "left"),
])
def test_bad_credits_are_a_400_naming_the_field_and_change_nothing(api: httpx.Client, root: str,
                                                                   body: dict[str, Any], named: str) -> None:
    auth = {"x-api-key": root}
    refused = api.post("/v1/keys", headers=auth, json={"name": "bad credits", **body})
    assert refused.status_code == 400, refused.text
    assert refused.json()["code"] == "VALIDATION_ERROR" and named in refused.json()["error"], refused.json()
    key = create(api, root, scopes=["read:data"], credits={"remaining": 3})
    patched = api.patch(f"/v1/keys/{key['id']}", headers=auth, json=body)
    assert patched.status_code == 400 and named in patched.json()["error"], patched.text
    assert api.get(f"/v1/keys/{key['id']}", headers=auth).json()["version"] == key["version"]


def test_a_bad_cost_is_a_400(api: httpx.Client, root: str) -> None:
    key = create(api, root, scopes=["read:data"], credits={"remaining": 3})
    for cost in (-1, 1_000_001, "2"):
        refused = api.post("/v1/verify", json={"key": key["secret"], "scope": "read:data", "cost": cost})
        assert refused.status_code == 400 and refused.json()["code"] == "VALIDATION_ERROR", refused.text
        assert "cost" in refused.json()["error"]
    assert verify(api, key["secret"], "read:data")["credits"] == {"remaining": 2}  # none of them spent


def test_an_organizations_admin_sets_credits_only_on_its_own_keys(api: httpx.Client, root: str) -> None:
    acme = create(api, root, scopes=["admin:apikeys", "read:data"], organization_id="acme", rate_limit=1_000_000)
    other = create(api, root, scopes=["read:data"], organization_id="globex", credits={"remaining": 4})
    refused = api.patch(f"/v1/keys/{other['id']}", headers={"x-api-key": acme["secret"]},
                        json={"credits": {"remaining": 1_000}})
    assert refused.status_code == 404 and refused.json()["code"] == "NOT_FOUND"
    shown = api.get(f"/v1/keys/{other['id']}", headers={"x-api-key": root}).json()
    assert shown["credits"]["remaining"] == 4 and shown["version"] == other["version"]
    own = create(api, acme["secret"], scopes=["read:data"])
    set_own = api.patch(f"/v1/keys/{own['id']}", headers={"x-api-key": acme["secret"]},
                        json={"credits": {"remaining": 7}})
    assert set_own.status_code == 200 and set_own.json()["credits"]["remaining"] == 7
