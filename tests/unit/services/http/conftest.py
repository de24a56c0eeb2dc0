"""The API over in-memory components: Litestar's test client, no servers, no lifespan work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from keyledger.domain.access import AccessEntry
from keyledger.services.http.app import create_app
from keyledger.services.http.components import Components
from tests.support.clock import SettableClock
from tests.unit.services.http.fakes import memory_components

T0 = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


@pytest.fixture
def components(clock: SettableClock) -> Components:
    return memory_components(clock)


@pytest.fixture
def app(components: Components) -> Litestar:
    return create_app(components=components)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app) as test_client:
        yield test_client


@pytest.fixture
async def admin(components: Components) -> str:
    """The secret of a global ``admin:apikeys`` key (as the bootstrap admin)."""
    issued = await components.keys.create("admin", access=(AccessEntry(resource="global", scopes=("admin:apikeys",)),))
    return issued.token
