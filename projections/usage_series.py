"""The read models behind the usage analytics API (``GET /v1/analytics/usage``):

- ``usage_hourly``: per key, hour and outcome (a key's series by outcome; also ``projections.usage_hourly``);
- ``usage_hourly_requests``: per key, hour, scope and website (a key's series by scope or website);
- ``usage_rollups``: per organization (subject ``org:<id>``) and for every key together (``all``), by hour and
  by day (``span``), by outcome, scope and website (``dimension``), so that a series over thousands of keys
  reads one row per bucket and group.

Only events that name a key count; a request that named no scope or website counts under ``""``. The audit
sink reduces each fetch's events to their :func:`combinations` here (one look at each event), those to each
table's rows (:func:`table_rows`), and Postgres adds the rows to the three tables in one statement.
"""

from __future__ import annotations

from collections.abc import Iterable

from keyledger.domain.usage import UsageEvent

ALL = "all"  # the subject of every key's rollups; an organization's is ORG + its id
ORG = "org:"
HOUR, DAY = 3_600, 86_400

# key id, organization id, hour (seconds since the epoch), outcome, scope, website id
Combination = tuple[str, str | None, int, str, str | None, str | None]
HourlyRow = tuple[str, int, str, int]  # key id, hour, outcome, count
RequestsRow = tuple[str, int, str, str, int]  # key id, hour, scope, website id ("" for none), count
RollupRow = tuple[str, str, str, int, str, int]  # subject, dimension, span, bucket start, value, count


def subject_of(organization_id: str | None) -> str:
    """The rollup subject of one organization's keys (None: every key's)."""
    return ALL if organization_id is None else ORG + organization_id


def combinations(events: Iterable[UsageEvent]) -> dict[Combination, int]:
    """How many of ``events`` fall on each (key, organization, UTC hour, outcome, scope, website); events that
    name no key are left out. Each event is looked at once, its hour taken from its timestamp (no datetime
    arithmetic): this runs in the audit sink on every event."""
    seen: dict[Combination, int] = {}
    get = seen.get
    for event in events:
        if event.key_id is not None:
            combination = (event.key_id, event.organization_id, int(event.at.timestamp()) // HOUR * HOUR,
                           event.outcome, event.scope, event.website_id)
            seen[combination] = get(combination, 0) + 1
    return seen


def table_rows(found: dict[Combination, int]) -> tuple[list[HourlyRow], list[RequestsRow], list[RollupRow]]:
    """The rows that :func:`combinations` add to ``usage_hourly``, ``usage_hourly_requests`` and
    ``usage_rollups``: each table's counts summed over its own primary key (Postgres sorts them by it, so that
    every writer takes the rows' locks in one order and concurrent sinks cannot deadlock). Summed here:
    each combination fans out into twelve rollup counts (two subjects, three dimensions, two spans), which
    Postgres sorted and grouped at several times the cost of summing per dimension first, as here."""
    hourly: dict[tuple[str, int, str], int] = {}
    requests: dict[tuple[str, int, str, str], int] = {}
    dimensions: tuple[dict[tuple[str | None, int, str], int], ...] = ({}, {}, {})  # outcome, scope, website
    by_outcome, by_scope, by_website = dimensions
    for (key_id, org, hour, outcome, scope, website_id), n in found.items():
        scope, website_id = scope or "", website_id or ""
        row = (key_id, hour, outcome)
        hourly[row] = hourly.get(row, 0) + n
        request = (key_id, hour, scope, website_id)
        requests[request] = requests.get(request, 0) + n
        group = (org, hour, outcome)
        by_outcome[group] = by_outcome.get(group, 0) + n
        group = (org, hour, scope)
        by_scope[group] = by_scope.get(group, 0) + n
        group = (org, hour, website_id)
        by_website[group] = by_website.get(group, 0) + n
    rollups: dict[tuple[str, str, str, int, str], int] = {}
    for dimension, counts in zip(("outcome", "scope", "website"), dimensions, strict=True):
        for (org, hour, value), n in counts.items():
            for subject in (ALL,) if org is None else (ALL, ORG + org):
                for bucket in ((subject, dimension, "hour", hour, value),
                               (subject, dimension, "day", hour // DAY * DAY, value)):
                    rollups[bucket] = rollups.get(bucket, 0) + n
    return ([(*k, n) for k, n in hourly.items()], [(*k, n) for k, n in requests.items()],
            [(*k, n) for k, n in rollups.items()])
