"""Leaked keys are killed: GitHub's secret-scanning partner endpoint (signed with an ECDSA P-256 key pair this
test makes, listed in a keys file in GitHub's format) and the public report endpoint, through real API
processes; the key is refused on every replica before the intake answers, and the answers never hold a token."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psycopg
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from keyledger.domain import token
from keyledger.services.cli.supervise import ROLES
from tests.support.api import create, verify
from tests.support.server import ApiServer, StartServer
from tests.support.wait import until_sync

IDENTIFIER = "bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c"


class Signer:
    """One of the code host's signing keys: a P-256 key pair, listed (or not) in the keys file."""

    def __init__(self, identifier: str) -> None:
        self.identifier, self.private = identifier, ec.generate_private_key(ec.SECP256R1())

    def entry(self) -> dict[str, Any]:
        pem = self.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
        return {"key_identifier": self.identifier, "key": pem.decode(), "is_current": True}

    def headers(self, body: bytes, identifier: str | None = None) -> dict[str, str]:
        signature = self.private.sign(body, ec.ECDSA(hashes.SHA256()))
        return {"Github-Public-Key-Identifier": identifier or self.identifier,
                "Github-Public-Key-Signature": base64.b64encode(signature).decode(), "Content-Type": "application/json"}


def keys_file(tmp_path: Path, *signers: Signer) -> dict[str, str]:
    path = tmp_path / "github-keys.json"
    path.write_text(json.dumps({"public_keys": [signer.entry() for signer in signers]}))
    return {"KEYLEDGER_LEAK_GITHUB_KEYS_FILE": str(path)}


def look_alike(real: str) -> str:
    """``real`` with a wrong checksum."""
    return real[:-1] + ("A" if real[-1] != "A" else "B")


def hears(server: ApiServer, replicas: int) -> bool:
    return bool(httpx.get(f"{server.url}/readyz", timeout=5).json()["replicas"] == replicas)


def key_of(client: httpx.Client, admin: str, key_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/keys/{key_id}", headers={"x-api-key": admin})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def lifecycle(client: httpx.Client, admin: str, key_id: str) -> list[dict[str, Any]]:
    response = client.get("/v1/audit", params={"kind": "lifecycle", "key_id": key_id}, headers={"x-api-key": admin})
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


def notices_of(database_url: str, key_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT message_id, type, data FROM webhook_messages WHERE key_id = %s "
                            "AND type = 'key.leak_reported'", (key_id,)).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]


def grace_deadlines(database_url: str, key_id: str) -> int:
    with psycopg.connect(database_url) as conn:
        (count,) = conn.execute("SELECT count(*) FROM webhook_deadlines WHERE key_id = %s AND type = 'key.grace_ended'",
                                (key_id,)).fetchone() or (0,)
    return int(count)


