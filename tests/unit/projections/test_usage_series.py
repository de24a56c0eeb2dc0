"""The analytics read models: a key's requests per hour, scope and website; an organization's and every key's
counts per hour and per day, by outcome, scope and website."""

from datetime import UTC, datetime, timedelta, timezone

from keyledger.domain.usage import UsageEvent
from keyledger.projections.usage_series import count_series

T = datetime(2030, 1, 1, 23, 59, 59, 999_999, tzinfo=UTC)
ELEVEN_PM, MIDNIGHT, DAY_ONE, DAY_TWO = (datetime(2030, 1, 1, 23, tzinfo=UTC), datetime(2030, 1, 2, tzinfo=UTC),
                                         datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 1, 2, tzinfo=UTC))


def event(at: datetime, outcome: str = "VALID", key_id: str | None = "k1", org: str | None = "org-a",
          scope: str | None = "read:data", website_id: str | None = "site-a") -> UsageEvent:
    return UsageEvent(id="x", at=at, action="verify", outcome=outcome, key_id=key_id, organization_id=org,
                      scope=scope, website_id=website_id)


def test_a_keys_requests_are_counted_per_utc_hour_scope_and_website() -> None:
    events = [event(T), event(T.astimezone(timezone(timedelta(hours=-5)))), event(T + timedelta(microseconds=1)),
              event(T, website_id=None), event(T, "FORBIDDEN", scope=None), event(T, key_id=None)]
    requests, _ = count_series(events)
    assert requests == {("k1", ELEVEN_PM, "read:data", "site-a"): 2, ("k1", MIDNIGHT, "read:data", "site-a"): 1,
                        ("k1", ELEVEN_PM, "read:data", ""): 1, ("k1", ELEVEN_PM, "", "site-a"): 1}


def test_rollups_count_each_organization_and_every_key_per_hour_and_day() -> None:
    events = [event(T), event(T, "FORBIDDEN", key_id="k2"), event(T + timedelta(hours=1), key_id="k3", org=None),
              event(T, key_id=None, org=None)]
    _, rollups = count_series(events)
    assert {k: n for k, n in rollups.items() if k[1] == "outcome"} == {
        ("all", "outcome", "hour", ELEVEN_PM, "VALID"): 1, ("all", "outcome", "hour", ELEVEN_PM, "FORBIDDEN"): 1,
        ("all", "outcome", "day", DAY_ONE, "VALID"): 1, ("all", "outcome", "day", DAY_ONE, "FORBIDDEN"): 1,
        ("org:org-a", "outcome", "hour", ELEVEN_PM, "VALID"): 1,
        ("org:org-a", "outcome", "hour", ELEVEN_PM, "FORBIDDEN"): 1,
        ("org:org-a", "outcome", "day", DAY_ONE, "VALID"): 1, ("org:org-a", "outcome", "day", DAY_ONE, "FORBIDDEN"): 1,
        ("all", "outcome", "hour", MIDNIGHT, "VALID"): 1,
        ("all", "outcome", "day", DAY_TWO, "VALID"): 1}
    assert rollups[("org:org-a", "website", "day", DAY_ONE, "site-a")] == 2
    assert rollups[("all", "scope", "hour", ELEVEN_PM, "read:data")] == 2
    assert sum(n for k, n in rollups.items() if k[:3] == ("all", "website", "day")) == 3
