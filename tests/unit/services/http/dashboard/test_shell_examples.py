"""The shell commands the dashboard shows for copying: whatever a website id, a host or a secret holds, a
POSIX shell reads each back as exactly one argument, and the verify body as exactly the intended JSON."""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime

import pytest

from keyledger.domain.access import AccessEntry
from keyledger.domain.key import KeyState
from keyledger.services.http.dashboard.shell import audit_verify_examples, verify_body, verify_example

NOW = datetime(2030, 1, 1, tzinfo=UTC)
SECRET = "kl_0123456789abcdefghijklmnopqrstuvwxyzABCDEF"
HOSTILE = [
    "site-a' ; touch /tmp/x ; echo '",
    'site-a" ; touch /tmp/x ; echo "',
    "site-a$(touch /tmp/x)",
    "site-a`touch /tmp/x`",
    "site-a\\'; touch /tmp/x #",
    "site-a\n touch /tmp/x",
    "site-a\x00; touch /tmp/x",
    "site-a!!; ${HOME} %s \\n \\",
    "ünïcødé ‘quotes’ 🙂",
    "'",
    "",
]


def key(*access: AccessEntry) -> KeyState:
    return KeyState(key_id="abcdefghijkl", version=1, name="k", organization_id=None, access=access,
                    expires_at=None, secret_hash="h", prefix="kl", start="kl_0123", created_at=NOW, updated_at=NOW)


def argv_of(example: str) -> list[str]:
    """The words a POSIX shell reads from ``example`` (backslash-newline continues the line, as in sh)."""
    return shlex.split(example.replace("\\\n", ""), comments=True)


@pytest.mark.parametrize("website", HOSTILE)
def test_a_hostile_website_id_is_one_json_string_in_one_argument(website: str) -> None:
    state = key(AccessEntry(resource="website", id=website, scopes=("read:data",)))
    example = verify_example(state, SECRET, "http://127.0.0.1:8080")
    assert argv_of(example) == [
        "curl", "-s", "-X", "POST", "http://127.0.0.1:8080/v1/verify",
        "-H", "Authorization: Bearer $VERIFY_CREDENTIAL", "-H", "content-type: application/json",
        "-d", json.dumps({"key": SECRET, "scope": "read:data", "website_id": website})]
    assert json.loads(argv_of(example)[-1])["website_id"] == website
    body_line = example.splitlines()[-1]
    assert "\x00" not in example and body_line.startswith("  -d '")  # JSON escaped the control characters


@pytest.mark.parametrize("origin", ["http://h'; touch /tmp/x; '", "http://$(touch /tmp/x)", "http://`id`:1"])
def test_a_hostile_origin_is_one_argument(origin: str) -> None:
    assert argv_of(verify_example(key(), SECRET, origin))[4] == f"{origin}/v1/verify"
    for example in audit_verify_examples(origin).values():
        words = argv_of(example)
        assert words[:4] == ["keyledger", "audit", "verify", "keyledger-audit.ndjson"]
        assert words[4:] in (["--server", origin], ["--server", origin, "--since-manifest", "earlier-export.ndjson"],
                             ["--public-key", "BASE64_KEY"])


def test_the_body_names_the_first_grant_on_its_resource() -> None:
    assert verify_body(key(), SECRET) == {"key": SECRET, "scope": "read:data"}
    assert verify_body(key(AccessEntry(resource="global", scopes=("track:events",))), SECRET) == {
        "key": SECRET, "scope": "track:events"}
    assert verify_body(key(AccessEntry(resource="error_data", scopes=("read:analytics",))), SECRET) == {
        "key": SECRET, "scope": "read:analytics", "data": "error_data"}
