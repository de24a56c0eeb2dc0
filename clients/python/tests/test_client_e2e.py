"""``Keyledger`` and ``AsyncKeyledger`` against a real ``keyledger serve``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keyledger_client import (
    Access,
    AsyncKeyledger,
    AuthenticationError,
    ConflictError,
    Keyledger,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from tests.support.server import ApiServer

SITE_A = [Access(resource="website", id="site-a", scopes=["read:data"])]


def test_verify_answers_with_a_typed_result(keyledger_server: ApiServer, admin_client: Keyledger,
                                            verify_credential: str) -> None:
    made = admin_client.create("reader", organization_id="org-1", access=SITE_A, rate_limit=7)
    assert made.secret.startswith("kl_") and made.version == 1 and made.access == SITE_A
    with Keyledger(keyledger_server.url, verify_credential) as service:
        ok = service.verify(made.secret, "read:data", website_id="site-a", ip="203.0.113.5", user_agent="sdk-test")
        assert (ok.valid, ok.code, ok.key_id, ok.organization_id, ok.scopes) == (
            True, "VALID", made.id, "org-1", ["read:data"])
        assert ok.granted_by == SITE_A[0] and ok.ratelimit is not None and ok.ratelimit.limit == 7
        other = service.verify(made.secret, "read:data", website_id="site-b")
        assert (other.valid, other.code) == (False, "FORBIDDEN") and "site-b" in other.reason
        assert service.verify("kl_nope", "read:data").code == "MALFORMED"
        with pytest.raises(ValidationError) as bad_scope:
            service.verify(made.secret, "read:everything")
        assert bad_scope.value.code == "VALIDATION_ERROR" and bad_scope.value.status == 400
    with Keyledger(keyledger_server.url, "klvc_not-a-credential") as stranger, \
            pytest.raises(AuthenticationError) as refused:
        stranger.verify(made.secret, "read:data")
    assert refused.value.code == "AUTH_REQUIRED"


def test_management_round_trip(admin_client: Keyledger) -> None:
    made = [admin_client.create(f"key {n}", scopes=["read:data"]) for n in range(5)]
    listed = list(admin_client.list(page_size=2))  # three pages
    assert {k.id for k in made} <= {k.id for k in listed} and len({k.id for k in listed}) == len(listed)
    key = admin_client.get(made[0].id)
    assert (key.name, key.status, key.last_used_at) == ("key 0", "active", None)
    changed = admin_client.update(key.id, version=key.version, name="renamed", access=SITE_A, scopes=[])
    assert (changed.name, changed.version, changed.access, changed.scopes) == ("renamed", 2, SITE_A, [])
    with pytest.raises(ConflictError) as stale:
        admin_client.update(key.id, version=key.version, name="lost update")
    assert stale.value.code == "CONFLICT" and admin_client.get(key.id).name == "renamed"
    rotated = admin_client.rotate(key.id, grace_seconds=60, version=changed.version)
    assert rotated.secret != made[0].secret and rotated.previous_secret_valid_until is not None
    revoked = admin_client.revoke(key.id, reason="done")
    assert (revoked.status, revoked.revoke_reason) == ("revoked", "done")
    with pytest.raises(NotFoundError) as missing:
        admin_client.get("k" * 12)
    assert missing.value.code == "NOT_FOUND"


def test_audit_iterates_and_export_streams_to_a_file(keyledger_server: ApiServer, admin_client: Keyledger,
                                                     tmp_path: Path) -> None:
    reader = admin_client.create("auditor", scopes=["read:export"], rate_limit=100_000)
    made = admin_client.create("audited", scopes=["read:data"])
    admin_client.revoke(made.id)
    with Keyledger(keyledger_server.url, reader.secret) as auditor:
        lifecycle = list(auditor.audit(key_id=made.id, kind="lifecycle", page_size=1))  # one record a page
        assert [(r.kind, r.key_id) for r in lifecycle] == [("lifecycle", made.id)] * 2
        assert lifecycle[0].at >= lifecycle[1].at  # newest first
    with Keyledger(keyledger_server.url, made.secret) as revoked, pytest.raises(AuthenticationError):
        next(iter(revoked.audit()))
    with Keyledger(keyledger_server.url, admin_client.create("no export", scopes=["read:data"]).secret) as no_export, \
            pytest.raises(PermissionDeniedError) as forbidden:
        next(iter(no_export.audit()))
    assert forbidden.value.code == "FORBIDDEN"
    target = tmp_path / "audit.ndjson"
    written = admin_client.export(target)
    lines = target.read_text().splitlines()
    assert written == target.stat().st_size and "manifest" in json.loads(lines[-1])
    assert len(lines) > 3  # the lifecycle records above, then the manifest
    assert not (tmp_path / "audit.ndjson.part").exists()


async def test_the_async_client_does_the_same(keyledger_server: ApiServer, admin_key: str,
                                              verify_credential: str, tmp_path: Path) -> None:
    async with AsyncKeyledger(keyledger_server.url, admin_key) as admin:
        made = await admin.create("async", access=SITE_A)
        assert [k.id async for k in admin.list(page_size=1) if k.id == made.id] == [made.id]
        key = await admin.get(made.id)
        changed = await admin.update(key.id, version=key.version, name="async renamed")
        assert changed.version == 2
        with pytest.raises(ConflictError):
            await admin.update(key.id, version=key.version, name="stale")
        async with AsyncKeyledger(keyledger_server.url, verify_credential) as service:
            assert (await service.verify(made.secret, "read:data", website_id="site-a")).valid
            await admin.revoke(made.id)
            assert (await service.verify(made.secret, "read:data", website_id="site-a")).code == "REVOKED"
        assert await admin.export(tmp_path / "a.csv", format="csv") > 0
