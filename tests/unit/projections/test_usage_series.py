"""What the audit sink hands Postgres for the analytics tables: each fetch's events reduced to how many fall on
each key, organization, UTC hour, outcome, scope and website."""

from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from keyledger.domain.usage import UsageEvent
from keyledger.projections.usage_series import Combination, combinations, subject_of, table_rows

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


Counts = Counter[tuple[object, ...]]


def naive_rows(found: dict[Combination, int]) -> tuple[Counts, Counts, Counts]:
    """What each table gains, one combination at a time, as the schema's comments define the tables."""
    hourly: Counts = Counter()
    requests: Counts = Counter()
    rollups: Counts = Counter()
    for (key_id, org, hour, outcome, scope, website_id), n in found.items():
        hourly[(key_id, hour, outcome)] += n
        requests[(key_id, hour, scope or "", website_id or "")] += n
        for subject in ["all"] + ([] if org is None else [f"org:{org}"]):
            for span, at in (("hour", hour), ("day", hour - hour % 86_400)):
                for dimension, value in (("outcome", outcome), ("scope", scope or ""), ("website", website_id or "")):
                    rollups[(subject, dimension, span, at, value)] += n
    return hourly, requests, rollups


HOURS = st.integers(0, 24 * 3).map(lambda h: ELEVEN_PM + (h - 30) * 3_600)
COMBINATIONS = st.dictionaries(
    st.tuples(st.sampled_from(["k1", "k2", "k3"]), st.sampled_from(["org-a", "org-b", None]), HOURS,
              st.sampled_from(["VALID", "FORBIDDEN"]), st.sampled_from(["read:data", "write:data", None]),
              st.sampled_from(["site-a", "site-b", None])),
    st.integers(1, 1_000), max_size=40)


@given(COMBINATIONS)
def test_each_tables_rows_sum_the_combinations_over_its_primary_key(found: dict[Combination, int]) -> None:
    hourly, requests, rollups = table_rows(found)
    tables: tuple[list[tuple[object, ...]], ...] = (list(hourly), list(requests), list(rollups))
    for rows, expected in zip(tables, naive_rows(found), strict=True):
        assert len({row[:-1] for row in rows}) == len(rows)  # one row per primary key: one upsert each
        assert {row[:-1]: row[-1] for row in rows} == expected
