"""An organization's admin grants only what it holds; a global admin (the operator's root) anything."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from keyledger.domain.access import AccessEntry
from keyledger.domain.errors import Forbidden
from keyledger.domain.grants import check_grant
from keyledger.domain.key import KeyState

ADMIN = AccessEntry(resource="global", scopes=("admin:apikeys",))


def admin_key(organization_id: str | None, *access: AccessEntry, rate_limit: int | None = None) -> KeyState:
    return KeyState(key_id="a" * 12, name="admin", organization_id=organization_id, access=(ADMIN, *access),
                    secret_hash="h", prefix="kl", start="kl_aaaa", created_at=datetime(2026, 1, 1, tzinfo=UTC),
                    updated_at=datetime(2026, 1, 1, tzinfo=UTC), version=1, rate_limit=rate_limit, expires_at=None)


ORG_ADMIN = admin_key("org-a", AccessEntry(resource="website", id="site-a", scopes=("read:data",)),
                      AccessEntry(resource="analytics_data", scopes=("read:analytics",)))


@pytest.mark.parametrize("entry", [
    AccessEntry(resource="website", id="site-a", scopes=("read:data",)),
    AccessEntry(resource="analytics_data", scopes=("read:analytics",)),
    AccessEntry(resource="global", scopes=("admin:apikeys",)),
])
def test_what_it_holds_it_may_grant(entry: AccessEntry) -> None:
    check_grant(ORG_ADMIN, [entry], None)


@pytest.mark.parametrize(("entry", "named"), [
    (AccessEntry(resource="global", scopes=("read:data",)), "read:data on global"),
    (AccessEntry(resource="website", id="site-b", scopes=("read:data",)), "read:data on website:site-b"),
    (AccessEntry(resource="website", id="site-a", scopes=("write:data",)), "write:data on website:site-a"),
    (AccessEntry(resource="error_data", scopes=("read:analytics",)), "read:analytics on error_data"),
    (AccessEntry(resource="global", scopes=("rate:premium",)), "rate:premium on global"),
])
def test_more_than_it_holds_is_forbidden_naming_the_scope(entry: AccessEntry, named: str) -> None:
    with pytest.raises(Forbidden, match=named):
        check_grant(ORG_ADMIN, [entry], None)


def test_a_rate_limit_above_its_own_needs_a_global_admin() -> None:
    check_grant(ORG_ADMIN, None, 100)
    check_grant(ORG_ADMIN, None, 0)  # back to the tier's limit
    with pytest.raises(Forbidden, match=r"own \(100/min\)"):
        check_grant(ORG_ADMIN, None, 101)
    check_grant(admin_key("org-a", rate_limit=5000), None, 5000)


def test_the_operator_and_a_global_admin_may_grant_anything() -> None:
    everything = [AccessEntry(resource="global", scopes=("write:custom-sql", "admin:organizations"))]
    check_grant(None, everything, 10_000_000)
    check_grant(admin_key(None), everything, 10_000_000)
