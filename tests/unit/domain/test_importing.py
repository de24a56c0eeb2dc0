"""Imported keys (pure): each source's row mapped to an import command, the events an import and a re-hash
record, and how the state folds them. Secrets and rows are made here, at test time."""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import UTC, datetime

import pytest

from keyledger.domain.access import AccessEntry
from keyledger.domain.errors import ConcurrencyError, KeyAlreadyExists, ValidationError
from keyledger.domain.events import KeyCreated, KeyImported, KeyRehashed, KeyRevoked
from keyledger.domain.import_formats import to_import
from keyledger.domain.importing import (
    RehashKey,
    check_argon2_hash,
    decide_import,
    decide_rehash,
    derived_key_id,
    sha256_hash,
)
from keyledger.domain.key import fold, import_lookup

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def test_each_encoding_of_a_sha256_gives_the_same_hash() -> None:
    digest = _digest(secrets.token_urlsafe(24))
    expected = "sha256:" + digest.hex()
    assert sha256_hash(digest.hex().upper(), "keyHash", "hex") == expected
    assert sha256_hash(base64.b64encode(digest).decode(), "hash", "base64") == expected
    assert sha256_hash(base64.urlsafe_b64encode(digest).decode().rstrip("="), "key", "base64url") == expected


@pytest.mark.parametrize("value", ["", "zz", base64.b64encode(b"short").decode(), None])
def test_anything_but_32_bytes_is_refused_naming_the_field(value: object) -> None:
    with pytest.raises(ValidationError, match="keyHash"):
        sha256_hash(value, "keyHash", "hex")


def test_a_databuddy_row_maps_scopes_resources_tags_and_its_rate_limit() -> None:
    secret = f"dbdy_{secrets.token_urlsafe(36)}"
    row = {"id": "k1", "name": "n", "start": secret[:8], "key_hash": _digest(secret).hex(), "type": "sdk",
           "scopes": "{read:data,track:events}", "organization_id": "org_1", "rate_limit_enabled": True,
           "rate_limit_max": 30, "rate_limit_time_window": 1000,
           "metadata": {"resources": {"website:w1": ["read:analytics"], "error_data": ["read:analytics"]},
                        "tags": ["a"], "description": "d"}}
    command = to_import("databuddy", row, None, "kl")
    create = command.create
    assert (command.source, command.source_id, create.organization_id) == ("databuddy", "k1", "org_1")
    assert create.access == (AccessEntry(resource="global", scopes=("read:data", "track:events")),
                             AccessEntry(resource="website", id="w1", scopes=("read:analytics",)),
                             AccessEntry(resource="error_data", scopes=("read:analytics",)))
    assert create.rate_limit == 1800 and create.tags == ("a", "type:sdk") and create.description == "d"
    assert create.key_id == derived_key_id("databuddy", "org_1", "k1") and create.prefix == "kl"
    assert to_import("databuddy", row, "org_2", "kl").create.organization_id == "org_2"


def test_a_resource_without_a_keyledger_meaning_refuses_the_row() -> None:
    row = {"id": "k1", "keyHash": "ab" * 32, "metadata": {"resources": {"feature_flag": ["read:data"]}}}
    with pytest.raises(ValidationError, match="feature_flag"):
        to_import("databuddy", row, None, "kl")


def test_better_auth_permissions_become_scopes_and_its_refill_credits() -> None:
    key = base64.urlsafe_b64encode(_digest("ba_x")).decode().rstrip("=")
    row = {"id": "b1", "key": key, "permissions": '{"data": ["read", "write"]}', "remaining": 5,
           "refillAmount": 10, "refillInterval": 86_400_000, "rateLimitEnabled": False, "rateLimitMax": 10}
    create = to_import("better-auth", row, None, "kl").create
    assert create.access == (AccessEntry(resource="global", scopes=("read:data", "write:data")),)
    assert create.rate_limit is None and create.credits is not None
    assert (create.credits.remaining, create.credits.refill and create.credits.refill.interval) == (5, "daily")
    with pytest.raises(ValidationError, match="refillInterval"):
        to_import("better-auth", {**row, "refillInterval": 3_600_000}, None, "kl")