def test_a_signed_github_report_revokes_a_live_key_on_every_replica_before_it_answers(
        start_server: StartServer, tmp_path: Path) -> None:
    github, stranger = Signer(IDENTIFIER), Signer("0" * 64)
    env = keys_file(tmp_path, github)
    api = start_server(extra_env=env, roles=ROLES)  # the webhooks role feeds the notices
    second = start_server(api.settings, workers=False, extra_env=env)
    admin, credential = api.bootstrap_secret, api.verify_credential
    assert admin is not None and credential is not None, api.log()
    until_sync(lambda: hears(api, 1) and hears(second, 1), timeout=20, what="the replicas to hear each other")
    with httpx.Client(base_url=api.url, timeout=30) as one, httpx.Client(base_url=second.url, timeout=10) as two:
        leaked, kept = create(one, admin, scopes=["read:data"]), create(one, admin, scopes=["read:data"])
        other_service = "ghp_" + secrets.token_hex(18)
        reported = [credential, other_service, look_alike(kept["secret"]), leaked["secret"]]  # the key last
        url = "https://github.com/acme/site/blob/0123abc/config.env"
        body = json.dumps([{"token": t, "type": "keyledger_api_key", "url": url, "source": "content"}
                           for t in reported]).encode()

        # forged, unsigned, signed by a key not in the file: 401, and nothing happens
        forged = {**github.headers(body), "Github-Public-Key-Signature": stranger.headers(body)[
            "Github-Public-Key-Signature"]}
        for headers in (forged, {"Content-Type": "application/json"}, stranger.headers(body),
                        github.headers(body + b" ")):
            refused = one.post("/v1/leaks/github", content=body, headers=headers)
            assert refused.status_code == 401 and refused.json()["code"] == "AUTH_REQUIRED", refused.text
        assert verify(two, leaked["secret"], "read:data")["code"] == "VALID"
        assert [e["action"] for e in lifecycle(one, admin, leaked["id"])] == ["key.created"]

        answer = one.post("/v1/leaks/github", content=body, headers=github.headers(body))
        assert answer.status_code == 200, answer.text
        assert verify(two, leaked["secret"], "read:data")["code"] == "REVOKED"  # at once: no waiting here
        assert verify(one, leaked["secret"], "read:data")["code"] == "REVOKED"
        assert [entry["label"] for entry in answer.json()] == ["true_positive", "false_positive", "false_positive",
                                                              "true_positive"]
        assert [entry["token_hash"] for entry in answer.json()] == [
            __import__("hashlib").sha256(t.encode()).hexdigest() for t in reported]
        assert {entry["token_type"] for entry in answer.json()} == {"keyledger_api_key"}
        for secret in reported:
            assert secret not in answer.text and secret[-40:] not in answer.text
        assert verify(two, kept["secret"], "read:data")["code"] == "VALID"

        shown = key_of(one, admin, leaked["id"])
        assert shown["status"] == "revoked" and shown["revoke_reason"] == f"leaked: reported by github at {url}"
        trail = lifecycle(one, admin, leaked["id"])
        assert [(e["action"], e["actor"]) for e in trail] == [("key.revoked", "leak-intake"),
                                                              ("key.leak_reported", "leak-intake"),
                                                              ("key.created", f"key:{token.parse(admin).key_id}")]
        assert leaked["secret"] not in json.dumps(trail)
        with psycopg.connect(api.database_url) as conn:
            (revoked_at,) = conn.execute("SELECT revoked_at FROM verify_credentials WHERE id = %s",
                                         (token.parse(credential, "klvc").key_id,)).fetchone() or (None,)
        assert revoked_at is not None  # the leaked verify credential is revoked too

        # one webhook notice per leak, derived from the event: the key's view and who reported it where
        notices = until_sync(lambda: notices_of(api.database_url, leaked["id"]), timeout=20,
                             what="the key.leak_reported notice")
        assert len(notices) == 1
        message_id, _, data = notices[0]
        event_id = next(e["id"] for e in trail if e["action"] == "key.leak_reported")
        assert message_id == f"event:{event_id}"
        assert (data["leak"]["source"], data["leak"]["url"], data["key"]["id"]) == ("github", url, leaked["id"])
        assert data["key"]["status"] == "active"  # the key as it was right after the report (the revoke follows)
        assert leaked["secret"] not in json.dumps(data) and "secret_hash" not in json.dumps(data)

        # the same report again: still a true positive (a real secret), and nothing more is recorded
        again = one.post("/v1/leaks/github", content=body, headers=github.headers(body))
        assert again.status_code == 200 and again.json()[-1]["label"] == "true_positive"
        assert len(lifecycle(one, admin, leaked["id"])) == 3
    assert leaked["secret"] not in api.log() + second.log()


