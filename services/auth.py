"""Authentication of API callers by their key, and request metadata for events."""

from __future__ import annotations

import uuid

from litestar import Request

from domain.key import KeyState
from services.app import services_of
from services.event_store import Metadata
from services.http_errors import auth_required, forbidden
from services.key_service import utc_now



def presented_key(request: Request) -> str | None:  # type: ignore[type-arg]
    """The key from ``Authorization: Bearer <key>`` or ``x-api-key: <key>``; None if absent."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    api_key = request.headers.get("x-api-key")
    return api_key.strip() if api_key and api_key.strip() else None


async def require_scope(request: Request, scope: str) -> KeyState:  # type: ignore[type-arg]
    """The caller's key if it is valid and holds ``scope`` globally; else 401 or 403."""
    presented = presented_key(request)
    if presented is None:
        raise auth_required()
    services = services_of(request)
    verdict = await services.verifier.verify(presented, scope)
    if verdict.code == "FORBIDDEN":
        raise forbidden()
    if not verdict.valid or verdict.key is None:
        raise auth_required()
    services.last_used.touch(verdict.key.key_id, utc_now())
    return verdict.key


def request_metadata(request: Request, actor: KeyState | None) -> Metadata:  # type: ignore[type-arg]
    """Who did it (acting key id), from where (IP, user agent) and the request id."""
    return Metadata(
        actor=f"key:{actor.key_id}" if actor is not None else None,
        ip=request.client.host if request.client else None,
        user_agent=(request.headers.get("user-agent") or "")[:300] or None,
        request_id=(request.headers.get("x-request-id") or "")[:100] or uuid.uuid4().hex,
    )
