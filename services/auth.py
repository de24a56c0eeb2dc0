"""Authentication of API callers by their key, and request metadata for events."""

from __future__ import annotations

import uuid

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from domain.key import KeyState
from services.app import services_of
from services.event_store import Metadata
from domain.rate import limit_of
from services.http_errors import ApiError, auth_required, forbidden
from services.throttle import attach_decision
from services.key_service import utc_now



def presented_key(request: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``x-api-key: <key>``; None if absent."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    api_key = request.headers.get("x-api-key")
    return api_key.strip() if api_key and api_key.strip() else None


async def require_scope(request: ASGIConnection[Any, Any, Any, Any], scope: str) -> KeyState:
    """The caller's key if it is valid, within its rate limit and holds ``scope`` globally.

    Otherwise 401 (and a failure counted against the client's IP), 429 or 403. The
    key's rate-limit numbers go out as ``X-RateLimit-*`` headers on whatever follows.
    """
    services = services_of(request)
    client = request.client.host if request.client else "unknown"
    blocked = services.auth_failures.refusal(client)
    if blocked is not None:
        attach_decision(request, blocked)
        raise ApiError(429, "RATE_LIMITED", "Too many failed authentication attempts")
    presented = presented_key(request)
    verdict = await services.verifier.verify(presented, scope) if presented is not None else None
    if verdict is None or verdict.key is None or verdict.code not in ("VALID", "FORBIDDEN"):
        services.auth_failures.record(client)
        if verdict is not None and verdict.code == "RATE_LIMITED":
            raise ApiError(429, "RATE_LIMITED", "Too many attempts for this key")
        raise auth_required()
    key = verdict.key
    decision = await services.limiter.hit(key.key_id, limit_of(key, services.settings.rate_tiers()))
    attach_decision(request, decision)
    if not decision.allowed:
        raise ApiError(429, "RATE_LIMITED", "Rate limit exceeded")
    if verdict.code == "FORBIDDEN":
        raise forbidden()
    services.last_used.touch(key.key_id, utc_now())
    return key


async def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Route guard: the caller must hold ``admin:apikeys``; runs before the body is parsed,
    so even a malformed request body gets a 401/403/429 first and the rate-limit headers."""
    connection.state["admin"] = await require_scope(connection, "admin:apikeys")


def acting_admin(request: Request) -> KeyState:  # type: ignore[type-arg]
    """The admin key :func:`admin_guard` authenticated for this request."""
    admin: KeyState = request.state["admin"]
    return admin


def request_metadata(request: Request, actor: KeyState | None) -> Metadata:  # type: ignore[type-arg]
    """Who did it (acting key id), from where (IP, user agent) and the request id."""
    return Metadata(
        actor=f"key:{actor.key_id}" if actor is not None else None,
        ip=request.client.host if request.client else None,
        user_agent=(request.headers.get("user-agent") or "")[:300] or None,
        request_id=(request.headers.get("x-request-id") or "")[:100] or uuid.uuid4().hex,
    )
