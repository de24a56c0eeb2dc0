"""A real Caddy (``forward_auth``, the documented site) in front of an upstream, using ``/v1/forward-auth``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.api import create
from tests.support.gateway import CADDY_CANDIDATES, Caddy, EchoUpstream, require_binary
from tests.support.server import ApiServer

SITE_A = [{"resource": "website", "id": "site-a", "scopes": ["read:data"]}]
AUTH_REQUIRED = {"success": False, "error": "Authentication required", "code": "AUTH_REQUIRED"}
FORBIDDEN = {"success": False, "error": "Insufficient permissions", "code": "FORBIDDEN"}
RATE_LIMITED = {"success": False, "error": "Rate limit exceeded", "code": "RATE_LIMITED"}
FORGED_IDENTITY = {"X-Keyledger-Key-Id": "forged", "X-Keyledger-Organization-Id": "org-forged",
                   "X-Keyledger-Scopes": "admin:apikeys"}


@pytest.fixture
def caddy(closed_api: ApiServer, upstream: EchoUpstream, tmp_path: Path) -> Iterator[Caddy]:
    binary = require_binary(CADDY_CANDIDATES, package="caddy")
    assert closed_api.verify_credential is not None, closed_api.log()
    gateway = Caddy(binary, tmp_path / "caddy", closed_api.port, upstream.port, closed_api.verify_credential)
    try:
        yield gateway
    finally:
        gateway.stop()


def test_caddy_lets_only_allowed_keys_reach_the_upstream(caddy: Caddy, upstream: EchoUpstream, http: httpx.Client,
                                                         admin_of: str) -> None:
    good = create(http, admin_of, organization_id="org-1", access=SITE_A)
    no_organization = create(http, admin_of, access=SITE_A)
    other_site = create(http, admin_of, access=[{"resource": "website", "id": "site-b", "scopes": ["read:data"]}])
    out_of_scope = create(http, admin_of, access=[{"resource": "website", "id": "site-a", "scopes": ["write:data"]}])
    revoked = create(http, admin_of, access=SITE_A)
    assert http.post(f"/v1/keys/{revoked['id']}/revoke", headers={"x-api-key": admin_of}).status_code == 200
    with httpx.Client(base_url=caddy.url, timeout=10) as client:
        ok = client.get("/api/stats?day=1", headers={"Authorization": f"Bearer {good['secret']}", **FORGED_IDENTITY})
        assert ok.status_code == 200, caddy.log()
        seen = ok.json()["headers"]
        assert (seen["x-keyledger-key-id"], seen["x-keyledger-organization-id"], seen["x-keyledger-scopes"]) == (
            good["id"], "org-1", "read:data")
        assert "x-keyledger-caller" not in seen  # the gateway's credential stays between it and keyledger
        assert ok.headers["x-ratelimit-limit"] == "100" and ok.headers["x-ratelimit-remaining"] == "99"
        # keyledger answers an empty organization id for a key without one: the client's own is removed anyway
        bare = client.get("/api/stats", headers={"x-api-key": no_organization["secret"], **FORGED_IDENTITY})
        assert bare.status_code == 200, caddy.log()
        assert bare.json()["headers"].get("x-keyledger-organization-id", "") == "", caddy.log()
        assert bare.json()["headers"]["x-keyledger-key-id"] == no_organization["id"]
        assert len(upstream.hits) == 2
        refusals = {
            "missing": ({}, 401, AUTH_REQUIRED),
            "wrong": ({"x-api-key": good["secret"][:-4] + "AAAA"}, 401, AUTH_REQUIRED),
            "malformed": ({"x-api-key": "kl_nonsense"}, 401, AUTH_REQUIRED),
            "revoked": ({"x-api-key": revoked["secret"]}, 401, AUTH_REQUIRED),
            "out of scope": ({"x-api-key": out_of_scope["secret"]}, 403, FORBIDDEN),
            "other website": ({"x-api-key": other_site["secret"]}, 403, FORBIDDEN),
        }
        for what, (headers, status, body) in refusals.items():
            refused = client.get("/api/stats", headers={**headers, **FORGED_IDENTITY})
            assert (refused.status_code, refused.json()) == (status, body), (what, refused.text, caddy.log())
        assert len(upstream.hits) == 2  # none of them reached it


def test_caddy_passes_keyledgers_429_with_retry_after(caddy: Caddy, upstream: EchoUpstream, http: httpx.Client,
                                                     admin_of: str) -> None:
    limited = create(http, admin_of, access=SITE_A, rate_limit=1)
    with httpx.Client(base_url=caddy.url, timeout=10) as client:
        assert client.get("/api/x", headers={"x-api-key": limited["secret"]}).status_code == 200, caddy.log()
        refused = client.get("/api/x", headers={"x-api-key": limited["secret"]})
        assert (refused.status_code, refused.json()) == (429, RATE_LIMITED), caddy.log()
        assert int(refused.headers["retry-after"]) >= 1 and refused.headers["x-ratelimit-remaining"] == "0"
    assert len(upstream.hits) == 1
