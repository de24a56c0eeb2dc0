"""Every example of the API Keys document, through a real HTTP server."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from keyledger.services.devstack.stack import StackInfo
from tests.support.api import create, verify
from tests.support.clock import ReferenceClock, iso
from tests.support.module_server import module_server, root_key
from tests.support.server import ApiServer, StartServer

AUTH_REQUIRED = {"success": False, "error": "Authentication required", "code": "AUTH_REQUIRED"}
FORBIDDEN = {"success": False, "error": "Insufficient permissions", "code": "FORBIDDEN"}


@pytest.fixture(scope="module")
def shared(servers: tuple[str, str], stack_info: StackInfo | None,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiServer, httpx.Client, str]]:
    """One server for the examples that need no clock of their own (the rotation and expiry ones start a
    replica on their test's clock), and a global admin key that may call as often as they do together."""
    with module_server(servers, stack_info, tmp_path_factory, "api-keys-document") as server, \
            httpx.Client(base_url=server.url, timeout=10) as client:
        yield server, client, root_key(server)


def test_both_header_styles_with_curl(shared: tuple[ApiServer, httpx.Client, str]) -> None:
    api, _, admin = shared
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    for header in (f"Authorization: Bearer {admin}", f"x-api-key: {admin}"):
        out = subprocess.run([curl, "-s", "-H", header, f"{api.url}/v1/keys"], capture_output=True, text=True,
                             check=True).stdout
        assert '"items"' in out and '"start"' in out
    out = subprocess.run([curl, "-s", f"{api.url}/v1/keys"], capture_output=True, text=True, check=True).stdout
    assert out == '{"success":false,"error":"Authentication required","code":"AUTH_REQUIRED"}'


def test_both_header_styles_and_the_documented_error_bodies(shared: tuple[ApiServer, httpx.Client, str]) -> None:
    _, client, admin = shared
    assert client.get("/v1/keys", headers={"Authorization": f"Bearer {admin}"}).status_code == 200
    assert client.get("/v1/keys", headers={"x-api-key": admin}).status_code == 200
    for headers in ({}, {"x-api-key": ""}, {"Authorization": "Basic abc"}, {"x-api-key": "kl_not-a-key"},
                    {"x-api-key": admin[:-1] + ("A" if admin[-1] != "A" else "B")}):
        response = client.get("/v1/keys", headers=headers)
        assert (response.status_code, response.json()) == (401, AUTH_REQUIRED), headers
    reader = create(client, admin, scopes=["read:data"])["secret"]
    response = client.get("/v1/keys", headers={"x-api-key": reader})
    assert (response.status_code, response.json()) == (403, FORBIDDEN)
    response = client.post("/v1/keys", json={"name": "x"}, headers={"x-api-key": reader})
    assert (response.status_code, response.json()) == (403, FORBIDDEN)


def test_resource_access_examples(shared: tuple[ApiServer, httpx.Client, str]) -> None:
    _, client, admin = shared
    site = create(client, admin, access=[{"resource": "website", "id": "site-a", "scopes": ["read:data"]}])
    assert verify(client, site["secret"], "read:data", website_id="site-a")["code"] == "VALID"
    other = verify(client, site["secret"], "read:data", website_id="site-b")
    assert (other["valid"], other["code"]) == (False, "FORBIDDEN") and "site-b" in other["reason"]
    unnamed = verify(client, site["secret"], "read:data")
    assert unnamed["code"] == "FORBIDDEN" and "website_id is required" in unnamed["reason"]

    analytics = create(client, admin, access=[{"resource": "analytics_data", "scopes": ["read:analytics"]}])
    ok = verify(client, analytics["secret"], "read:analytics", data="analytics_data")
    assert ok["valid"] and ok["granted_by"] == {"resource": "analytics_data", "scopes": ["read:analytics"]}
    assert verify(client, analytics["secret"], "read:analytics", data="error_data")["code"] == "FORBIDDEN"

    scoped = create(client, admin, scopes=["read:data"])
    answer = verify(client, scoped["secret"], "read:data", website_id="anything", ip="203.0.113.5",
                    user_agent="svc/1")
    assert answer["valid"] and answer["key_id"] == scoped["id"] and answer["scopes"] == ["read:data"]
    assert answer["granted_by"] == {"resource": "global", "scopes": ["read:data"]}
    assert verify(client, scoped["secret"], "write:data")["code"] == "FORBIDDEN"
    assert verify(client, "kl_" + "x" * 50, "read:data")["code"] == "MALFORMED"
    assert verify(client, "nonsense", "read:data")["code"] == "MALFORMED"
    wrong = scoped["secret"][:-6] + "000000"
    assert verify(client, wrong, "read:data")["code"] == "MALFORMED"  # checksum


def test_rotate_old_secret_refused_or_accepted_only_within_grace(client: httpx.Client, admin: str,
                                                                 replica: StartServer) -> None:
    headers = {"x-api-key": admin}
    key = create(client, admin, scopes=["read:data"])
    rotated = client.post(f"/v1/keys/{key['id']}/rotate", headers=headers).json()
    assert rotated["id"] == key["id"] and rotated["secret"] != key["secret"] and rotated["version"] == 2
    assert verify(client, key["secret"], "read:data")["valid"] is False
    assert verify(client, rotated["secret"], "read:data")["valid"] is True

    # The test ends (timeout) long before an hour of grace does; a replica whose clock is a day on is past it.
    graced = client.post(f"/v1/keys/{key['id']}/rotate", json={"grace_seconds": 3600}, headers=headers).json()
    assert verify(client, rotated["secret"], "read:data")["valid"] is True  # within grace
    assert verify(client, graced["secret"], "read:data")["valid"] is True
    with httpx.Client(base_url=replica(ahead=timedelta(days=1)).url) as day_later:
        assert verify(day_later, graced["secret"], "read:data")["valid"] is True
        assert verify(day_later, rotated["secret"], "read:data")["valid"] is False  # grace over
    assert verify(client, rotated["secret"], "read:data")["valid"] is True  # still within grace here
    too_long = client.post(f"/v1/keys/{key['id']}/rotate", json={"grace_seconds": 8 * 86400}, headers=headers)
    assert too_long.status_code == 400 and too_long.json()["code"] == "VALIDATION_ERROR"


def test_revoke_is_immediate_and_cannot_be_undone(shared: tuple[ApiServer, httpx.Client, str]) -> None:
    _, client, admin = shared
    headers = {"x-api-key": admin}
    key = create(client, admin, scopes=["read:data"])
    assert verify(client, key["secret"], "read:data")["valid"]
    revoked = client.post(f"/v1/keys/{key['id']}/revoke", json={"reason": "leaked"}, headers=headers)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    answer = verify(client, key["secret"], "read:data")
    assert (answer["valid"], answer["code"], answer["key_id"]) == (False, "REVOKED", key["id"])
    for method, path, body in (("POST", "revoke", None), ("POST", "rotate", None), ("PATCH", "", {"name": "x"})):
        response = client.request(method, f"/v1/keys/{key['id']}/{path}".rstrip("/"), json=body, headers=headers)
        assert response.status_code == 409 and response.json()["code"] == "CONFLICT", response.text
    assert client.get(f"/v1/keys/{key['id']}", headers=headers).json()["status"] == "revoked"
    revoked_admin = create(client, admin, scopes=["admin:apikeys"])
    client.post(f"/v1/keys/{revoked_admin['id']}/revoke", headers=headers)
    response = client.get("/v1/keys", headers={"x-api-key": revoked_admin["secret"]})
    assert (response.status_code, response.json()) == (401, AUTH_REQUIRED)


def test_expired_keys_are_refused_by_the_clock(client: httpx.Client, admin: str, clock: ReferenceClock,
                                               replica: StartServer) -> None:
    key = create(client, admin, scopes=["read:data"], expires_at=iso(clock.now() + timedelta(hours=1)))
    assert verify(client, key["secret"], "read:data")["valid"]
    with httpx.Client(base_url=replica(ahead=timedelta(hours=2)).url) as later:  # a clock past the expiry
        answer = verify(later, key["secret"], "read:data")
        assert (answer["valid"], answer["code"]) == (False, "EXPIRED")
        assert later.get(f"/v1/keys/{key['id']}", headers={"x-api-key": admin}).json()["status"] == "expired"
    assert verify(client, key["secret"], "read:data")["valid"]  # the same key, an hour before its expiry
    assert client.get(f"/v1/keys/{key['id']}", headers={"x-api-key": admin}).json()["status"] == "active"
