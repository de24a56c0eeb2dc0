"""``/v1/analytics/usage``: a usage time series (needs ``admin:apikeys``) of one key, one owner's keys, one
organization's keys or every key, per hour or day, by outcome, scope or website. An organization's admin
sees only its organization's keys: another organization's key is 404, as in ``/v1/keys``; another
organization is 403, as in the hygiene report. The dashboard's charts read the same series."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from litestar import get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter

from keyledger.domain.analytics import UsageSeries, parse_time, series_range
from keyledger.domain.key import KeyState
from keyledger.services.http.deps import components_of
from keyledger.services.http.errors import ApiError, error_responses
from keyledger.services.http.guards import SECURITY, admin_guard
from keyledger.services.http.ports import KeyDirectory, UsageAnalytics
from keyledger.services.http.routes.keys import visible_key
from keyledger.services.http.routes.reports import organization_of

_TEXT = r"^[^\x00]*$"
KeyIdQ = Annotated[str | None, QueryParameter(max_length=64, pattern=_TEXT, description="Only this key")]
OwnerQ = Annotated[str | None, QueryParameter(max_length=200, pattern=_TEXT, description=(
    "Only this owner's keys (``owner_id`` on keys)"))]
OrganizationQ = Annotated[str | None, QueryParameter(max_length=200, pattern=_TEXT, description=(
    "Only this organization's keys (an organization's admin: its own, which is also the default)"))]
FromQ = Annotated[str | None, QueryParameter(name="from", max_length=64, description=(
    "Start, ISO 8601 with a time zone (rounded down to the interval); default: 24 hours (interval=hour) or "
    "30 days (interval=day) before ``to``"))]
ToQ = Annotated[str | None, QueryParameter(max_length=64, description=(
    "End, exclusive, ISO 8601 with a time zone (rounded up to the interval); default: now, its bucket included"))]
IntervalQ = Annotated[str | None, QueryParameter(max_length=16, description=(
    "``hour`` (default; at most 366 days) or ``day`` (at most 3,660 days)"))]
GroupQ = Annotated[str | None, QueryParameter(max_length=16, description=(
    "``outcome`` (default), ``scope`` or ``website``; ``\"\"`` is the group of requests that named none"))]


def owner_keys(cache: KeyDirectory, organization: str | None, owner_id: str) -> list[str]:
    """The ids of ``owner_id``'s keys (of ``organization`` only, when one is given)."""
    return [s.key_id for s in cache.states(organization)
            if s.owner_id == owner_id and (organization is None or s.organization_id == organization)]


def provide_analytics(state: State) -> UsageAnalytics:
    """The usage series reader (the one the dashboard's charts use)."""
    return components_of(state).usage_counts


@get("/v1/analytics/usage", guards=[admin_guard], security=SECURITY,
     dependencies={"analytics": Provide(provide_analytics, sync_to_thread=False)},
     responses=error_responses(400, 401, 403, 404, 429, 503))
async def usage_series(admin: NamedDependency[KeyState], cache: NamedDependency[KeyDirectory],
                       analytics: NamedDependency[UsageAnalytics], now: NamedDependency[datetime],
                       key_id: KeyIdQ = None, owner_id: OwnerQ = None, organization_id: OrganizationQ = None,
                       from_: FromQ = None, to: ToQ = None, interval: IntervalQ = None,
                       group_by: GroupQ = None) -> UsageSeries:
    """Requests per ``interval`` from ``from`` to ``to``, grouped by ``group_by``: every bucket of the range
    (``{start, total, counts: {group: n}}``, empty ones too) and the range's ``totals`` per group. Counts
    every verification and authenticated API call that named a key."""
    span = series_range(now, parse_time(from_, "from"), parse_time(to, "to"), interval, group_by)
    organization = organization_of(admin, organization_id)
    key_ids: list[str] | None = None
    if key_id is not None:
        state = visible_key(cache, admin, key_id)
        if organization is not None and state.organization_id != organization:
            raise ApiError(404, "NOT_FOUND", f"key {key_id} not found in organization {organization}")
        key_ids = [key_id]
    if owner_id is not None:
        owned = owner_keys(cache, organization, owner_id)
        key_ids = owned if key_ids is None else [k for k in key_ids if k in owned]
        if not key_ids:
            raise ApiError(404, "NOT_FOUND", f"no key of owner {owner_id} found" + (
                f" (with key {key_id})" if key_id is not None else ""))
    return await analytics.series(span, key_ids, organization)


ANALYTICS_ROUTES = [usage_series]