def cli(server: ApiServer, *args: str) -> Any:
    done = subprocess.run([sys.executable, "-m", "keyledger.services.cli", *args, "--json"], env=server.environment(),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_public_reports_revoke_live_keys_end_grace_periods_and_answer_alike(start_server: StartServer) -> None:
    api = start_server(extra_env={"KEYLEDGER_LEAK_REPORTS_PER_MINUTE": "4"}, roles=ROLES)
    admin = api.bootstrap_secret
    assert admin is not None, api.log()
    with httpx.Client(base_url=api.url, timeout=10) as client:
        live, rotating = create(client, admin, scopes=["read:data"]), create(client, admin, scopes=["read:data"])
        rotated = client.post(f"/v1/keys/{rotating['id']}/rotate", json={"grace_seconds": 3600},
                              headers={"x-api-key": admin})
        assert rotated.status_code == 200, rotated.text
        old, new = rotating["secret"], rotated.json()["secret"]
        assert verify(client, old, "read:data")["code"] == "VALID"
        until_sync(lambda: grace_deadlines(api.database_url, rotating["id"]) == 1, timeout=20,
                   what="the key.grace_ended notice to be scheduled")

        garbage = client.post("/v1/leaks", json={"tokens": ["nonsense", look_alike(live["secret"]), 42]})
        real = client.post("/v1/leaks", json={"tokens": [live["secret"]], "url": "https://paste.example/abc",
                                              "reporter": "a kind stranger"})
        old_one = client.post("/v1/leaks", json={"tokens": [old], "url": "https://paste.example/old"})
        for answer, count in ((garbage, 3), (real, 1), (old_one, 1)):
            assert answer.status_code == 202 and answer.json() == {"received": count}, answer.text
        assert real.headers.keys() - {"date"} == garbage.headers.keys() - {"date"}  # alike, but the count

        until_sync(lambda: verify(client, live["secret"], "read:data")["code"] == "REVOKED", timeout=20,
                   what="the reported key to be revoked")
        assert key_of(client, admin, live["id"])["revoke_reason"] == \
            "leaked: reported by public at https://paste.example/abc"
        until_sync(lambda: verify(client, old, "read:data")["code"] == "NOT_FOUND", timeout=20,
                   what="the leaked old secret to stop working")
        assert verify(client, new, "read:data")["code"] == "VALID"  # the current secret keeps working
        after = key_of(client, admin, rotating["id"])
        assert after["status"] == "active" and after["previous_secret_valid_until"] is None
        until_sync(lambda: notices_of(api.database_url, rotating["id"]), timeout=20, what="the leak's notice")
        assert grace_deadlines(api.database_url, rotating["id"]) == 0  # the grace period ended now, not later

        too_many = client.post("/v1/leaks", json={"tokens": ["x"] * 101})
        assert too_many.status_code == 400 and too_many.json()["code"] == "VALIDATION_ERROR"
        assert client.post("/v1/leaks", json={"tokens": []}).status_code == 202  # the 4th of 4 this minute
        flood = client.post("/v1/leaks", json={"tokens": [new]})
        assert flood.status_code == 429, flood.text
        assert flood.json() == {"success": False, "error": flood.json()["error"], "code": "RATE_LIMITED"}
        assert int(flood.headers["Retry-After"]) >= 1
        assert verify(client, new, "read:data")["code"] == "VALID"  # the refused report changed nothing
        export = client.get("/v1/audit/export", params={"format": "ndjson"}, headers={"x-api-key": admin})
        assert export.status_code == 200, export.text
        leaks_exported = [json.loads(line) for line in export.text.splitlines() if "key.leak_reported" in line]
        assert sorted(r["key_id"] for r in leaks_exported) == sorted([live["id"], rotating["id"]])
        assert all(r["actor"] == "leak-intake" for r in leaks_exported)
        assert live["secret"] not in export.text and old not in export.text

    # the event in the history, as of its time and after a replay
    shown = cli(api, "keys", "show", rotating["id"])
    leak = next(e for e in shown["events"] if e["type"] == "key.leak_reported")
    assert leak["data"]["source"] == "public" and leak["data"]["ended_grace"] is True
    assert leak["metadata"]["actor"] == "leak-intake" and old not in json.dumps(shown)
    before = cli(api, "keys", "show", rotating["id"], "--as-of", shown["events"][1]["at"])
    assert [e["type"] for e in before["events"]] == ["key.created", "key.rotated"]
    assert before["previous_secret_valid_until"] is not None
    at_leak = cli(api, "keys", "show", rotating["id"], "--as-of", leak["at"])
    assert [e["type"] for e in at_leak["events"]][-1] == "key.leak_reported"
    assert at_leak["previous_secret_valid_until"] is None
    cli(api, "replay")
    replayed = cli(api, "keys", "show", live["id"])
    assert [e["type"] for e in replayed["events"]] == ["key.created", "key.leak_reported", "key.revoked"]
    assert replayed["status"] == "revoked"
    with httpx.Client(base_url=api.url, timeout=10) as client:
        assert verify(client, old, "read:data")["code"] == "NOT_FOUND"
        assert verify(client, new, "read:data")["code"] == "VALID"
    assert live["secret"] not in api.log() and old not in api.log()


def test_policy_notify_records_the_leak_and_keeps_the_key(start_server: StartServer) -> None:
    api = start_server(extra_env={"KEYLEDGER_LEAK_POLICY": "notify"})
    admin = api.bootstrap_secret
    assert admin is not None, api.log()
    with httpx.Client(base_url=api.url, timeout=10) as client:
        key = create(client, admin, scopes=["read:data"])
        assert client.post("/v1/leaks", json={"tokens": [key["secret"]], "source": "scanner",
                                              "url": "src/settings.py"}).status_code == 202
        until_sync(lambda: [e["action"] for e in lifecycle(client, admin, key["id"])][0] == "key.leak_reported",
                   timeout=20, what="the leak to be recorded")
        assert verify(client, key["secret"], "read:data")["code"] == "VALID"
        (finding,) = until_sync(lambda: leak_findings(client, admin, key["id"]), timeout=20,
                                what="the leaked_key finding")
        assert (finding["severity"], finding["status"], finding["count"]) == ("high", "open", 1)
        assert finding["evidence"]["source"] == "scanner" and finding["evidence"]["url"] == "src/settings.py"
        assert key["secret"] not in json.dumps(finding)
        cli(api, "watch", "rebuild")  # findings rebuilt from the usage table keep the reported ones
        assert [f["id"] for f in leak_findings(client, admin, key["id"])] == [finding["id"]]
    until_sync(lambda: "KEYLEDGER_LEAK_POLICY=notify keeps it active" in api.log(), timeout=10,
               what="the warning about the leaked key")
    assert f"high-severity finding {finding['id']}" in api.log()


def leak_findings(client: httpx.Client, admin: str, key_id: str) -> list[dict[str, Any]]:
    response = client.get("/v1/findings", params={"key_id": key_id, "kind": "leaked_key"},
                          headers={"x-api-key": admin})
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]
