"""Attacks from the security review, reproduced through a real server; each must fail now."""

from __future__ import annotations

import uuid

import httpx

from tests.support.api import create, usage_for, usage_with, verify
from tests.support.wait import until_sync

REPLACEMENT = "\ufffd"


def test_nul_bytes_cannot_erase_anyone_elses_audit_events(client: httpx.Client, admin: str, auditor: str) -> None:
    """One request with a NUL per flush used to make Postgres refuse a whole batch of usage events,
    and the sink dropped it: everyone's activity in it was gone. Now every real event arrives."""
    key = create(client, admin, scopes=["read:data"], rate_limit=100_000)
    real_ids, evil_ids = [], []
    for i in range(30):
        if i % 3 == 0:  # no key at all, a NUL in the path (stays under the per-IP failure limit)
            assert client.get("/v1/keys/a%00b").status_code == 401
        evil = f"evil-{uuid.uuid4().hex}"
        evil_ids.append(evil)
        refused = client.post("/v1/verify", headers={"x-request-id": evil}, json={
            "key": "kl_\u0000", "scope": "read:data", "website_id": "a\u0000b", "user_agent": "\u0000evil"})
        assert refused.status_code == 200 and refused.json()["code"] == "MALFORMED"
        real = f"real-{uuid.uuid4().hex}"
        real_ids.append(real)
        answer = client.post("/v1/verify", headers={"x-request-id": real},
                             json={"key": key["secret"], "scope": "read:data", "user_agent": "analytics-api/2"})
        assert answer.json()["valid"] is True
    for request_id in real_ids:
        (event,) = usage_for(client, auditor, request_id)
        assert (event["outcome"], event["user_agent"]) == ("VALID", "analytics-api/2")
    evil_event = until_sync(lambda: usage_with(client, auditor, evil_ids[-1]), timeout=15, interval=0.05,
                            what="the attacker's own event, made harmless")[0]
    assert evil_event["user_agent"] == f"{REPLACEMENT}evil" and evil_event["website_id"] == f"a{REPLACEMENT}b"
    unauthenticated = client.get("/v1/audit", params={"kind": "usage", "outcome": "MISSING"},
                                 headers={"x-api-key": auditor}).json()["items"]
    assert {item["action"] for item in unauthenticated} == {"GET /v1/keys/{key_id}"}  # the route, not the raw path
    assert len(unauthenticated) == 10


def test_an_organization_admin_cannot_grant_more_than_it_holds(client: httpx.Client, admin: str) -> None:
    """The reproduced escalation: an org admin made a key with global read:data, write:custom-sql and
    admin:organizations and a 10M limit, and verify said VALID for any organization's website."""
    site_a = [{"resource": "website", "id": "site-a", "scopes": ["read:data"]}]
    org_admin = create(client, admin, organization_id="org-a", scopes=["admin:apikeys"], access=site_a)["secret"]
    escalation = {"name": "everything", "scopes": ["read:data", "write:custom-sql", "admin:organizations"],
                  "rate_limit": 10_000_000}
    refused = client.post("/v1/keys", json=escalation, headers={"x-api-key": org_admin})
    assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN"
    assert "read:data on global" in refused.json()["error"]
    mine = create(client, org_admin, access=site_a)
    assert verify(client, mine["secret"], "read:data", website_id="site-a")["valid"] is True
    assert verify(client, mine["secret"], "read:data", website_id="site-of-org-b")["code"] == "FORBIDDEN"
