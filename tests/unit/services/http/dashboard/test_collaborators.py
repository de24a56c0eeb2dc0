"""The dashboard works with the collaborators the app was given (injected, never its own): sessions live in
the app's session table, and the charts show what the app's hourly usage counts say."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from keyledger.domain.access import AccessEntry
from keyledger.services.http.app import create_app
from keyledger.services.http.components import Components
from tests.support.asgi import csrf_of, sign_in
from tests.support.clock import SettableClock
from tests.unit.services.http.fakes import MemorySessionTable

Client = AsyncTestClient[Litestar]


class CountedUsage:
    """Hourly counts for one key: ``count`` valid verifications in the hour before the clock's time."""

    def __init__(self, key_id: str, count: int, clock: SettableClock) -> None:
        self.key_id, self.count, self.clock = key_id, count, clock
        self.asked: list[Sequence[str]] = []

    async def hourly(self, key_ids: Sequence[str], since: datetime,
                     until: datetime) -> dict[str, list[tuple[datetime, str, int]]]:
        self.asked.append(key_ids)
        hour = (self.clock() - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
        return {self.key_id: [(hour, "VALID", self.count)]} if self.key_id in key_ids else {}


async def test_sessions_live_in_the_apps_session_table(client: Client, admin: str, components: Components) -> None:
    table = components.dashboard_sessions
    assert isinstance(table, MemorySessionTable) and not table.rows
    assert (await sign_in(client, admin)).status_code == 303
    assert len(table.rows) == 1  # the app's table: every process of the app reads the same one
    page = await client.get("/dashboard/keys")
    out = await client.post("/dashboard/sign-out", data={"csrf_token": csrf_of(page)})
    assert out.status_code == 303 and not table.rows


async def test_the_charts_show_the_apps_hourly_counts(components: Components, clock: SettableClock) -> None:
    admin = await components.keys.create("admin", access=(AccessEntry(resource="global", scopes=("admin:apikeys",)),))
    used = await components.keys.create("used", access=(AccessEntry(resource="global", scopes=("read:data",)),))
    counts = CountedUsage(used.state.key_id, 7, clock)
    async with AsyncTestClient(create_app(components=msgspec.structs.replace(components, usage_counts=counts))) \
            as client:
        client.follow_redirects = False
        assert (await sign_in(client, admin.token)).status_code == 303
        listing = await client.get("/dashboard/keys")
        assert listing.status_code == 200
        assert "7 verifications in the last 24 hours" in listing.text
        assert "0 verifications in the last 24 hours" in listing.text  # the admin key: no counts
        detail = await client.get(f"/dashboard/keys/{used.state.key_id}")
        assert detail.status_code == 200 and counts.asked[-1] == [used.state.key_id]
