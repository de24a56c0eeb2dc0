"""The verify answer every transport gives (``POST /v1/verify``'s body, forward-auth's 200 body, what the
in-process verifier returns), and the access entry as the API shows it."""

from __future__ import annotations

from datetime import datetime

import msgspec

from keyledger.services.verify.credits import CreditDecision
from keyledger.services.verify.owners import OwnerDecision
from keyledger.services.verify.throttles import RateDecision
from keyledger.services.verify.verifier import Verdict, VerdictCode


class Access(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """One resource grant: ``scopes`` on ``resource`` (``id`` names the website of a ``website`` grant)."""

    resource: str
    scopes: list[str]
    id: str | None = None


class RateLimitState(msgspec.Struct, kw_only=True):
    """The verified key's budget: requests per window, what is left, window end (Unix seconds)."""

    limit: int
    remaining: int
    reset: int


class CreditsState(msgspec.Struct, kw_only=True):
    """The verified key's usage credits: what is left (as this replica knows it, after this verify)."""

    remaining: int


class OwnerState(msgspec.Struct, kw_only=True):
    """The verified key's owner and what is left of its shared limits (each null when it has none)."""

    owner_id: str
    ratelimit: RateLimitState | None
    credits: CreditsState | None


class VerifyAnswer(msgspec.Struct, omit_defaults=True):
    """The answer to a well-formed verify request (always HTTP 200). ``ratelimit`` is null when
    no key was identified; ``granted_by`` is the access entry that granted the scope."""

    valid: bool
    code: VerdictCode
    reason: str
    key_id: str | None
    organization_id: str | None
    scopes: list[str]
    granted_by: Access | None
    expires_at: datetime | None
    ratelimit: RateLimitState | None
    credits: CreditsState | None = None  # present for a key with credits (omitted otherwise)
    owner: OwnerState | None = None  # present for a key whose owner has shared limits (omitted otherwise)


def answer(verdict: Verdict, decision: RateDecision | None, credits: CreditDecision | None = None,
           owner: OwnerDecision | None = None) -> VerifyAnswer:
    """The answer for ``verdict`` (and the key's rate-limit state, when a key was identified; its credits,
    when it has some; its owner's shared limits, when it has an owner with some)."""
    key, granted = verdict.key, verdict.granted_by
    rate = None if decision is None else RateLimitState(limit=decision.limit, remaining=decision.remaining,
                                                        reset=decision.reset)
    # by position, in VerifyAnswer's field order (several times faster than keywords; tests compare each field)
    return VerifyAnswer(
        verdict.valid, verdict.code, verdict.reason, key.key_id if key else None, key.organization_id if key else None,
        list(verdict.scopes),
        Access(resource=granted.resource, scopes=list(granted.scopes), id=granted.id) if granted else None,
        key.expires_at if key else None, rate,
        CreditsState(remaining=credits.remaining) if credits is not None else None,
        _owner_state(owner) if owner is not None else None)


def _owner_state(owner: OwnerDecision) -> OwnerState:
    rate, credits = owner.rate, owner.credits
    return OwnerState(owner_id=owner.owner_id, credits=CreditsState(remaining=credits.remaining) if credits else None,
                      ratelimit=RateLimitState(limit=rate.limit, remaining=rate.remaining, reset=rate.reset)
                      if rate else None)
