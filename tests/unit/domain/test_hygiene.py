"""Key hygiene: each issue at its boundary, and least privilege from real use, checked against the access rule
itself (``check_access``): the suggestion allows every use and nothing the key did not hold."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from keyledger.domain.access import DATA_KINDS, MAX_ACCESS_ENTRIES, AccessEntry, check_access, validate_access
from keyledger.domain.hygiene import DEFAULT_RULES, Rules, assess
from keyledger.domain.key import KeyState
from keyledger.domain.least_privilege import Use, least_privilege

NOW = datetime(2030, 6, 1, 12, tzinfo=UTC)
TICK = timedelta(microseconds=1)


def entry(resource: str, *scopes: str, id: str | None = None) -> AccessEntry:
    return AccessEntry(resource=resource, id=id, scopes=scopes)


def key(*access: AccessEntry, created: datetime = NOW - timedelta(days=1),
        expires: datetime | None = NOW + timedelta(days=365)) -> KeyState:
    return KeyState(key_id="k1", version=1, name="k", organization_id=None, access=tuple(access), expires_at=expires,
                    secret_hash="$argon2id$placeholder", prefix="kl", start="kl_k1abcd", created_at=created,
                    updated_at=created)


def issues(state: KeyState, last_used: datetime | None = NOW, issued: datetime | None = None,
           uses: tuple[Use, ...] = (), rules: Rules = DEFAULT_RULES) -> tuple[str, ...]:
    return assess(state, NOW, last_used_at=last_used, secret_issued_at=issued or state.created_at, uses=uses,
                  rules=rules).issues


def allows(entries: tuple[AccessEntry, ...], use: Use) -> bool:
    return check_access(entries, use.scope, use.website_id, use.data).allowed


# ---- the issue's example ------------------------------------------------------------------------------------


def test_a_global_key_used_only_to_read_one_website_is_narrowed_to_that_website() -> None:
    held = (entry("global", "read:data", "write:data", "read:export"),)
    assessment = assess(key(*held), NOW, last_used_at=NOW, secret_issued_at=NOW, uses=[Use("read:data", "site-a")])
    assert assessment.issues == ("overprivileged",)
    assert assessment.suggestion is not None
    assert assessment.suggestion.access == (entry("website", "read:data", id="site-a"),)
    assert assessment.suggestion.unused == held  # every global grant goes (read:data stays on site-a only)
    narrowed = assessment.suggestion.access
    assert allows(narrowed, Use("read:data", "site-a"))
    assert allows(narrowed, Use("read:data", "site-a", "error_data"))
    assert not allows(narrowed, Use("write:data", "site-a"))
    assert not allows(narrowed, Use("read:data", "site-b"))
    assert not allows(narrowed, Use("read:export"))


# ---- website grants, data-kind grants, global grants ----------------------------------------------------------


def test_a_website_grant_keeps_only_the_scopes_used_on_it() -> None:
    held = (entry("website", "read:data", "write:data", id="site-a"), entry("website", "read:data", id="site-b"))
    suggestion = least_privilege(held, [Use("read:data", "site-a")])
    assert suggestion is not None
    assert suggestion.access == (entry("website", "read:data", id="site-a"),)
    assert suggestion.unused == (entry("website", "write:data", id="site-a"),
                                 entry("website", "read:data", id="site-b"))


def test_a_data_kind_grant_is_never_turned_into_a_website_grant() -> None:
    held = (entry("analytics_data", "read:analytics"),)
    suggestion = least_privilege(held, [Use("read:analytics", "site-a", "analytics_data")])
    assert suggestion is not None  # site-a's entry would cover site-a's error_data, which the key never could
    assert suggestion.access == held and suggestion.unused == ()


def test_a_global_grant_used_on_a_data_kind_alone_becomes_that_kind() -> None:
    suggestion = least_privilege((entry("global", "read:analytics"),), [Use("read:analytics", None, "error_data")])
    assert suggestion is not None
    assert suggestion.access == (entry("error_data", "read:analytics"),)


def test_a_use_naming_nothing_keeps_the_global_grant_and_needs_no_narrower_one() -> None:
    held = (entry("global", "read:data"),)
    suggestion = least_privilege(held, [Use("read:data"), Use("read:data", "site-a"), Use("read:data", None,
                                                                                         "web_vitals")])
    assert suggestion is not None
    assert suggestion.access == held and suggestion.unused == ()
    assert assess(key(*held), NOW, last_used_at=NOW, secret_issued_at=NOW, uses=[Use("read:data")]).issues == ()


def test_a_website_and_a_data_kind_use_of_one_scope_each_get_their_entry() -> None:
    held = (entry("global", "read:data", "read:analytics"),)
    suggestion = least_privilege(held, [Use("read:data", "site-a"), Use("read:analytics", None, "error_data"),
                                        Use("read:data", "site-b", "error_data")])
    assert suggestion is not None
    assert suggestion.access == (entry("error_data", "read:analytics"), entry("website", "read:data", id="site-a"),
                                 entry("website", "read:data", id="site-b"))


def test_uses_the_key_no_longer_holds_are_ignored() -> None:
    held = (entry("website", "read:data", id="site-a"),)
    suggestion = least_privilege(held, [Use("read:data", "site-a"), Use("write:data", "site-a"),
                                        Use("read:data", "site-b")])
    assert suggestion is not None and suggestion.access == held
    assert least_privilege(held, [Use("write:data", "site-a")]) is None  # nothing it holds was used


def test_a_website_id_no_grant_may_name_falls_back_to_the_wider_grant() -> None:
    held = (entry("global", "read:data"),)
    for odd in ("", "   ", "tab\there", "x" * 201):
        suggestion = least_privilege(held, [Use("read:data", odd)])
        assert suggestion is not None and suggestion.access == held, odd
        validate_access(suggestion.access)


def test_rate_tiers_stay_where_the_entry_stays_else_become_global_and_are_never_unused() -> None:
    one = (entry("website", "read:data", "rate:premium", "write:data", id="site-a"),)
    suggestion = least_privilege(one, [Use("read:data", "site-a")])
    assert suggestion is not None
    assert suggestion.access == (entry("website", "rate:premium", "read:data", id="site-a"),)
    assert suggestion.unused == (entry("website", "write:data", id="site-a"),)
    held = (entry("global", "read:data", "rate:premium"), entry("website", "rate:enterprise", "write:data", id="x"))
    suggestion = least_privilege(held, [Use("read:data", "site-a")])
    assert suggestion is not None
    assert suggestion.access == (entry("global", "rate:enterprise", "rate:premium"),
                                 entry("website", "read:data", id="site-a"))
    assert suggestion.unused == (entry("global", "read:data"), entry("website", "write:data", id="x"))


def test_admin_scopes_stay_only_when_an_authenticated_call_used_them() -> None:
    held = (entry("global", "admin:apikeys", "admin:users", "read:data"),)
    suggestion = least_privilege(held, [Use("admin:apikeys"), Use("read:data", "site-a")])
    assert suggestion is not None
    assert suggestion.access == (entry("global", "admin:apikeys"), entry("website", "read:data", id="site-a"))
    assert suggestion.unused == (entry("global", "admin:users", "read:data"),)


def test_a_suggestion_never_exceeds_the_entry_cap() -> None:
    held = (entry("global", "read:data", "write:data"),)
    uses = [Use("read:data", f"site-{n}") for n in range(150)] + [Use("write:data", f"site-{n}") for n in range(3)]
    suggestion = least_privilege(held, uses)
    assert suggestion is not None
    assert len(suggestion.access) <= MAX_ACCESS_ENTRIES
    validate_access(suggestion.access)
    assert suggestion.access[0] == entry("global", "read:data")  # the scope spread widest stays global
    assert all(allows(suggestion.access, use) for use in uses)
    assert not allows(suggestion.access, Use("write:data", "site-9"))


def test_a_suggestion_allows_every_use_and_nothing_the_key_did_not_hold() -> None:
    rng = random.Random(23)
    scopes = ["read:data", "write:data", "read:analytics", "admin:apikeys", "rate:premium", "rate:enterprise"]
    kinds, sites = sorted(DATA_KINDS), ["a", "b", "c"]
    for _ in range(300):
        held = tuple(rng.choice([entry("global", *rng.sample(scopes, 2)),
                                 entry("website", *rng.sample(scopes, 2), id=rng.choice(sites)),
                                 entry(rng.choice(kinds), *rng.sample(scopes, 2))]) for _ in range(rng.randint(1, 4)))
        asked = [Use(rng.choice(scopes), rng.choice([None, *sites]), rng.choice([None, *kinds])) for _ in range(6)]
        uses = [use for use in asked if allows(held, use)]
        suggestion = least_privilege(held, uses)
        if not uses:
            assert suggestion is None
            continue
        assert suggestion is not None
        validate_access(suggestion.access)
        assert all(allows(suggestion.access, use) for use in uses), (held, uses, suggestion)
        tiers = {scope for entry in held for scope in entry.scopes if scope.startswith("rate:")}
        assert tiers == {scope for entry in suggestion.access for scope in entry.scopes if scope.startswith("rate:")}
        for scope in (scope for scope in scopes if not scope.startswith("rate:")):  # a tier allows no request
            for site in [None, *sites, "z"]:
                for kind in [None, *kinds]:
                    if allows(suggestion.access, Use(scope, site, kind)):
                        assert allows(held, Use(scope, site, kind)), (held, uses, suggestion, scope, site, kind)


# ---- a key never used, and each issue's boundary ----------------------------------------------------------------


def test_a_key_never_used_gets_no_suggestion() -> None:
    state = key(entry("global", "read:data", "write:data"), created=NOW - timedelta(days=40))
    assessment = assess(state, NOW, last_used_at=None, secret_issued_at=state.created_at, uses=[])
    assert assessment.suggestion is None
    assert "overprivileged" not in assessment.issues and "unused" in assessment.issues


def test_unused_after_thirty_days_without_a_use() -> None:
    state = key(entry("global", "read:data"), created=NOW - timedelta(days=100))
    assert "unused" in issues(state, last_used=NOW - timedelta(days=30), issued=NOW)
    assert "unused" not in issues(state, last_used=NOW - timedelta(days=30) + TICK, issued=NOW)
    assert "unused" in issues(state, last_used=NOW - timedelta(days=7), issued=NOW, rules=Rules(unused_days=7))


def test_never_used_is_unused_once_the_key_is_thirty_days_old() -> None:
    assert "unused" in issues(key(created=NOW - timedelta(days=30)), last_used=None, issued=NOW)
    assert "unused" not in issues(key(created=NOW - timedelta(days=30) + TICK), last_used=None, issued=NOW)


def test_not_rotated_once_the_secret_is_ninety_days_old() -> None:
    state = key(created=NOW - timedelta(days=400))
    assert "not_rotated" in issues(state, issued=NOW - timedelta(days=90))
    assert "not_rotated" not in issues(state, issued=NOW - timedelta(days=90) + TICK)
    assert "not_rotated" in issues(state)  # never rotated: the secret is as old as the key
    assert "not_rotated" not in issues(state, issued=NOW - timedelta(days=89), rules=Rules(rotate_days=90))


def test_expiring_within_thirty_days_and_no_expiry() -> None:
    assert "expiring" in issues(key(expires=NOW + timedelta(days=30)))
    assert "expiring" not in issues(key(expires=NOW + timedelta(days=30) + TICK))
    assert issues(key(expires=None)) == ("no_expiry",)
    assert issues(key(expires=NOW + timedelta(days=365))) == ()


def test_issues_come_in_one_order() -> None:
    state = key(entry("global", "read:data", "write:data"), created=NOW - timedelta(days=200),
                expires=NOW + timedelta(days=1))
    found = issues(state, last_used=NOW - timedelta(days=31), uses=(Use("read:data", "s"),))
    assert found == ("unused", "not_rotated", "expiring", "overprivileged")


@pytest.mark.parametrize("uses", [(), (Use("write:data"),)])
def test_no_suggestion_without_a_use_the_key_still_holds(uses: tuple[Use, ...]) -> None:
    assessment = assess(key(entry("global", "read:data")), NOW, last_used_at=NOW, secret_issued_at=NOW, uses=uses)
    assert assessment.suggestion is None and assessment.issues == ()
