"""An organization's admin grants only what it holds; a global admin (the operator's root) anything."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from keyledger.domain.access import AccessEntry
from keyledger.domain.errors import Forbidden
from keyledger.domain.grants import check_grant, check_holds, lacking
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


STRONG = (AccessEntry(resource="global", scopes=("write:custom-sql", "admin:users")),
          AccessEntry(resource="export_data", scopes=("read:export",)))


def test_holding_a_key_means_holding_its_every_grant_and_its_limit() -> None:
    """What rotation hands over: the key's whole access and per-key limit, each part named when lacking."""
    assert lacking(ORG_ADMIN, STRONG, 50_000) == ["write:custom-sql on global", "admin:users on global",
                                                 "read:export on export_data",
                                                 "a per-key rate_limit of 50000/min (its own: 100/min)"]
    with pytest.raises(Forbidden, match=r"can rotate only a key .* it lacks write:custom-sql on global, .* and a "
                                        r"per-key rate_limit of 50000/min"):
        check_holds(ORG_ADMIN, STRONG, 50_000, "rotate")
    check_holds(ORG_ADMIN, ORG_ADMIN.access, 100, "rotate")  # a key it could have made: all its own
    check_holds(None, STRONG, 50_000, "rotate")
    check_holds(admin_key(None), STRONG, 50_000, "rotate")
    assert lacking(admin_key(None), STRONG, 50_000) == []


def test_a_refused_grant_names_every_scope_it_lacks() -> None:
    with pytest.raises(Forbidden, match="write:custom-sql on global, admin:users on global and read:export on "
                                        "export_data are not granted to it"):
        check_grant(ORG_ADMIN, STRONG, None)
