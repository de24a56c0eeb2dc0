"""``GET /v1/forward-auth`` through a real server, and a real nginx (``auth_request``) in front of an upstream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.api import create, usage_for
from tests.support.gateway import NGINX_CANDIDATES, EchoUpstream, Nginx, require_binary
from tests.support.server import ApiServer

SITE_A = [{"resource": "website", "id": "site-a", "scopes": ["read:data"]}]
AUTH_REQUIRED = {"success": False, "error": "Authentication required", "code": "AUTH_REQUIRED"}
FORBIDDEN = {"success": False, "error": "Insufficient permissions", "code": "FORBIDDEN"}
RATE_LIMITED = {"success": False, "error": "Rate limit exceeded", "code": "RATE_LIMITED"}


def test_the_gateway_must_authenticate_and_the_original_request_is_audited(
        closed_api: ApiServer, http: httpx.Client, admin_of: str) -> None:
    key = create(http, admin_of, organization_id="org-1", access=SITE_A)
    auditor = create(http, admin_of, scopes=["read:export"], rate_limit=100_000)["secret"]
    ask = {"scope": "read:data", "website_id": "site-a"}
    unauthenticated = http.get("/v1/forward-auth", params=ask, headers={"x-api-key": key["secret"]})
    assert unauthenticated.status_code == 401 and unauthenticated.json()["code"] == "AUTH_REQUIRED"
    # the gateway's credential goes in X-Keyledger-Caller: in Authorization it would be the client's key
    misplaced = http.get("/v1/forward-auth", params=ask,
                         headers={"Authorization": f"Bearer {closed_api.verify_credential}"})
    assert misplaced.status_code == 401
    ok = http.get("/v1/forward-auth", params=ask, headers={
        "x-api-key": key["secret"], "X-Keyledger-Caller": str(closed_api.verify_credential),
        "X-Forwarded-Method": "DELETE", "X-Forwarded-Uri": "/api/stats?api_key=not-recorded",
        "X-Forwarded-For": "203.0.113.7", "user-agent": "client/2", "x-request-id": "fa-e2e-1"})
    assert ok.status_code == 200, ok.text
    assert (ok.headers["x-keyledger-key-id"], ok.headers["x-keyledger-organization-id"]) == (key["id"], "org-1")
    assert ok.headers["x-keyledger-scopes"] == "read:data" and ok.headers["x-ratelimit-limit"] == "100"
    (event,) = usage_for(http, auditor, "fa-e2e-1")
    assert (event["action"], event["outcome"], event["ip"], event["user_agent"], event["key_id"]) == (
        "forward-auth DELETE /api/stats", "VALID", "203.0.113.7", "client/2", key["id"])


@pytest.fixture
def nginx(closed_api: ApiServer, upstream: EchoUpstream, tmp_path: Path) -> Iterator[Nginx]:
    binary = require_binary(NGINX_CANDIDATES, package="nginx")
    assert closed_api.verify_credential is not None, closed_api.log()
    gateway = Nginx(binary, tmp_path / "nginx", closed_api.port, upstream.port, closed_api.verify_credential)
    try:
        yield gateway
    finally:
        gateway.stop()


def test_nginx_lets_only_allowed_keys_reach_the_upstream(nginx: Nginx, upstream: EchoUpstream, http: httpx.Client,
                                                         admin_of: str) -> None:
    good = create(http, admin_of, organization_id="org-1", access=SITE_A)
    other_site = create(http, admin_of, access=[{"resource": "website", "id": "site-b", "scopes": ["read:data"]}])
    out_of_scope = create(http, admin_of, access=[{"resource": "website", "id": "site-a", "scopes": ["write:data"]}])
    revoked = create(http, admin_of, access=SITE_A)
    assert http.post(f"/v1/keys/{revoked['id']}/revoke", headers={"x-api-key": admin_of}).status_code == 200
    with httpx.Client(base_url=nginx.url, timeout=10) as client:
        ok = client.get("/api/stats?day=1", headers={"Authorization": f"Bearer {good['secret']}",
                                                     "X-Keyledger-Key-Id": "forged", "x-request-id": "nginx-1"})
        assert ok.status_code == 200, nginx.log()
        seen = ok.json()["headers"]
        assert (seen["x-keyledger-key-id"], seen["x-keyledger-organization-id"], seen["x-keyledger-scopes"]) == (
            good["id"], "org-1", "read:data")
        assert ok.headers["x-ratelimit-limit"] == "100" and ok.headers["x-ratelimit-remaining"] == "99"
        assert len(upstream.hits) == 1
        refusals = {
            "missing": ({}, 401, AUTH_REQUIRED),
            "wrong": ({"x-api-key": good["secret"][:-4] + "AAAA"}, 401, AUTH_REQUIRED),
            "malformed": ({"x-api-key": "kl_nonsense"}, 401, AUTH_REQUIRED),
            "revoked": ({"x-api-key": revoked["secret"]}, 401, AUTH_REQUIRED),
            "out of scope": ({"x-api-key": out_of_scope["secret"]}, 403, FORBIDDEN),
            "other website": ({"x-api-key": other_site["secret"]}, 403, FORBIDDEN),
        }
        for what, (headers, status, body) in refusals.items():
            refused = client.get("/api/stats", headers=headers)
            assert (refused.status_code, refused.json()) == (status, body), (what, refused.text, nginx.log())
        assert len(upstream.hits) == 1  # none of them reached it


def test_nginx_passes_keyledgers_429_with_retry_after(nginx: Nginx, upstream: EchoUpstream, http: httpx.Client,
                                                     admin_of: str) -> None:
    limited = create(http, admin_of, access=SITE_A, rate_limit=1)
    with httpx.Client(base_url=nginx.url, timeout=10) as client:
        assert client.get("/api/x", headers={"x-api-key": limited["secret"]}).status_code == 200
        refused = client.get("/api/x", headers={"x-api-key": limited["secret"]})
        assert (refused.status_code, refused.json()) == (429, RATE_LIMITED), nginx.log()
        assert int(refused.headers["retry-after"]) >= 1 and refused.headers["x-ratelimit-remaining"] == "0"
    assert len(upstream.hits) == 1


def test_an_admin_key_with_an_allowlist_calls_verify_only_from_inside_it(
        closed_api: ApiServer, http: httpx.Client, admin_of: str) -> None:
    """An admin key may call verify (as ``key:<id>``); with ``allowed_networks`` only from an address inside
    them: the caller's address (no trusted proxy here: the socket peer, 127.0.0.1)."""
    key = create(http, admin_of, access=SITE_A)
    auditor = create(http, admin_of, scopes=["read:export"], rate_limit=100_000)["secret"]
    inside = create(http, admin_of, scopes=["admin:apikeys"], allowed_networks=["127.0.0.0/8"])["secret"]
    outside = create(http, admin_of, scopes=["admin:apikeys"], allowed_networks=["203.0.113.0/24"])
    body = {"key": key["secret"], "scope": "read:data", "website_id": "site-a"}
    assert http.post("/v1/verify", json=body, headers={"x-api-key": inside}).json()["code"] == "VALID"
    refused = http.post("/v1/verify", json=body, headers={"x-api-key": outside["secret"], "x-request-id": "nw-1"})
    assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN", refused.text
    assert "127.0.0.1" in refused.json()["error"] and "allowed_networks" in refused.json()["error"]
    ask = {"scope": "read:data", "website_id": "site-a"}
    gateway = http.get("/v1/forward-auth", params=ask,
                       headers={"x-api-key": key["secret"], "X-Keyledger-Caller": outside["secret"]})
    assert gateway.status_code == 403 and "127.0.0.1" in gateway.json()["error"], gateway.text
    assert http.get("/v1/forward-auth", params=ask, headers={"x-api-key": key["secret"],
                                                             "X-Keyledger-Caller": inside}).status_code == 200
    (event,) = usage_for(http, auditor, "nw-1")  # recorded as the caller's refusal, never the secret
    assert (event["outcome"], event["key_id"], event["action"]) == ("FORBIDDEN", outside["id"], "verify"), event
    assert "127.0.0.1" in event["reason"]
    assert outside["secret"] not in str(event) and key["secret"] not in str(event)