def test_an_unkey_row_maps_its_rate_limit_refill_and_deletion() -> None:
    row = {"id": "key_1", "hash": base64.b64encode(_digest("uk_x")).decode(), "workspace_id": "ws",
           "ratelimit_limit": 100, "ratelimit_duration": 60_000, "remaining": 7, "refill_interval": "monthly",
           "refill_amount": 7, "refill_day": 15, "deleted_at": "2029-12-01 10:00:00.000", "environment": "test"}
    command = to_import("unkey", row, None, "kl")
    assert command.create.rate_limit == 100 and command.create.organization_id == "ws"
    assert command.create.credits is not None and command.create.credits.refill is not None
    assert command.create.credits.refill.day_of_month == 15 and command.create.tags == ("environment:test",)
    assert command.disabled == "revoked in unkey before the import"


@pytest.mark.parametrize(("source", "row"), [
    ("databuddy", {"id": "d1", "keyHash": "ab" * 32, "userId": "user_7"}),
    ("better-auth", {"id": "b1", "key": base64.urlsafe_b64encode(b"x" * 32).decode().rstrip("="), "userId": "user_7"}),
    ("unkey", {"id": "u1", "hash": base64.b64encode(b"x" * 32).decode(), "ownerId": "user_7"}),
    ("keyledger", {"id": "k1", "secret_sha256": "ab" * 32, "owner_id": "user_7"}),
])
def test_each_source_carries_the_keys_owner(source: str, row: dict[str, object]) -> None:
    assert to_import(source, row, None, "kl").create.owner_id == "user_7"
    assert to_import(source, {k: v for k, v in row.items() if k not in ("userId", "ownerId", "owner_id")}, None,
                     "kl").create.owner_id is None


def test_an_owner_id_that_is_no_owner_id_refuses_the_row() -> None:
    command = to_import("unkey", {"id": "u1", "hash": base64.b64encode(b"x" * 32).decode(), "ownerId": "a b"},
                        None, "kl")
    with pytest.raises(ValidationError, match="owner"):
        decide_import(None, command, NOW)


def test_an_import_records_created_imported_and_revoked_and_folds_its_lookup() -> None:
    secret = "uk_" + secrets.token_urlsafe(20)
    row = {"id": "key_1", "hash": base64.b64encode(_digest(secret)).decode(), "enabled": False}
    command = to_import("unkey", row, None, "kl")
    events = decide_import(None, command, NOW)
    assert [type(e) for e in events] == [KeyCreated, KeyImported, KeyRevoked]
    state = fold(events)
    assert state is not None and state.status(NOW) == "revoked"
    assert state.import_lookup == import_lookup(command.create.secret_hash) == _digest(secret).hex()[:16]
    with pytest.raises(KeyAlreadyExists):
        decide_import(state, command, NOW)


def test_a_rehash_replaces_the_sha256_once() -> None:
    row = {"id": "d1", "keyHash": _digest("dbdy_y").hex()}
    state = fold(decide_import(None, to_import("databuddy", row, None, "kl"), NOW))
    assert state is not None
    [event] = decide_rehash(state, RehashKey(key_id=state.key_id, secret_hash="$argon2id$v=19$x"), NOW)
    assert isinstance(event, KeyRehashed)
    rehashed = fold([event], state)
    assert rehashed is not None and rehashed.secret_hash == "$argon2id$v=19$x"
    assert rehashed.import_lookup == state.import_lookup  # the index still finds it
    with pytest.raises(ConcurrencyError):  # another replica's re-hash came first
        decide_rehash(rehashed, RehashKey(key_id=state.key_id, secret_hash="$argon2id$v=19$y"), NOW)


def test_an_expired_key_is_refused() -> None:
    row = {"id": "d1", "keyHash": "cd" * 32, "expiresAt": "2029-01-01T00:00:00Z"}
    with pytest.raises(ValidationError, match="expires_at"):
        decide_import(None, to_import("databuddy", row, None, "kl"), NOW)


@pytest.mark.parametrize(("params", "refused"), [("m=1024,t=1,p=1", False), ("m=65536,t=3,p=4", False),
                                                 ("m=262145,t=1,p=1", True), ("m=1024,t=11,p=1", True),
                                                 ("m=1024,t=1,p=17", True), ("m=4,t=1,p=1", True)])
def test_an_imported_argon2_hash_may_ask_only_so_much_of_a_verify(params: str, refused: bool) -> None:
    secret_hash = f"$argon2id$v=19${params}$" + "c2FsdHNhbHRzYWx0" + "$" + "A" * 43
    if refused:
        with pytest.raises(ValidationError, match="secret_hash"):
            check_argon2_hash(secret_hash)
    else:
        check_argon2_hash(secret_hash)
