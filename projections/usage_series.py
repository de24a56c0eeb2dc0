"""The read models behind the usage analytics API (``GET /v1/analytics/usage``) beside ``usage_hourly``:

- per key, hour, scope and website: the requests (``usage_hourly_requests``), for a key's series grouped by
  scope or website (a key's series by outcome reads ``usage_hourly``);
- per organization and for every key together, by hour and by day, by outcome, scope and website
  (``usage_rollups``), so that a series over thousands of keys reads one row per bucket and group.

Only events that name a key count (as in ``usage_hourly``); a request that named no scope or website counts
under ``""``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

from keyledger.domain.usage import UsageEvent

ALL = "all"  # the subject of every key's rollups; an organization's is ORG + its id
ORG = "org:"
DIMENSIONS = ("outcome", "scope", "website")
HOUR, DAY = 3_600, 86_400

Requests = Counter[tuple[str, datetime, str, str]]  # (key id, hour, scope, website id) -> requests
Rollups = Counter[tuple[str, str, str, datetime, str]]  # (subject, dimension, span, bucket start, group) -> n


def subject_of(organization_id: str | None) -> str:
    """The rollup subject of one organization's keys (None: every key's)."""
    return ALL if organization_id is None else ORG + organization_id


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def count_series(events: Iterable[UsageEvent]) -> tuple[Requests, Rollups]:
    """The per-key requests and the rollups of ``events``. Each event is looked at once (its hour from its
    timestamp, no datetime arithmetic); the rest works on the distinct combinations, far fewer. (Plain dicts,
    not Counters: this runs in the audit sink on every event.)"""
    seen: dict[tuple[str, str | None, float, str, str | None, str | None], int] = {}
    get = seen.get
    for event in events:
        if event.key_id is not None:
            combination = (event.key_id, event.organization_id, event.at.timestamp() // HOUR, event.outcome,
                           event.scope, event.website_id)
            seen[combination] = get(combination, 0) + 1
    hours: dict[float, tuple[datetime, datetime]] = {}
    requests: Requests = Counter()
    by_group: tuple[dict[tuple[str | None, float, str], int], ...] = ({}, {}, {})
    outcomes, scopes, websites = by_group
    for (key_id, organization_id, hour, outcome, scope, website_id), n in seen.items():
        scope, website_id = scope or "", website_id or ""
        if hour not in hours:
            hours[hour] = (_at(int(hour) * HOUR), _at(int(hour) * HOUR // DAY * DAY))
        cell = (key_id, hours[hour][0], scope, website_id)
        requests[cell] = requests.get(cell, 0) + n
        group = (organization_id, hour, outcome)
        outcomes[group] = outcomes.get(group, 0) + n
        group = (organization_id, hour, scope)
        scopes[group] = scopes.get(group, 0) + n
        group = (organization_id, hour, website_id)
        websites[group] = websites.get(group, 0) + n
    rollups: Rollups = Counter()
    for dimension, counts in zip(DIMENSIONS, by_group, strict=True):
        for (organization_id, hour, value), n in counts.items():
            at_hour, at_day = hours[hour]
            for subject in (ALL, ORG + organization_id) if organization_id is not None else (ALL,):
                rollups[(subject, dimension, "hour", at_hour, value)] += n
                rollups[(subject, dimension, "day", at_day, value)] += n
    return requests, rollups
