"""What the audit sink hands Postgres for the analytics tables: each fetch's events reduced to how many fall on
each key, organization, UTC hour, outcome, scope and website."""

from datetime import UTC, datetime, timedelta, timezone

from keyledger.domain.usage import UsageEvent
from keyledger.projections.usage_series import combinations, subject_of

T = datetime(2030, 1, 1, 23, 59, 59, 999_999, tzinfo=UTC)
ELEVEN_PM, MIDNIGHT = int(datetime(2030, 1, 1, 23, tzinfo=UTC).timestamp()), int(datetime(2030, 1, 2, tzinfo=UTC)
                                                                                 .timestamp())


def event(at: datetime, outcome: str = "VALID", key_id: str | None = "k1", org: str | None = "org-a",
          scope: str | None = "read:data", website_id: str | None = "site-a") -> UsageEvent:
    return UsageEvent(id="x", at=at, action="verify", outcome=outcome, key_id=key_id, organization_id=org,
                      scope=scope, website_id=website_id)


def test_events_are_counted_per_key_utc_hour_outcome_scope_and_website() -> None:
    events = [event(T), event(T.astimezone(timezone(timedelta(hours=-5)))), event(T + timedelta(microseconds=1)),
              event(T, website_id=None), event(T, "FORBIDDEN", scope=None), event(T, key_id=None, org=None),
              event(T, key_id="k2", org=None)]
    assert combinations(events) == {
        ("k1", "org-a", ELEVEN_PM, "VALID", "read:data", "site-a"): 2,
        ("k1", "org-a", MIDNIGHT, "VALID", "read:data", "site-a"): 1,
        ("k1", "org-a", ELEVEN_PM, "VALID", "read:data", None): 1,
        ("k1", "org-a", ELEVEN_PM, "FORBIDDEN", None, "site-a"): 1,
        ("k2", None, ELEVEN_PM, "VALID", "read:data", "site-a"): 1}


def test_an_organizations_rollups_are_its_subject() -> None:
    assert (subject_of("org-a"), subject_of(None)) == ("org:org-a", "all")
