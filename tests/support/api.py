"""Calls to a running API that many end-to-end tests make, asserting the documented status."""

from __future__ import annotations

from typing import Any

import httpx


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
