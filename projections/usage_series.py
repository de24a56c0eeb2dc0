"""The read models behind the usage analytics API (``GET /v1/analytics/usage``):

- ``usage_hourly``: per key, hour and outcome (a key's series by outcome; also ``projections.usage_hourly``);
- ``usage_hourly_requests``: per key, hour, scope and website (a key's series by scope or website);
- ``usage_rollups``: per organization (subject ``org:<id>``) and for every key together (``all``), by hour and
  by day (``span``), by outcome, scope and website (``dimension``), so that a series over thousands of keys
  reads one row per bucket and group.

Only events that name a key count; a request that named no scope or website counts under ``""``. The audit
sink reduces each fetch's events to their :func:`combinations` here (one look at each event) and Postgres
adds those up into the three tables in one statement.
"""

from __future__ import annotations

from collections.abc import Iterable

from keyledger.domain.usage import UsageEvent

ALL = "all"  # the subject of every key's rollups; an organization's is ORG + its id
ORG = "org:"
HOUR = 3_600

# key id, organization id, hour (seconds since the epoch), outcome, scope, website id
Combination = tuple[str, str | None, int, str, str | None, str | None]


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
