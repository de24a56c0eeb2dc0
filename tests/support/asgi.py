"""Driving the in-memory API through Litestar's test client: create a key, read a dashboard form's CSRF token,
sign in to the dashboard."""

from __future__ import annotations

import re
from typing import Any

import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient

Client = AsyncTestClient[Litestar]
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
WEBSITE_A = [{"resource": "website", "id": "site-a", "scopes": ["read:data"]}]  # read:data on website site-a


async def create(client: Client, admin: str, **body: Any) -> dict[str, Any]:
    """``POST /v1/keys`` as ``admin`` (a key named "test key", plus ``body``); the created key, secret included."""
    response = await client.post("/v1/keys", json={"name": "test key", **body}, headers={"x-api-key": admin})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def csrf_of(page: httpx.Response) -> str:
    """The CSRF token of the form on a dashboard page."""
    match = CSRF.search(page.text)
    assert match, page.text
    return match.group(1)


async def sign_in(client: Client, key: str) -> httpx.Response:
    """Post the dashboard's sign-in form with ``key``; the answer."""
    page = await client.get("/dashboard/sign-in")
    return await client.post("/dashboard/sign-in", data={"api_key": key, "csrf_token": csrf_of(page)})
