"""Calls to a running API that many end-to-end tests make, asserting the documented status."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.asgi import csrf_of
from tests.support.wait import until_sync


def create(client: httpx.Client, admin: str, **body: Any) -> dict[str, Any]:
    """Create a key (``POST /v1/keys``) with ``admin``; the 201 body, secret included."""
    response = client.post("/v1/keys", json={"name": "test key", **body}, headers={"x-api-key": admin})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def verify(client: httpx.Client, key: str, scope: str, **request: Any) -> dict[str, Any]:
    """``POST /v1/verify`` for ``key`` and ``scope``; the 200 body."""
    response = client.post("/v1/verify", json={"key": key, "scope": scope, **request})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def usage_with(client: httpx.Client, auditor: str, request_id: str) -> list[dict[str, Any]]:
    """The usage records stored so far that carry ``request_id``."""
    items = client.get("/v1/audit", params={"kind": "usage", "limit": 1000}, headers={"x-api-key": auditor}).json()
    return [item for item in items["items"] if item["request_id"] == request_id]


def usage_for(client: httpx.Client, auditor: str, request_id: str) -> list[dict[str, Any]]:
    """The usage records carrying ``request_id``, once the sink has stored at least one."""
    return until_sync(lambda: usage_with(client, auditor, request_id), timeout=15, interval=0.05,
                      what=f"a usage event with request id {request_id}")


def sign_in(browser: httpx.Client, key: str) -> httpx.Response:
    """Post the dashboard's sign-in form (with its CSRF token) as ``key``; the answer (303 when signed in)."""
    return browser.post("/dashboard/sign-in", data={"api_key": key, "csrf_token": csrf_of(browser.get(
        "/dashboard/sign-in"))})
