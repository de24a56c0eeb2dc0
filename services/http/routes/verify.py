"""``POST /v1/verify`` for services, and the health endpoints."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

import msgspec
from litestar import Request, post

from keyledger.domain.access import DATA_KINDS, SCOPES
from keyledger.services.http.app import services_of
from keyledger.services.http.auth import presented_key, record_usage
from keyledger.services.http.errors import ApiError, auth_required
from keyledger.domain.rate import limit_of
from keyledger.services.verify.throttles import RateDecision
from keyledger.services.http.ratelimit_headers import attach_decision
from keyledger.services.verify.verifier import Verdict
from keyledger.services.keys.views import split_access

Short = Annotated[str, msgspec.Meta(max_length=500)]


class VerifyBody(msgspec.Struct, forbid_unknown_fields=True):
    """A service asks: may ``key`` do ``scope`` on this website / data kind?"""

    key: Annotated[str, msgspec.Meta(max_length=4096)]
    scope: Annotated[str, msgspec.Meta(max_length=64)]
    website_id: Short | None = None
    data: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    ip: Short | None = None
    user_agent: Short | None = None


def _check_caller(request: Request) -> None:  # type: ignore[type-arg]
    expected = services_of(request).settings.verify_token
    if expected is None:
        return
    presented = presented_key(request) or ""
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise auth_required("verify requires the service token (KEYLEDGER_VERIFY_TOKEN)")


@post("/v1/verify", status_code=200)
async def verify(request: Request, data: VerifyBody) -> dict[str, Any]:  # type: ignore[type-arg]
    """Always 200 for a well-formed request: ``valid``, ``code`` and why."""
    _check_caller(request)
    if data.scope not in SCOPES:
        raise ApiError(400, "VALIDATION_ERROR", f"unknown scope {data.scope!r}")
    if data.data is not None and data.data not in DATA_KINDS:
        raise ApiError(400, "VALIDATION_ERROR", f"unknown data kind {data.data!r}")
    services = services_of(request)
    verdict, decision = await _decide(request, data)
    record_usage(request, action="verify", verdict=verdict, presented=data.key, scope=data.scope,
                 website_id=data.website_id, data=data.data, ip=data.ip, user_agent=data.user_agent)
    if verdict.valid and verdict.key is not None:
        services.last_used.touch(verdict.key.key_id, services.clock())
    return _answer(verdict, decision)


async def _decide(request: Request, data: VerifyBody) -> tuple[Verdict, RateDecision | None]:  # type: ignore[type-arg]
    services = services_of(request)
    blocked = services.auth_failures.refusal(data.ip) if data.ip else None
    if blocked is not None:
        attach_decision(request, blocked)
        return Verdict(valid=False, code="RATE_LIMITED", reason="too many failed attempts from this client ip"), None
    verdict = await services.verifier.verify(data.key, data.scope, data.website_id, data.data)
    if data.ip and verdict.code in ("MALFORMED", "NOT_FOUND"):
        services.auth_failures.record(data.ip)
    key, decision = verdict.key, None
    if key is not None and verdict.code in ("VALID", "FORBIDDEN"):
        decision = await services.limiter.hit(key.key_id, limit_of(key, services.settings.rate_tiers()))
        attach_decision(request, decision)
        if not decision.allowed:
            verdict = Verdict(valid=False, code="RATE_LIMITED", reason="rate limit exceeded", key=key)
    return verdict, decision


def _answer(verdict: Verdict, decision: RateDecision | None) -> dict[str, Any]:
    key = verdict.key
    granted = None
    if verdict.granted_by is not None:
        granted = split_access((verdict.granted_by,))[1] or [{"resource": "global",
                                                               "scopes": list(verdict.granted_by.scopes)}]
    return {
        "valid": verdict.valid, "code": verdict.code, "reason": verdict.reason,
        "key_id": key.key_id if key else None, "organization_id": key.organization_id if key else None,
        "scopes": list(verdict.scopes), "granted_by": granted[0] if granted else None,
        "expires_at": key.expires_at if key else None, "ratelimit": decision.body() if decision else None,
    }


VERIFY_ROUTES = [verify]
