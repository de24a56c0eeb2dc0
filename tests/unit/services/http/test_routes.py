"""Routes over in-memory components: the documented bodies, status codes and headers, no servers."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from keyledger.services.http.components import Components
from keyledger.services.storage.database import StorageError
from tests.support.asgi import WEBSITE_A, create
from tests.unit.services.http.fakes import Bus, ListAudit, MemoryKeyCache, MemoryLastUse, RecordingUsage

Client = AsyncTestClient[Litestar]
KEY_FIELDS = {"id", "prefix", "start", "name", "description", "tags", "organization_id", "scopes", "access",
              "expires_at", "status", "version", "created_at", "updated_at", "revoked_at", "revoke_reason",
              "previous_secret_valid_until",
              "rate_limit", "rate_tier", "allowed_networks", "credits", "owner_id"}


async def test_create_get_and_list_show_the_documented_fields(client: Client, admin: str) -> None:
    made = await create(client, admin, organization_id="org-1", access=WEBSITE_A)
    assert set(made) == KEY_FIELDS | {"secret"} and made["secret"].startswith("kl_")
    assert (made["status"], made["version"], made["access"], made["scopes"]) == ("active", 1, WEBSITE_A, [])
    one = await client.get(f"/v1/keys/{made['id']}", headers={"Authorization": f"Bearer {admin}"})
    assert one.headers["etag"] == '"1"' and set(one.json()) == KEY_FIELDS | {"last_used_at"}
    assert one.json()["last_used_at"] is None and one.json()["revoked_at"] is None
    page = (await client.get("/v1/keys", params={"limit": 1}, headers={"x-api-key": admin})).json()
    assert set(page) == {"items", "next_cursor"} and page["next_cursor"] is not None
    assert all(set(item) == KEY_FIELDS | {"last_used_at"} for item in page["items"])


async def test_description_and_tags_on_create_and_edit(client: Client, admin: str) -> None:
    made = await create(client, admin, description="nightly export", tags=["team:data", "CI"])
    assert (made["description"], made["tags"]) == ("nightly export", ["team:data", "ci"])
    headers = {"x-api-key": admin, "If-Match": '"1"'}
    changed = await client.patch(f"/v1/keys/{made['id']}", json={"tags": []}, headers=headers)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["description"], changed.json()["tags"]) == ("nightly export", [])
    stale = await client.patch(f"/v1/keys/{made['id']}", json={"description": "x"}, headers=headers)
    assert stale.status_code == 409 and stale.json()["code"] == "CONFLICT"
    bad = await client.patch(f"/v1/keys/{made['id']}", json={"tags": ["no spaces"]}, headers={"x-api-key": admin})
    assert bad.status_code == 400 and "may use only" in bad.json()["error"]
    kept = (await client.get(f"/v1/keys/{made['id']}", headers={"x-api-key": admin})).json()
    assert (kept["description"], kept["tags"], kept["version"]) == ("nightly export", [], 2)


async def test_verify_answers_and_leaves_one_usage_event(client: Client, admin: str,
                                                         components: Components) -> None:
    key = await create(client, admin, organization_id="org-1", access=WEBSITE_A, rate_limit=5)
    body = {"key": key["secret"], "scope": "read:data", "website_id": "site-a", "ip": "203.0.113.5"}
    ok = await client.post("/v1/verify", json=body)
    assert ok.status_code == 200 and ok.headers["x-ratelimit-limit"] == "5"
    assert ok.json() == {
        "valid": True, "code": "VALID", "reason": "granted by website:site-a", "key_id": key["id"],
        "organization_id": "org-1", "scopes": ["read:data"], "granted_by": WEBSITE_A[0],
        "expires_at": None, "ratelimit": {"limit": 5, "remaining": 4, "reset": ok.json()["ratelimit"]["reset"]}}
    other = (await client.post("/v1/verify", json={**body, "website_id": "site-b"})).json()
    assert (other["valid"], other["code"], other["granted_by"]) == (False, "FORBIDDEN", None)
    malformed = (await client.post("/v1/verify", json={**body, "key": "nope"})).json()
    assert (malformed["code"], malformed["key_id"], malformed["ratelimit"]) == ("MALFORMED", None, None)
    usage = components.usage
    assert isinstance(usage, RecordingUsage)
    verifies = [e for e in usage.events if e.action == "verify"]
    assert [e.outcome for e in verifies] == ["VALID", "FORBIDDEN", "MALFORMED"]
    assert isinstance(components.last_used, MemoryLastUse) and key["id"] in components.last_used.seen


async def test_verify_refuses_unknown_scopes_and_extra_fields(client: Client) -> None:
    for body in ({"key": "x", "scope": "read:everything"}, {"key": "x", "scope": "read:data", "data": "planets"},
                 {"key": "x", "scope": "read:data", "extra": 1}, {"key": "x"}, {"key": 7, "scope": "read:data"},
                 ["key", "scope"], "not json at all", {"key": "x" * 5000, "scope": "read:data"}):
        response = await client.post("/v1/verify", content=body if isinstance(body, str) else None,
                                     json=None if isinstance(body, str) else body)
        assert response.status_code == 400, body
        assert response.json()["success"] is False and response.json()["code"] == "VALIDATION_ERROR"
    too_big = await client.post("/v1/verify", json={"key": "x", "scope": "read:data", "user_agent": "a" * 70_000})
    assert (too_big.status_code, too_big.json()["code"]) == (413, "VALIDATION_ERROR")


async def test_callers_need_a_valid_admin_key(client: Client, admin: str) -> None:
    missing = await client.get("/v1/keys")
    assert missing.status_code == 401
    assert missing.json() == {"success": False, "error": "Authentication required", "code": "AUTH_REQUIRED"}
    reader = await create(client, admin, scopes=["read:data"])
    refused = await client.get("/v1/keys", headers={"x-api-key": reader["secret"]})
    assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN"
    assert refused.headers["x-ratelimit-limit"] == "100"
    garbage = await client.post("/v1/keys", content=b"{not json", headers={"x-api-key": reader["secret"]})
    assert garbage.status_code == 403  # the guard answers before the body is read


async def test_values_are_validated_by_the_domain(client: Client, admin: str) -> None:
    headers = {"x-api-key": admin}
    for body, message in (({"name": "   "}, "name must not be empty"),
                          ({"name": "x" * 300}, "name longer than 200"),
                          ({"name": "x", "scopes": ["read:everything"]}, "unknown scope"),
                          ({"name": "x", "rate_limit": 0}, "rate_limit must be between 1"),
                          ({"name": "x", "expires_at": "2030-01-01T00:00:00"}, "must carry a time zone")):
        response = await client.post("/v1/keys", json=body, headers=headers)
        assert response.status_code == 400 and response.json()["code"] == "VALIDATION_ERROR", body
        assert message in response.json()["error"], response.json()
    key = await create(client, admin, scopes=["read:data"])
    rotate = await client.post(f"/v1/keys/{key['id']}/rotate", json={"grace_seconds": 10**8}, headers=headers)
    assert rotate.status_code == 400 and "grace period" in rotate.json()["error"]


async def test_change_rotate_and_revoke(client: Client, admin: str) -> None:
    headers = {"x-api-key": admin}
    key = await create(client, admin, scopes=["read:data"])
    changed = await client.patch(f"/v1/keys/{key['id']}", json={"name": "renamed"},
                                 headers={**headers, "If-Match": '"1"'})
    assert changed.status_code == 200 and changed.headers["etag"] == '"2"' and set(changed.json()) == KEY_FIELDS
    stale = await client.patch(f"/v1/keys/{key['id']}", json={"name": "lost"}, headers={**headers, "If-Match": '"1"'})
    assert stale.status_code == 409 and stale.json()["code"] == "CONFLICT"
    bad = await client.patch(f"/v1/keys/{key['id']}", json={"name": "x"}, headers={**headers, "If-Match": "soon"})
    assert bad.status_code == 400
    rotated = await client.post(f"/v1/keys/{key['id']}/rotate", headers=headers)
    assert rotated.status_code == 200 and set(rotated.json()) == KEY_FIELDS | {"secret"}
    assert rotated.json()["secret"] != key["secret"]
    revoked = await client.post(f"/v1/keys/{key['id']}/revoke", json={"reason": "leaked"}, headers=headers)
    assert revoked.json()["status"] == "revoked" and revoked.json()["revoke_reason"] == "leaked"
    answer = (await client.post("/v1/verify", json={"key": rotated.json()["secret"], "scope": "read:data"})).json()
    assert answer["code"] == "REVOKED"
    missing = await client.get("/v1/keys/AAAAAAAAAAAA", headers=headers)
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"


async def test_an_organization_admin_sees_only_its_organization(client: Client, admin: str) -> None:
    org_admin = (await create(client, admin, organization_id="org-a", scopes=["admin:apikeys"],
                              access=WEBSITE_A))["secret"]
    other = await create(client, admin, organization_id="org-b", scopes=["read:data"])
    headers = {"x-api-key": org_admin}
    own = await create(client, org_admin, access=WEBSITE_A)
    assert own["organization_id"] == "org-a"
    listed = (await client.get("/v1/keys", headers=headers)).json()["items"]
    assert {k["organization_id"] for k in listed} == {"org-a"}
    assert (await client.get(f"/v1/keys/{other['id']}", headers=headers)).status_code == 404
    refused = await client.post("/v1/keys", json={"name": "x", "organization_id": "org-b"}, headers=headers)
    assert refused.status_code == 403


async def test_audit_page_and_export(client: Client, admin: str, components: Components) -> None:
    audit = components.audit
    assert isinstance(audit, ListAudit)
    audit.records.append({
        "kind": "usage", "at": components.clock(), "id": "u-1", "key_id": None, "start": "not-a-ke",
        "organization_id": None, "action": "verify", "outcome": "MALFORMED", "actor": None, "scope": "read:data",
        "granted_by": None, "reason": "bad checksum", "website_id": None, "data": None, "ip": "203.0.113.9",
        "user_agent": None, "request_id": "r-1", "detail": None})
    page = (await client.get("/v1/audit", headers={"x-api-key": admin})).json()
    assert page["next_cursor"] is None and [item["id"] for item in page["items"]] == ["u-1"]
    assert set(page["items"][0]) == set(audit.records[0])
    assert (await client.get("/v1/audit", params={"limit": 0}, headers={"x-api-key": admin})).status_code == 400
    export = await client.get("/v1/audit/export", params={"format": "csv"}, headers={"x-api-key": admin})
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    assert "#manifest" in export.text
    reversed_range = await client.get("/v1/audit/export", params={"from": "2026-02-01T00:00:00Z",
                                                                   "to": "2026-01-01T00:00:00Z"},
                                      headers={"x-api-key": admin})
    assert reversed_range.status_code == 400 and reversed_range.json()["code"] == "VALIDATION_ERROR"


async def test_health_and_readiness(client: Client, components: Components) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"ready": True, "position": 0, "lag": 0, "keys": 0,
                                                          "forged": 0, "degraded": [], "replicas": 0}
    assert isinstance(components.bus, Bus)
    components.bus.is_connected = False  # still serving, from the store alone: ready, and it says so
    degraded = await client.get("/readyz")
    assert degraded.status_code == 200 and degraded.json()["degraded"] == [
        "NATS unreachable: the key cache follows the event store alone"]
    assert isinstance(components.cache, MemoryKeyCache)
    components.cache.store_reachable = False
    assert [reason.split(":")[0] for reason in (await client.get("/readyz")).json()["degraded"]] == [
        "NATS unreachable", "event store unreachable"]
    components.cache.position, components.startup_head = 0, 5  # not caught up with the store yet
    not_ready = await client.get("/readyz")
    assert not_ready.status_code == 503 and not_ready.json()["code"] == "NOT_READY"


async def test_a_database_outage_is_a_503_unavailable_and_changes_nothing(client: Client, admin: str,
                                                                       components: Components) -> None:
    store = components.keys._store  # the in-memory store behind the real key service

    async def refuse(*_: Any, **__: Any) -> Any:
        raise StorageError("OperationalError 08006: connection refused")

    original, store.append = store.append, refuse  # type: ignore[method-assign]
    try:
        response = await client.post("/v1/keys", json={"name": "during the outage"}, headers={"x-api-key": admin})
    finally:
        store.append = original  # type: ignore[method-assign]
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.json() == {"success": False, "error": "the database is unavailable; retry later",
                               "code": "UNAVAILABLE"}
    assert "connection refused" not in response.text
    assert [s.name for s in components.cache.states()] == ["admin"]


async def test_an_organization_admin_grants_only_what_it_holds(client: Client, admin: str) -> None:
    """The escalation from the security review: an org admin granting global read:data, custom SQL,
    organization admin and a huge limit. Refused, naming the scope; a global admin still may."""
    org_admin = (await create(client, admin, organization_id="org-a", scopes=["admin:apikeys"],
                              access=WEBSITE_A))["secret"]
    headers = {"x-api-key": org_admin}
    for body, named in (
            ({"scopes": ["read:data"]}, "read:data on global"),
            ({"scopes": ["write:custom-sql"]}, "write:custom-sql on global"),
            ({"scopes": ["admin:organizations"]}, "admin:organizations on global"),
            ({"access": [{"resource": "website", "id": "site-b", "scopes": ["read:data"]}]},
             "read:data on website:site-b"),
            ({"access": [{"resource": "analytics_data", "scopes": ["read:data"]}]}, "read:data on analytics_data"),
            ({"scopes": ["rate:enterprise"]}, "rate:enterprise on global"),
            ({"access": WEBSITE_A, "rate_limit": 10_000_000}, "rate_limit above this admin key's own (100/min)")):
        refused = await client.post("/v1/keys", json={"name": "escalation", **body}, headers=headers)
        assert refused.status_code == 403, body
        assert refused.json()["code"] == "FORBIDDEN" and named in refused.json()["error"]
    own = await create(client, org_admin, access=WEBSITE_A, rate_limit=50)
    widened = await client.patch(f"/v1/keys/{own['id']}", json={"scopes": ["read:data"]}, headers=headers)
    assert widened.status_code == 403 and "read:data on global" in widened.json()["error"]
    renamed = await client.patch(f"/v1/keys/{own['id']}", json={"name": "renamed"}, headers=headers)
    assert renamed.status_code == 200 and renamed.json()["access"] == WEBSITE_A
    anything = await create(client, admin, organization_id="org-a", scopes=["write:custom-sql"], rate_limit=10_000_000)
    assert anything["scopes"] == ["write:custom-sql"]  # a global admin is the operator's root
