"""The access rule of DESIGN.md: which entry grants a scope on which resource."""

import pytest

from keyledger.domain.access import MAX_ACCESS_ENTRIES, AccessEntry, check_access, granted_scopes, validate_access
from keyledger.domain.errors import ValidationError


def entry(resource: str, *scopes: str, id: str | None = None) -> AccessEntry:
    return AccessEntry(resource=resource, id=id, scopes=scopes)


def test_global_entry_covers_any_website_and_data_kind() -> None:
    grant = entry("global", "read:data")
    for website, data in [(None, None), ("site-a", None), (None, "error_data"), ("site-b", "web_vitals")]:
        decision = check_access([grant], "read:data", website_id=website, data=data)
        assert decision.allowed and decision.granted_by == grant


def test_read_data_on_website_a_is_refused_for_website_b() -> None:
    grant = entry("website", "read:data", id="site-a")
    assert check_access([grant], "read:data", website_id="site-a").granted_by == grant
    refused = check_access([grant], "read:data", website_id="site-b")
    assert not refused.allowed and refused.granted_by is None
    assert "site-a" in refused.reason and "site-b" in refused.reason


def test_read_analytics_on_analytics_data_is_refused_for_error_data() -> None:
    grant = entry("analytics_data", "read:analytics")
    assert check_access([grant], "read:analytics", data="analytics_data").allowed
    refused = check_access([grant], "read:analytics", data="error_data")
    assert not refused.allowed
    assert "analytics_data" in refused.reason and "error_data" in refused.reason


def test_website_only_grant_needs_the_website_named() -> None:
    refused = check_access([entry("website", "read:data", id="site-a")], "read:data")
    assert not refused.allowed
    assert "website_id is required" in refused.reason


def test_missing_scope_is_refused_with_reason() -> None:
    decision = check_access([entry("global", "read:data")], "write:data", website_id="site-a")
    assert not decision.allowed
    assert decision.reason == "scope write:data is not granted by any access entry"


def test_the_covering_entry_is_named_among_several() -> None:
    a, b = entry("website", "read:data", id="site-a"), entry("website", "read:data", id="site-b")
    decision = check_access([a, b], "read:data", website_id="site-b")
    assert decision.granted_by == b and decision.reason == "granted by website:site-b"


def test_entry_without_the_scope_does_not_grant_it() -> None:
    decision = check_access([entry("global", "read:data"), entry("website", "write:data", id="s")], "write:data",
                            website_id="other")
    assert not decision.allowed


@pytest.mark.parametrize(
    "bad, message",
    [
        (entry("planet", "read:data"), "unknown resource type"),
        (entry("global", "read:everything"), "unknown scope"),
        (entry("website", "read:data"), "needs the website id"),
        (entry("website", "read:data", id="   "), "needs the website id"),
        (entry("global", "read:data", id="x"), "takes no id"),
        (entry("error_data"), "grants no scopes"),
    ],
)
def test_invalid_entries_are_refused(bad: AccessEntry, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        validate_access([bad])


def test_entry_cap() -> None:
    entries = [entry("website", "read:data", id=f"s{i}") for i in range(MAX_ACCESS_ENTRIES)]
    assert len(validate_access(entries)) == MAX_ACCESS_ENTRIES
    with pytest.raises(ValidationError, match="too many access entries"):
        validate_access(entries + [entry("global", "read:data")])


def test_duplicate_scopes_are_folded_and_granted_scopes_sorted() -> None:
    (cleaned,) = validate_access([entry("global", "read:data", "read:data", "admin:apikeys")])
    assert cleaned.scopes == ("read:data", "admin:apikeys")
    assert granted_scopes([cleaned, entry("error_data", "read:analytics")]) == (
        "admin:apikeys", "read:analytics", "read:data")


@pytest.mark.parametrize("website", ["a\x00b", "site\nb", "\x7f"])
def test_a_website_id_with_control_characters_is_a_validation_error(website: str) -> None:
    with pytest.raises(ValidationError, match="control characters"):
        validate_access([AccessEntry(resource="website", id=website, scopes=("read:data",))])
