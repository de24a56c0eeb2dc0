"""Key management through the HTTP API: listing, versions, organizations, bad input, secrets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from keyledger.services.devstack.stack import StackInfo
from tests.support.api import create, verify
from tests.support.module_server import module_server, root_key
from tests.support.server import ApiServer, StartServer


@pytest.fixture(scope="module")
def shared(servers: tuple[str, str], stack_info: StackInfo | None,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, str]]:
    """One server for the tests that look only at keys of their own (every bad create changes nothing, and
    checks so itself), with a global admin key that may call as often as they do together: one server start
    rather than twenty."""
    with module_server(servers, stack_info, tmp_path_factory, "management") as server, \
            httpx.Client(base_url=server.url, timeout=10) as client:
        yield client, root_key(server)


def test_list_get_and_last_used(client: httpx.Client, admin: str) -> None:
    headers = {"x-api-key": admin}
    made = [create(client, admin, name=f"key {i}", scopes=["read:data"]) for i in range(5)]
    seen, cursor = [], None
    while True:
        page = client.get("/v1/keys", params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                          headers=headers).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    bootstrap = [k["id"] for k in seen if k["name"] == "bootstrap admin"]
    assert len(bootstrap) == 1
    assert sorted(k["id"] for k in seen) == sorted([k["id"] for k in made] + bootstrap)
    assert all("secret" not in k and "secret_hash" not in k for k in seen)
    assert all(k["start"].startswith("kl_") and len(k["start"]) == 19 for k in seen)
    one = client.get(f"/v1/keys/{made[0]['id']}", headers=headers)
    assert one.headers["etag"] == '"1"' and one.json()["last_used_at"] is None
    verify(client, made[0]["secret"], "read:data")
    assert client.get(f"/v1/keys/{made[0]['id']}", headers=headers).json()["last_used_at"] is not None
    assert client.get("/v1/keys/AAAAAAAAAAAA", headers=headers).json()["code"] == "NOT_FOUND"
    assert client.get("/v1/keys", params={"limit": 0}, headers=headers).json()["code"] == "VALIDATION_ERROR"


def _pages(client: httpx.Client, secret: str, **params: str) -> list[list[str]]:
    """Every page of ``GET /v1/keys`` (2 a page) as lists of ids, following ``next_cursor``."""
    pages, cursor = [], None
    while True:
        page = client.get("/v1/keys", params={"limit": 2, **params, **({"cursor": cursor} if cursor else {})},
                          headers={"x-api-key": secret}).json()
        pages.append([k["id"] for k in page["items"]])
        if (cursor := page["next_cursor"]) is None:
            return pages


def test_an_organization_pages_through_its_own_keys_in_order_as_keys_are_created(
        client: httpx.Client, admin: str) -> None:
    acme = create(client, admin, scopes=["admin:apikeys", "read:data"], organization_id="acme-pages",
                  rate_limit=1_000_000)
    other = create(client, admin, scopes=["admin:apikeys", "read:data"], organization_id="other-pages",
                   rate_limit=1_000_000)
    mine = [create(client, acme["secret"], scopes=["read:data"], owner_id=f"o{i % 2}")["id"] for i in range(5)]
    theirs = [create(client, other["secret"], scopes=["read:data"], owner_id="o0")["id"] for _ in range(3)]
    pages = _pages(client, acme["secret"])
    assert sum(pages, []) == sorted([*mine, acme["id"]]) and all(len(p) == 2 for p in pages[:-1])
    later = create(client, acme["secret"], scopes=["read:data"], owner_id="o0")["id"]  # after the first listing
    assert sum(_pages(client, acme["secret"]), []) == sorted([*mine, acme["id"], later])
    owned = sum(_pages(client, acme["secret"], owner_id="o0"), [])
    assert owned == sorted([*mine[0::2], later])  # the owner's keys in this organization only
    assert sum(_pages(client, other["secret"]), []) == sorted([*theirs, other["id"]])
    everyone = sum(_pages(client, admin), [])
    assert everyone == sorted(everyone) and {*mine, *theirs, later} <= set(everyone)


def test_change_access_with_if_match(shared: tuple[httpx.Client, str]) -> None:
    client, admin = shared
    headers = {"x-api-key": admin}
    key = create(client, admin, scopes=["read:data"])
    changed = client.patch(f"/v1/keys/{key['id']}", headers={**headers, "If-Match": '"1"'},
                           json={"name": "renamed", "scopes": [],
                                 "access": [{"resource": "error_data", "scopes": ["read:analytics"]}]})
    assert changed.status_code == 200 and changed.headers["etag"] == '"2"'
    assert changed.json()["access"] == [{"resource": "error_data", "scopes": ["read:analytics"]}]
    assert verify(client, key["secret"], "read:data")["code"] == "FORBIDDEN"
    assert verify(client, key["secret"], "read:analytics", data="error_data")["valid"]
    stale = client.patch(f"/v1/keys/{key['id']}", headers={**headers, "If-Match": '"1"'}, json={"name": "lost"})
    assert stale.status_code == 409 and stale.json()["code"] == "CONFLICT"
    assert client.get(f"/v1/keys/{key['id']}", headers=headers).json()["name"] == "renamed"
    bad = client.patch(f"/v1/keys/{key['id']}", headers={**headers, "If-Match": "yesterday"}, json={"name": "x"})
    assert bad.status_code == 400


def test_an_organization_admin_manages_only_its_organization(shared: tuple[httpx.Client, str]) -> None:
    client, admin = shared
    site_a = [{"resource": "website", "id": "site-a", "scopes": ["read:data"]}]
    org_admin = create(client, admin, organization_id="org-a", scopes=["admin:apikeys"], access=site_a)["secret"]
    other = create(client, admin, organization_id="org-b", scopes=["read:data"])
    own = create(client, org_admin, access=site_a)
    assert own["organization_id"] == "org-a"
    headers = {"x-api-key": org_admin}
    listed = client.get("/v1/keys", headers=headers).json()["items"]
    assert {k["organization_id"] for k in listed} == {"org-a"}
    for response in (client.get(f"/v1/keys/{other['id']}", headers=headers),
                     client.post(f"/v1/keys/{other['id']}/revoke", headers=headers)):
        assert response.status_code == 404
    refused = client.post("/v1/keys", json={"name": "x", "organization_id": "org-b"}, headers=headers)
    assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN"
    assert verify(client, other["secret"], "read:data")["valid"]


BAD_CREATES: list[Any] = [
    {"name": 5}, {"name": ""}, {"name": "   "}, {"name": "x", "scopes": ["read:everything"]},
    {"name": "x", "scopes": "read:data"}, {"name": "x", "access": [{"resource": "planet", "scopes": ["read:data"]}]},
    {"name": "x", "access": [{"resource": "website", "scopes": ["read:data"]}]},
    {"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, {"name": "x", "expires_at": "2030-01-01T00:00:00"},
    {"name": "x", "expires_at": "soon"}, {"name": "x" * 10_000}, {"name": "a\u0000b"}, {"nom": "x"},
    {"name": "x", "access": [{"resource": "website", "id": f"w{i}", "scopes": ["read:data"]} for i in range(101)]},
    [], "name", None,
]


def keys_without_usage(client: httpx.Client, admin: str) -> list[dict[str, Any]]:
    items = client.get("/v1/keys", headers={"x-api-key": admin}).json()["items"]
    return [{name: value for name, value in k.items() if name != "last_used_at"} for k in items]


@pytest.mark.parametrize("body", BAD_CREATES)
def test_bad_create_input_is_a_structured_4xx_and_changes_nothing(shared: tuple[httpx.Client, str],
                                                                  body: Any) -> None:
    client, admin = shared
    headers = {"x-api-key": admin}
    before = keys_without_usage(client, admin)
    response = client.post("/v1/keys", json=body, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    payload = response.json()
    assert payload["success"] is False and payload["code"] == "VALIDATION_ERROR" and payload["error"]
    assert keys_without_usage(client, admin) == before


def test_other_bad_requests(shared: tuple[httpx.Client, str]) -> None:
    client, admin = shared
    headers = {"x-api-key": admin}
    # The server answers 413 without reading the rest and may then close the connection: the next
    # request on it would find it closed (about every other time). This one gets a connection of its own.
    huge = client.post("/v1/keys", content=b'{"name": "' + b"x" * 200_000 + b'"}',
                       headers={**headers, "content-type": "application/json", "connection": "close"})
    assert huge.status_code == 413 and huge.json()["code"] == "VALIDATION_ERROR"
    broken = client.post("/v1/keys", content=b"{not json", headers={**headers, "content-type": "application/json"})
    assert broken.status_code == 400 and broken.json()["success"] is False
    unicode = create(client, admin, name="clé 🔑 ключ", scopes=["read:data"])
    assert unicode["name"] == "clé 🔑 ключ"
    for body in ({"key": "x"}, {"key": 1, "scope": "read:data"}, {"key": "x", "scope": "read:everything"},
                 {"key": "x", "scope": "read:data", "data": "planets"}, {"key": "x", "scope": "read:data", "extra": 1}):
        response = client.post("/v1/verify", json=body)
        assert response.status_code == 400 and response.json()["code"] == "VALIDATION_ERROR", body
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.json() == {"success": False, "error": "Not Found",
                                                             "code": "NOT_FOUND"}
    assert client.delete("/v1/keys", headers=headers).json()["success"] is False
    assert client.get("/schema/openapi.json").json()["info"]["title"] == "keyledger"
    assert client.get("/healthz").json() == {"status": "ok"}


def test_verify_token_is_required_when_configured(start_server: StartServer) -> None:
    server = start_server(extra_env={"KEYLEDGER_VERIFY_TOKEN": "service-token-for-tests", "KEYLEDGER_VERIFY_OPEN": ""})
    with httpx.Client(base_url=server.url) as client:
        body = {"key": server.bootstrap_secret, "scope": "admin:apikeys"}
        refused = client.post("/v1/verify", json=body)
        assert refused.status_code == 401 and refused.json()["code"] == "AUTH_REQUIRED"
        wrong = client.post("/v1/verify", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = client.post("/v1/verify", json=body, headers={"Authorization": "Bearer service-token-for-tests"})
        assert ok.status_code == 200 and ok.json()["valid"] is True


def test_secrets_never_appear_in_the_server_log(api: ApiServer, client: httpx.Client, admin: str) -> None:
    headers = {"x-api-key": admin}
    key = create(client, admin, scopes=["read:data"])
    rotated = client.post(f"/v1/keys/{key['id']}/rotate", headers=headers).json()
    verify(client, rotated["secret"], "read:data")
    verify(client, key["secret"], "read:data")
    client.post("/v1/keys", json={"name": key["secret"]}, headers=headers)  # a secret pasted into a name
    client.post(f"/v1/keys/{key['id']}/revoke", headers=headers)
    api.stop()  # everything it had to say, shutdown included, is in the log now
    log = api.log()
    for secret in (key["secret"], rotated["secret"]):
        assert secret not in log and secret[15:47] not in log
    assert admin not in log.replace(f"  {admin}\n", "", 1)  # printed exactly once, at bootstrap
