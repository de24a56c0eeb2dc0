"""``POST /v1/verify``: may this key do this scope here? For other services; the hot path."""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, SkipValidation  # the gate comes from our own provider: no per-request isinstance

from keyledger.domain.access import DATA_KINDS, SCOPES
from keyledger.services.http.auth import Gate
from keyledger.services.http.errors import ApiError, error_responses
from keyledger.services.http.schemas import Access, RateLimitState, VerifyAnswer, VerifyRequest
from keyledger.services.verify.throttles import RateDecision
from keyledger.services.verify.verifier import Verdict


@post("/v1/verify", status_code=200, responses=error_responses(400, 401, 413, 429, 503),
      security=[{"bearer": []}, {}])  # a verify credential (or admin key); none only in open mode
async def verify(request: Request[Any, Any, Any], data: JSONBody[VerifyRequest],
                 gate: NamedDependency[SkipValidation[Gate]]) -> VerifyAnswer:
    """Always 200 for a well-formed request: ``valid``, ``code`` and why."""
    caller = await gate.identify_caller(request)
    if data.scope not in SCOPES:
        raise ApiError(400, "VALIDATION_ERROR", f"unknown scope {data.scope!r}")
    if data.data is not None and data.data not in DATA_KINDS:
        raise ApiError(400, "VALIDATION_ERROR", f"unknown data kind {data.data!r}")
    verdict, decision = await gate.verify(request, data, caller)
    return answer(verdict, decision)


def answer(verdict: Verdict, decision: RateDecision | None) -> VerifyAnswer:
    """The response body for ``verdict`` (and the key's rate-limit state, when a key was identified)."""
    key, granted = verdict.key, verdict.granted_by
    return VerifyAnswer(
        valid=verdict.valid, code=verdict.code, reason=verdict.reason,
        key_id=key.key_id if key else None, organization_id=key.organization_id if key else None,
        scopes=list(verdict.scopes),
        granted_by=Access(resource=granted.resource, scopes=list(granted.scopes), id=granted.id) if granted else None,
        expires_at=key.expires_at if key else None,
        ratelimit=RateLimitState(limit=decision.limit, remaining=decision.remaining, reset=decision.reset)
        if decision else None,
    )


VERIFY_ROUTES = [verify]
