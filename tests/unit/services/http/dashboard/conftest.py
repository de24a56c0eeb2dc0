"""The dashboard over the in-memory API (the HTTP route tests' fixtures, from the conftest above), driven
like a browser without script: cookies kept, redirects seen (not followed), forms posted with their CSRF
token."""

from collections.abc import AsyncIterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app) as test_client:
        test_client.follow_redirects = False
        yield test_client
