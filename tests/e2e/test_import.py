"""Importing keys from databuddy, better-auth and unkey through a real server: rows built at test time as
each source's table stores them (fresh secrets, their SHA-256 in the source's encoding), imported over
``POST /v1/keys/import``; the original secrets verify VALID, the first verify records ``key.rehashed``, a bad
line is reported while the rest are imported, a second import changes nothing, and organization isolation
and bad bodies are refused."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from argon2 import PasswordHasher

from keyledger.domain import token as tokens
from keyledger.services.devstack.stack import StackInfo
from tests.support.api import create, sign_in, verify
from tests.support.cli import Cli
from tests.support.module_server import module_server, root_key
from tests.support.server import ApiServer
from tests.support.wait import until_sync

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(servers: tuple[str, str], stack_info: StackInfo | None,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One API process for the module."""
    with module_server(servers, stack_info, tmp_path_factory, "import") as api:
        yield api


@pytest.fixture(scope="module")
def root(server: ApiServer) -> str:
    """A global admin key that may call as often as the tests do."""
    return root_key(server)


@pytest.fixture
def client(server: ApiServer) -> Iterator[httpx.Client]:
    """An HTTP client for the module's server."""
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def _sha(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def databuddy_row(secret: str, **extra: Any) -> dict[str, Any]:
    """A row of databuddy's ``apikey`` table (packages/db schema, snake_case columns): keyHash is hex."""
    return {"id": secrets.token_hex(8), "name": "dashboard export", "prefix": "dbdy", "start": secret[:8],
            "key_hash": _sha(secret).hex(), "user_id": None, "organization_id": "org_source", "type": "sdk",
            "scopes": ["read:data"], "enabled": True, "revoked_at": None, "rate_limit_enabled": True,
            "rate_limit_time_window": 60_000, "rate_limit_max": 120, "expires_at": "2031-06-01T00:00:00.000Z",
            "metadata": {"resources": {"website:site-1": ["read:analytics"]}, "tags": ["ci"],
                         "description": "nightly export job"},
            "created_at": "2029-01-01T00:00:00.000Z", "updated_at": "2029-01-01T00:00:00.000Z", **extra}


def better_auth_row(secret: str) -> dict[str, Any]:
    """A row of better-auth's api-key plugin ``apikey`` table: ``key`` is base64url without padding."""
    return {"id": secrets.token_hex(8), "name": "cli", "start": secret[:6], "prefix": "ba_",
            "key": base64.urlsafe_b64encode(_sha(secret)).decode().rstrip("="), "userId": "user_1",
            "refillInterval": 86_400_000, "refillAmount": 100, "lastRefillAt": None, "enabled": True,
            "rateLimitEnabled": True, "rateLimitTimeWindow": 60_000, "rateLimitMax": 10, "requestCount": 0,
            "remaining": 50, "lastRequest": None, "expiresAt": None, "createdAt": "2029-01-01T00:00:00.000Z",
            "updatedAt": "2029-01-01T00:00:00.000Z", "permissions": json.dumps({"data": ["read"]}),
            "metadata": json.dumps({"tags": ["from-better-auth"]})}


def unkey_row(secret: str) -> dict[str, Any]:
    """A row of unkey's ``keys`` table with the key's permission names: ``hash`` is standard base64."""
    return {"id": "key_" + secrets.token_hex(8), "keyAuthId": "ks_1", "hash": base64.b64encode(_sha(secret)).decode(),
            "start": secret[:7], "workspaceId": "ws_1", "forWorkspaceId": None, "name": "worker", "ownerId": "user_2",
            "identityId": None, "meta": json.dumps({"team": "data"}), "createdAt": 1_893_456_000_000,
            "expires": None, "deletedAt": None, "refillInterval": "monthly", "refillAmount": 1000, "refillDay": 1,
            "lastRefillAt": None, "enabled": True, "remaining": 1000, "ratelimitAsync": False,
            "ratelimitLimit": 10, "ratelimitDuration": 1000, "environment": "live",
            "permissions": ["read:data", "track:events"]}


def ndjson(rows: list[Any]) -> bytes:
    """NDJSON lines of ``rows`` (a str row is put as it is: a bad line)."""
    return b"".join((row if isinstance(row, str) else json.dumps(row)).encode() + b"\n" for row in rows)


def post_import(client: httpx.Client, admin: str, body: bytes, fmt: str, **params: str) -> httpx.Response:
    """``POST /v1/keys/import?format=...`` with an NDJSON body."""
    return client.post("/v1/keys/import", content=body, params={"format": fmt, **params},
                       headers={"x-api-key": admin, "content-type": "application/x-ndjson"})


def event_types(server: ApiServer, key_id: str) -> list[str]:
    """The key's event types in the store, in order."""
    with psycopg.connect(server.database_url) as conn:
        rows = conn.execute("SELECT type FROM events WHERE stream_id = %s ORDER BY version", (key_id,)).fetchall()
    return [row[0] for row in rows]


@pytest.mark.parametrize(("fmt", "make", "scope"), [
    ("databuddy", lambda s: databuddy_row(s), "read:data"),
    ("better-auth", lambda s: better_auth_row(s), "read:data"),
    ("unkey", lambda s: unkey_row(s), "track:events"),
])
def test_a_source_file_imports_and_its_secrets_verify(server: ApiServer, root: str, client: httpx.Client,
                                                      fmt: str, make: Any, scope: str) -> None:
    tokens = [f"src_{secrets.token_urlsafe(24)}" for _ in range(3)]
    body = ndjson([make(tokens[0]), make(tokens[1]), "{not json", make(tokens[2])])
    first = post_import(client, root, body, fmt)
    assert first.status_code == 200, first.text
    report = first.json()
    assert (report["imported"], report["unchanged"], report["failed"]) == (3, 0, 1), report
    bad = report["results"][2]
    assert bad["status"] == "error" and bad["line"] == 3 and "line 3" in bad["error"], bad
    key_ids = [r["key_id"] for r in report["results"] if r["status"] == "imported"]

    for token, key_id in zip(tokens, key_ids, strict=True):
        assert event_types(server, key_id)[:2] == ["key.created", "key.imported"]
        answer = verify(client, token, scope)
        assert answer["valid"] is True and answer["key_id"] == key_id, answer
    # the first successful verify re-hashes the secret with argon2id; the token keeps working after it
    until_sync(lambda: "key.rehashed" in event_types(server, key_ids[0]), timeout=20,
               what="key.rehashed after the first verify", explain=server.log)
    assert verify(client, tokens[0], scope)["code"] == "VALID"
    assert verify(client, tokens[0][:-1] + ("A" if tokens[0][-1] != "A" else "B"), scope)["valid"] is False

    again = post_import(client, root, body, fmt).json()  # the same file: nothing changes
    assert (again["imported"], again["unchanged"], again["failed"]) == (0, 3, 1), again
    assert [event_types(server, k).count("key.created") for k in key_ids] == [1, 1, 1]


def test_fields_are_mapped(server: ApiServer, root: str, client: httpx.Client) -> None:
    token = f"dbdy_{secrets.token_urlsafe(36)}"
    report = post_import(client, root, ndjson([databuddy_row(token, user_id="user_9")]), "databuddy").json()
    key = client.get(f"/v1/keys/{report['results'][0]['key_id']}", headers={"x-api-key": root}).json()
    assert key["name"] == "dashboard export" and key["start"] == token[:8] and key["owner_id"] == "user_9"
    assert key["organization_id"] == "org_source" and key["scopes"] == ["read:data"]
    assert key["access"] == [{"resource": "website", "id": "site-1", "scopes": ["read:analytics"]}]
    assert key["rate_limit"] == 120 and key["expires_at"].startswith("2031-06-01")
    assert key["description"] == "nightly export job" and sorted(key["tags"]) == ["ci", "type:sdk"]
    assert verify(client, token, "read:analytics", website_id="site-1")["valid"] is True
    assert verify(client, token, "read:analytics", website_id="site-2")["code"] == "FORBIDDEN"


def test_a_disabled_source_key_is_imported_revoked(server: ApiServer, root: str, client: httpx.Client) -> None:
    token = f"dbdy_{secrets.token_urlsafe(36)}"
    report = post_import(client, root, ndjson([databuddy_row(token, enabled=False)]), "databuddy").json()
    assert verify(client, token, "read:data")["code"] == "REVOKED"
    assert event_types(server, report["results"][0]["key_id"]) == ["key.created", "key.imported", "key.revoked"]


def test_an_organizations_admin_imports_only_into_its_organization(root: str, client: httpx.Client) -> None:
    org_admin = create(client, root, scopes=["admin:apikeys", "read:data"], organization_id="org_a")["secret"]
    token = f"dbdy_{secrets.token_urlsafe(36)}"
    elsewhere = post_import(client, org_admin, ndjson([databuddy_row(token)]), "databuddy", organization_id="org_b")
    assert elsewhere.status_code == 403 and elsewhere.json()["code"] == "FORBIDDEN"
    plain = {"metadata": {}, "rate_limit_enabled": False}  # no grant or limit beyond the admin's own
    stronger = databuddy_row(f"dbdy_{secrets.token_urlsafe(36)}", scopes=["write:data"], **plain)
    report = post_import(client, org_admin, ndjson([databuddy_row(token, **plain), stronger]), "databuddy").json()
    assert [r["status"] for r in report["results"]] == ["imported", "error"], report
    assert report["results"][1]["code"] == "FORBIDDEN"
    key = client.get(f"/v1/keys/{report['results'][0]['key_id']}", headers={"x-api-key": org_admin}).json()
    assert key["organization_id"] == "org_a"  # not the row's org_source


def test_bad_bodies_are_refused(root: str, client: httpx.Client) -> None:
    array = post_import(client, root, json.dumps([databuddy_row("dbdy_x" * 8)]).encode(), "databuddy")
    assert array.status_code == 400 and array.json()["code"] == "VALIDATION_ERROR", array.text
    assert post_import(client, root, b"", "databuddy").status_code == 400
    unknown = post_import(client, root, ndjson([databuddy_row("dbdy_x" * 8)]), "stripe")
    assert unknown.status_code == 400 and unknown.json()["success"] is False
    too_many = post_import(client, root, b'{"id": "1"}\n' * 10_001, "databuddy")
    assert too_many.status_code == 413 and "10000" in too_many.json()["error"], too_many.text


def test_remaining_and_refill_become_credits(root: str, client: httpx.Client) -> None:
    unkey, better_auth = f"uk_{secrets.token_urlsafe(24)}", f"ba_{secrets.token_urlsafe(24)}"
    ids = []
    for fmt, row in (("unkey", unkey_row(unkey)), ("better-auth", better_auth_row(better_auth))):
        ids.append(post_import(client, root, ndjson([row]), fmt).json()["results"][0]["key_id"])
    keys = [client.get(f"/v1/keys/{key_id}", headers={"x-api-key": root}).json() for key_id in ids]
    assert keys[0]["credits"]["refill"] == {"amount": 1000, "interval": "monthly", "day_of_month": 1}, keys[0]
    assert keys[0]["credits"]["remaining"] == 1000 and keys[0]["rate_limit"] == 600  # 10 a second
    assert keys[1]["credits"]["refill"]["interval"] == "daily" and keys[1]["credits"]["remaining"] == 50, keys[1]
    assert verify(client, better_auth, "read:data")["credits"]["remaining"] == 49


def test_the_cli_imports_a_file(server: ApiServer, client: httpx.Client, tmp_path: Path) -> None:
    token = f"uk_{secrets.token_urlsafe(24)}"
    exported = tmp_path / "unkey.ndjson"
    exported.write_bytes(ndjson([unkey_row(token), {"id": "key_broken", "hash": "not a sha-256"}]))
    cli = Cli(server.database_url, server.nats_url)
    first = json.loads(cli.run("keys", "import", str(exported), "--format", "unkey", "--org", "org_cli", "--json",
                               expect=1).stdout)
    assert (first["imported"], first["failed"]) == (1, 1) and "hash" in first["results"][1]["error"], first
    answer = verify(client, token, "track:events")
    assert answer["valid"] is True and answer["organization_id"] == "org_cli", answer
    again = json.loads(cli.run("keys", "import", str(exported), "--format", "unkey", "--org", "org_cli", "--json",
                               expect=1).stdout)
    assert (again["imported"], again["unchanged"]) == (0, 1), again


def test_the_history_audit_and_dashboard_show_the_import(server: ApiServer, root: str, client: httpx.Client) -> None:
    secret = f"dbdy_{secrets.token_urlsafe(36)}"
    key_id = post_import(client, root, ndjson([databuddy_row(secret)]), "databuddy").json()["results"][0]["key_id"]
    assert verify(client, secret, "read:data")["valid"] is True
    until_sync(lambda: "key.rehashed" in event_types(server, key_id), timeout=20, what="key.rehashed")

    def actions() -> list[str]:
        page = client.get("/v1/audit", params={"key_id": key_id, "kind": "lifecycle", "limit": 100},
                          headers={"x-api-key": root}).json()
        return [item["action"] for item in page["items"]]
    assert {"key.imported", "key.rehashed"} <= set(actions()), actions()
    with httpx.Client(base_url=server.url, timeout=10) as browser:
        assert sign_in(browser, root).status_code == 303
        page = browser.get(f"/dashboard/keys/{key_id}")
    assert page.status_code == 200 and "Imported from databuddy" in page.text and "re-hashed" in page.text
    assert secret not in page.text and secret[8:] not in str(actions())
    exporter = create(client, root, scopes=["admin:apikeys", "read:export"])["secret"]
    export = client.get("/v1/audit/export", params={"format": "ndjson"}, headers={"x-api-key": exporter})
    assert export.status_code == 200, export.text
    exported = [json.loads(line) for line in export.text.splitlines() if key_id in line]
    assert {"key.imported", "key.rehashed"} <= {record.get("action") for record in exported}, exported
    assert "$argon2id$" not in export.text and _sha(secret).hex() not in export.text  # no hash of the secret


def test_a_keyledger_key_moves_with_its_argon2_hash(root: str, client: httpx.Client) -> None:
    """A key moved from another keyledger deployment keeps its id, so its keyledger token works as it is."""
    secret = tokens.generate(secrets.token_bytes, "kl")
    key_id = tokens.parse(secret, "kl").key_id
    row = {"id": key_id, "name": "moved", "secret_hash": PasswordHasher(time_cost=1, memory_cost=1024).hash(secret),
           "scopes": ["read:data"], "organization_id": "org_moved"}
    report = post_import(client, root, ndjson([row]), "keyledger").json()
    assert report["results"][0]["key_id"] == key_id, report
    assert verify(client, secret, "read:data")["valid"] is True
    sha_secret = f"own_{secrets.token_urlsafe(24)}"
    sha_row = {"id": "ext-1", "name": "made elsewhere", "secret_sha256": _sha(sha_secret).hex(),
               "scopes": ["read:data"]}
    assert post_import(client, root, ndjson([sha_row]), "keyledger").json()["imported"] == 1
    assert verify(client, sha_secret, "read:data")["valid"] is True


def test_an_argon2_hash_asking_more_than_a_verify_may_spend_is_refused(root: str, client: httpx.Client) -> None:
    """Whoever imports chooses an argon2id hash's parameters, and every verify of the key would run them."""
    secret = tokens.generate(secrets.token_bytes, "kl")
    cheap = PasswordHasher(time_cost=1, memory_cost=1024).hash(secret)
    greedy = cheap.replace("m=1024", "m=4194304")  # 4 GiB a check
    row = {"id": tokens.parse(secret, "kl").key_id, "name": "greedy", "secret_hash": greedy, "scopes": ["read:data"]}
    report = post_import(client, root, ndjson([row]), "keyledger").json()
    assert (report["imported"], report["failed"]) == (0, 1), report
    assert "at most m=262144" in report["results"][0]["error"], report
    assert client.get(f"/v1/keys/{row['id']}", headers={"x-api-key": root}).status_code == 404


def test_first_verifies_on_two_replicas_store_one_rehash(server: ApiServer, root: str, client: httpx.Client,
                                                         tmp_path: Path) -> None:
    replica = ApiServer(server.database_url, server.nats_url, server.settings, tmp_path, workers=False,
                        extra_env=server.extra_env, clock=server.clock)
    try:
        replica.wait_ready()
        token = f"dbdy_{secrets.token_urlsafe(36)}"
        key_id = post_import(client, root, ndjson([databuddy_row(token)]), "databuddy").json()["results"][0]["key_id"]
        with httpx.Client(base_url=replica.url, timeout=30) as other:
            # the replica's cache follows the store; its first VALID starts its re-hash, racing the other's
            until_sync(lambda: verify(other, token, "read:data")["code"] != "MALFORMED", timeout=10,
                       what="the replica holding the imported key")
            answers = [verify(client, token, "read:data"), verify(other, token, "read:data")]
            assert [a["code"] for a in answers] == ["VALID", "VALID"], answers
            until_sync(lambda: "key.rehashed" in event_types(server, key_id), timeout=20, what="key.rehashed")
            until_sync(lambda: verify(other, token, "read:data")["valid"], timeout=10, what="VALID after it")
        assert verify(client, token, "read:data")["valid"] is True
        assert event_types(server, key_id).count("key.rehashed") == 1, event_types(server, key_id)
    finally:
        replica.stop()
