"""The requests each key was allowed, by scope, website and data kind, with the last time and how often."""

from datetime import UTC, datetime, timedelta

from keyledger.domain.usage import UsageEvent
from keyledger.projections.usage_grants import count_grants

T = datetime(2030, 1, 1, 10, tzinfo=UTC)


def event(at: datetime = T, outcome: str = "VALID", key_id: str | None = "k1", scope: str | None = "read:data",
          website_id: str | None = None, data: str | None = None, caller: str | None = None,
          action: str = "verify") -> UsageEvent:
    return UsageEvent(id="x", at=at, action=action, outcome=outcome, key_id=key_id, scope=scope,
                      website_id=website_id, data=data, caller=caller)


def test_allowed_requests_are_counted_by_scope_website_and_data_kind_with_the_last_time() -> None:
    later = T + timedelta(minutes=5)
    events = [event(website_id="site-a"), event(later, website_id="site-a"), event(T, website_id="site-a"),
              event(data="error_data"), event(website_id="site-a", data="error_data"), event(scope="write:data"),
              event(key_id="k2", scope="admin:apikeys", action="POST /v1/keys")]
    assert count_grants(events) == {
        ("k1", "read:data", "site-a", ""): (later, 3), ("k1", "read:data", "", "error_data"): (T, 1),
        ("k1", "read:data", "site-a", "error_data"): (T, 1), ("k1", "write:data", "", ""): (T, 1),
        ("k2", "admin:apikeys", "", ""): (T, 1)}


def test_only_valid_requests_of_a_known_key_and_scope_count() -> None:
    events = [event(outcome=outcome) for outcome in ("FORBIDDEN", "RATE_LIMITED", "NOT_FOUND", "REVOKED")]
    assert count_grants([*events, event(key_id=None), event(scope=None)]) == {}


def test_an_admin_key_calling_verify_used_its_admin_scope() -> None:
    events = [event(key_id="k1", caller="key:admin1", outcome="FORBIDDEN"), event(caller="key:admin1"),
              event(caller="credential:c1"), event(caller="service-token")]
    assert count_grants(events) == {("admin1", "admin:apikeys", "", ""): (T, 2), ("k1", "read:data", "", ""): (T, 3)}


def test_counts_add_up_across_calls() -> None:
    into = count_grants([event()])
    assert count_grants([event(T + timedelta(seconds=1))], into) == {
        ("k1", "read:data", "", ""): (T + timedelta(seconds=1), 2)}
