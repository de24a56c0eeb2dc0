"""Authentication of API callers by their key, usage events for each call, request metadata."""

from __future__ import annotations

import functools
import itertools
import os
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from keyledger.domain import token
from keyledger.domain.access import check_access
from keyledger.domain.key import KeyState
from keyledger.domain.rate import limit_of
from keyledger.domain.usage import UsageEvent, attempted_start
from keyledger.services.http.app import services_of
from keyledger.domain.recorded import Metadata
from keyledger.services.http.errors import ApiError, auth_required, forbidden
from keyledger.services.http.ratelimit_headers import attach_decision
from keyledger.services.verify.verifier import Verdict

Connection = ASGIConnection[Any, Any, Any, Any]
START_LENGTH = len("kl_") + token.KEY_ID_LENGTH + 4
_ID_PREFIX, _ID_COUNTER = os.urandom(8).hex(), itertools.count()


def new_id() -> str:
    """A process-unique 32-hex-char id (random per-process prefix + counter): no syscall per call,
    unlike ``uuid4`` (``os.urandom``, which also releases the GIL to granian's I/O thread)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def presented_key(request: Connection) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``x-api-key: <key>``; None if absent."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    api_key = request.headers.get("x-api-key")
    return api_key.strip() if api_key and api_key.strip() else None


def request_id(request: Connection) -> str:
    """The caller's ``x-request-id`` (trimmed), else one made up once for this request."""
    state = request.scope.setdefault("state", {})
    if "request_id" not in state:
        given = next((v for k, v in request.scope["headers"] if k == b"x-request-id"), b"")
        state["request_id"] = given.decode("latin-1")[:100] or new_id()
    return str(state["request_id"])


def record_usage(request: Connection, *, action: str, verdict: Verdict | None, presented: str | None,
                 scope: str | None, website_id: str | None = None, data: str | None = None,
                 ip: str | None = None, user_agent: str | None = None, outcome: str | None = None) -> None:
    """Queue the usage event of one verification or authenticated call (never the secret)."""
    key = verdict.key if verdict is not None else None
    granted = verdict.granted_by if verdict is not None else None
    services = services_of(request)
    services.usage.emit(UsageEvent(
        id=new_id(), at=services.clock(), action=action,
        outcome=outcome or (verdict.code if verdict is not None else "MISSING"),
        key_id=key.key_id if key else None,
        start=key.start if key else (attempted_start(presented, START_LENGTH) if presented else None),
        organization_id=key.organization_id if key else None, scope=scope,
        granted_by=granted.label() if granted else None,
        reason=verdict.reason if verdict is not None else "no key presented",
        website_id=website_id, data=data, ip=ip, user_agent=user_agent, request_id=request_id(request)))


async def require_scope(request: Connection, scopes: tuple[str, ...]) -> KeyState:
    """The caller's key if it is valid, within its rate limit and holds one of ``scopes`` globally.

    Otherwise 401 (and a failure counted against the client's IP), 429 or 403. The
    key's rate-limit numbers go out as ``X-RateLimit-*`` headers on whatever follows,
    and every call leaves exactly one usage event.
    """
    services = services_of(request)
    client = request.client.host if request.client else "unknown"
    action = f"{request.scope.get('method', '')} {request.url.path}"
    presented = presented_key(request)
    usage = functools.partial(record_usage, request, action=action, presented=presented, ip=client,
                              user_agent=(request.headers.get("user-agent") or "")[:300] or None)
    blocked = services.auth_failures.refusal(client)
    if blocked is not None:
        attach_decision(request, blocked)
        usage(verdict=None, scope=scopes[0], outcome="RATE_LIMITED")
        raise ApiError(429, "RATE_LIMITED", "Too many failed authentication attempts")
    verdict = await services.verifier.verify(presented, scopes[0]) if presented is not None else None
    verdict, scope = _any_scope(verdict, scopes)
    if verdict is None or verdict.key is None or verdict.code not in ("VALID", "FORBIDDEN"):
        services.auth_failures.record(client)
        usage(verdict=verdict, scope=scope)
        if verdict is not None and verdict.code == "RATE_LIMITED":
            raise ApiError(429, "RATE_LIMITED", "Too many attempts for this key")
        raise auth_required()
    key = verdict.key
    decision = await services.limiter.hit(key.key_id, limit_of(key, services.settings.rate_tiers()))
    attach_decision(request, decision)
    if not decision.allowed:
        usage(verdict=verdict, scope=scope, outcome="RATE_LIMITED")
        raise ApiError(429, "RATE_LIMITED", "Rate limit exceeded")
    usage(verdict=verdict, scope=scope)
    if verdict.code == "FORBIDDEN":
        raise forbidden()
    services.last_used.touch(key.key_id, services.clock())
    return key


def _any_scope(verdict: Verdict | None, scopes: tuple[str, ...]) -> tuple[Verdict | None, str]:
    """A FORBIDDEN verdict for the first scope becomes VALID if a later scope is granted;
    returns the verdict and the scope it speaks of."""
    if verdict is None or verdict.code != "FORBIDDEN" or verdict.key is None:
        return verdict, scopes[0]
    for scope in scopes[1:]:
        decision = check_access(verdict.key.access, scope)
        if decision.allowed:
            return Verdict(valid=True, code="VALID", reason=decision.reason, key=verdict.key,
                           granted_by=decision.granted_by), scope
    return verdict, scopes[0]


async def admin_guard(connection: Connection, _: BaseRouteHandler) -> None:
    """Route guard: the caller must hold ``admin:apikeys``; runs before the body is parsed,
    so even a malformed request body gets a 401/403/429 first and the rate-limit headers."""
    connection.state["admin"] = await require_scope(connection, ("admin:apikeys",))


async def audit_guard(connection: Connection, _: BaseRouteHandler) -> None:
    """Route guard for the audit trail: ``read:export`` or ``admin:apikeys``."""
    connection.state["admin"] = await require_scope(connection, ("read:export", "admin:apikeys"))


def acting_admin(request: Connection) -> KeyState:
    """The key a guard authenticated for this request."""
    admin: KeyState = request.state["admin"]
    return admin


def request_metadata(request: Request, actor: KeyState | None) -> Metadata:  # type: ignore[type-arg]
    """Who did it (acting key id), from where (IP, user agent) and the request id."""
    return Metadata(
        actor=f"key:{actor.key_id}" if actor is not None else None,
        ip=request.client.host if request.client else None,
        user_agent=(request.headers.get("user-agent") or "")[:300] or None,
        request_id=request_id(request),
    )
