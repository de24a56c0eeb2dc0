"""The usage analytics call through the SDK against a real server: ``usage`` decodes the series (every bucket,
the totals per group) with the sync and the async client alike, and a bad query raises ``ValidationError``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from keyledger_client import AsyncKeyledger, Keyledger, UsageBucket, UsageSeries, ValidationError
from tests.support.server import ApiServer
from tests.support.wait import until_sync


def test_usage_series_through_the_sdk(keyledger_server: ApiServer, admin_client: Keyledger, admin_key: str,
                                      verify_credential: str) -> None:
    made = admin_client.create("charted", access=[{"resource": "website", "id": "site-a", "scopes": ["read:data"]}])
    with Keyledger(keyledger_server.url, verify_credential) as service:
        for scope in ("read:data", "read:data", "write:data"):
            service.verify(made.secret, scope, website_id="site-a")
    since = datetime(2030, 1, 1, tzinfo=UTC)  # the test servers' clocks start then
    until = since + timedelta(days=1)

    def stored() -> UsageSeries | None:
        found = admin_client.usage(key_id=made.id, since=since, until=until)
        return found if found.total == 3 else None

    series = until_sync(stored, what="the audit sink to store the verifications")
    assert series is not None
    assert (series.interval, series.group_by, series.start, series.end) == ("hour", "outcome", since, until)
    assert len(series.buckets) == 24 and series.totals == {"VALID": 2, "FORBIDDEN": 1}
    assert series.buckets[0] == UsageBucket(start=since, total=3, counts={"VALID": 2, "FORBIDDEN": 1})

    async def by_website() -> UsageSeries:
        async with AsyncKeyledger(keyledger_server.url, admin_key) as admin:
            return await admin.usage(key_id=made.id, since=since, until=until, interval="day", group_by="website")

    daily = asyncio.run(by_website())
    assert [(b.start, b.counts) for b in daily.buckets] == [(since, {"site-a": 3})]
    with pytest.raises(ValidationError, match="from must not be after to"):
        admin_client.usage(since=until, until=since)
