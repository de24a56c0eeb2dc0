"""The one verify flow: every transport (``POST /v1/verify`` and its Litestar twin, forward-auth, the
in-process verifier) parses its request into a :class:`~keyledger.services.verify.call.VerifyCall` and
hands it to :meth:`VerifyFlow.verify`, which decides and records it the same way for all of them:

forwarded-ip failure throttle → verifier (token → cached key → remembered digest or argon2 → access →
the staleness rule) → rate limit charged to the key → verdict → the one usage event (sanitized and
redacted here) → last-used time. The transports only render the result (body, status, headers) and count
their metrics.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

import msgspec

from keyledger.domain import token
from keyledger.domain.key import KeyState
from keyledger.domain.rate import limit_of
from keyledger.domain.redaction import redaction_for
from keyledger.domain.usage import UsageEvent, attempted_start, sanitized
from keyledger.services.clock import Clock
from keyledger.services.observe.ids import new_id
from keyledger.services.verify.call import VerifyCall
from keyledger.services.verify.credits import CreditDecision, CreditLedger
from keyledger.services.verify.networks import NetworkCheck
from keyledger.services.verify.owners import OwnerDecision, OwnerDirectory
from keyledger.services.verify.ports import Confirmable, Connectivity, LastTouch, Limiter, UsageSink
from keyledger.services.verify.throttles import FailureThrottle, RateDecision
from keyledger.services.verify.verifier import Verdict, Verifier

_THROTTLED = Verdict(valid=False, code="RATE_LIMITED", reason="too many failed attempts from this client ip")
_NO_CREDITS = "usage credits exhausted: {remaining} left, {cost} needed"


def staleness_rule(cache: Confirmable, bus: Connectivity, max_staleness: float) -> Callable[[], bool]:
    """Whether this process may answer VALID now (the verifier's ``is_current``), the same in every API
    replica and in-process verifier: the store confirmed the cache within ``max_staleness`` seconds, or the
    store went away while the cache was current and the bus, connected, has announced nothing it lacks
    (``LiveKeyCache.is_current``; SECURITY.md "Never a stale VALID"). The bus is asked only when the store's
    confirmation is older than that (the warm path reads no connection state)."""
    is_current = cache.is_current

    def current() -> bool:
        return is_current(max_staleness) or is_current(max_staleness, bus.is_connected)
    return current


class Verified(msgspec.Struct, frozen=True, gc=False):
    """What the flow decided: the ``verdict``, the key's ``rate`` decision (None when no key was charged),
    the client-ip throttle's refusal (``throttled``: its ``X-RateLimit-*``/``Retry-After``, no key's), and
    the one usage ``event`` it recorded."""

    verdict: Verdict
    rate: RateDecision | None
    throttled: RateDecision | None
    event: UsageEvent
    credits: CreditDecision | None = None  # the key's credits, when it has some and the verdict got that far
    owner: OwnerDecision | None = None  # its owner's shared limits, when it names an owner that has some

    @property
    def decision(self) -> RateDecision | None:
        """The decision whose ``X-RateLimit-*`` headers go out with the answer."""
        return self.rate or self.throttled


class VerifyFlow:
    """Decides and records verify requests (:meth:`verify`); built once per process, beside the verifier."""

    def __init__(self, *, verifier: Verifier, limiter: Limiter, last_used: LastTouch, usage: UsageSink, clock: Clock,
                 rate_tiers: Mapping[str, int], forwarded_failures: FailureThrottle,
                 token_prefix: str = token.DEFAULT_PREFIX, credits: CreditLedger | None = None,
                 owners: OwnerDirectory | None = None) -> None:
        self._verifier, self._limiter, self._last_used, self._usage = verifier, limiter, last_used, usage
        self._credits = credits  # None: keys' credits are not enforced here (only in-memory fakes build it so)
        self._owners = owners  # owners' shared limits (None: not enforced here, likewise)
        self._clock, self._tiers = clock, rate_tiers
        # the end-client IPs a caller forwards are the caller's to name: counted apart from real callers'
        # addresses (the gate's throttle), so naming an admin's IP in verify requests cannot lock that admin out
        self._forwarded = forwarded_failures
        self._start_length, self._redaction = token.start_length(token_prefix), redaction_for(token_prefix)
        self.networks = NetworkCheck()  # keys' allowlists, parsed once per key state (the gate's admin check too)

    async def verify(self, call: VerifyCall) -> Verified:
        """The verdict on ``call.key`` (which must be present) and its rate decision, with its usage event
        recorded (with a durable usage sink, once it is safe) and, when VALID, the key's last use noted."""
        presented = call.key
        assert presented is not None, "a verify without a key is recorded with missing()"
        rate = throttled = credits = owner = None
        ip = call.ip
        if ip and (throttled := self._forwarded.refusal(ip)) is not None:
            verdict = _THROTTLED
        else:
            who = call.caller_ip or call.caller or "unknown"  # the argon2 queue's fair share is per caller
            verdict = await self._verifier.verify(presented, call.scope, call.website_id, call.data,
                                                  source=f"ip:{ip}" if ip else who, caller=who, now=call.at)
            if ip and verdict.code in ("MALFORMED", "NOT_FOUND"):
                self._forwarded.record(ip)
            key = verdict.key
            if key is not None and verdict.code in ("VALID", "FORBIDDEN"):
                if key.allowed_networks and verdict.valid:  # a plain key pays this one attribute read
                    verdict = self._outside(verdict, key, ip)
                rate = await self._limiter.hit(key.key_id, limit_of(key, self._tiers))  # self.charge(key), inlined
                if not rate.allowed:
                    verdict = Verdict(valid=False, code="RATE_LIMITED", reason="rate limit exceeded", key=key)
                if key.credits is not None and self._credits is not None:  # a key without credits: this check only
                    cost = call.cost if verdict.valid else 0  # a refused verify spends nothing
                    credits = self._credits.spend_held(key.key_id, key.credits_version, call.at, cost) \
                        or await self._credits.spend(key.key_id, key.credits_version, key.credits,
                                                     key.credits_set_at or key.created_at, call.at, cost)
                    if not credits.allowed and verdict.valid:
                        verdict = _short_of_credits(verdict, credits, call.cost)
                if key.owner_id is not None and self._owners is not None:  # a key without an owner: this check
                    verdict, owner, credits = await self._owner(key, key.owner_id, verdict, call, credits)
        event = self.usage_event(call.action, call.at, verdict, presented, call.scope, call.website_id, call.data, ip,
                                 call.user_agent, None, call.caller, call.caller_ip, None, call.request_id,
                                 credits.spent if credits is not None else 0)
        settled = self._usage.emit(event)
        if settled is not None:  # a durable usage sink: answered once the event is safe
            await settled
        if verdict.valid and verdict.key is not None:
            self._last_used.touch(verdict.key.key_id, call.at)
        return Verified(verdict, rate, throttled, event, credits, owner)

    async def _owner(self, key: KeyState, owner_id: str, verdict: Verdict, call: VerifyCall,
                     credits: CreditDecision | None) -> tuple[Verdict, OwnerDecision | None, CreditDecision | None]:
        """The owner's shared limits, after the key's own: a VALID verify is counted against the owner's rate
        limit and spends its credits too; refused by them, it answers RATE_LIMITED / USAGE_EXCEEDED naming the
        owner, and what it spent of the key's credits goes back. Returns the verdict, the owner's numbers and
        the key's credits decision (refunded when the owner refused)."""
        assert self._owners is not None
        limits = self._owners.get(key.organization_id or "", owner_id)
        if limits is None or (limits.rate_limit is None and limits.credits is None):
            return verdict, None, credits
        rate = owner_credits = None
        if limits.rate_limit is not None and verdict.valid:
            rate = await self._limiter.hit(limits.pool_id, limits.rate_limit)
            if not rate.allowed:
                verdict = Verdict(valid=False, code="RATE_LIMITED", key=key,
                                  reason=f"the rate limit of owner {owner_id} (shared by its keys) is exceeded")
        if limits.credits is not None and self._credits is not None:
            cost = call.cost if verdict.valid else 0
            owner_credits = self._credits.spend_held(limits.pool_id, limits.credits_version, call.at, cost) \
                or await self._credits.spend(limits.pool_id, limits.credits_version, limits.credits,
                                             limits.credits_set_at or call.at, call.at, cost)
            if not owner_credits.allowed and verdict.valid:
                verdict = Verdict(valid=False, code="USAGE_EXCEEDED", key=key, reason=(
                    f"the usage credits of owner {owner_id} (shared by its keys) are exhausted: "
                    f"{owner_credits.remaining} left, {call.cost} needed"))
        if not verdict.valid and credits is not None and credits.spent and self._credits is not None:
            credits = self._credits.refund(key.key_id, key.credits_version, credits)
        return verdict, OwnerDecision(owner_id, rate, owner_credits), credits

    def _outside(self, verdict: Verdict, key: KeyState, ip: str | None) -> Verdict:
        """``verdict`` (VALID) unless the end client's ``ip`` lies outside ``key``'s allowlist: then FORBIDDEN,
        naming the address (or that the request named none)."""
        refusal = self.networks.refusal(key, ip)
        return verdict if refusal is None else Verdict(valid=False, code="FORBIDDEN", reason=refusal, key=key)

    async def close(self) -> None:
        """Return the credits this process leased and did not spend (at shutdown)."""
        if self._credits is not None:
            await self._credits.close()

    async def missing(self, call: VerifyCall) -> UsageEvent:
        """Record a verify whose end client presented no key (nothing tried, nothing charged)."""
        event = self.usage_event(action=call.action, at=call.at, verdict=None, presented=None, scope=call.scope,
                                 website_id=call.website_id, data=call.data, ip=call.ip, user_agent=call.user_agent,
                                 caller=call.caller, caller_ip=call.caller_ip, request_id=call.request_id)
        await self.record(event)
        return event

    def charge(self, key: KeyState) -> Awaitable[RateDecision]:
        """Count one request against ``key``'s rate limit (its own, else its tier's)."""
        return self._limiter.hit(key.key_id, limit_of(key, self._tiers))

    def touch(self, key: KeyState, at: datetime) -> None:
        """Note a successful use of ``key`` (no I/O)."""
        self._last_used.touch(key.key_id, at)

    def usage_event(self, action: str, at: datetime | None, verdict: Verdict | None, presented: str | None,
                    scope: str | None, website_id: str | None = None, data: str | None = None, ip: str | None = None,
                    user_agent: str | None = None, outcome: str | None = None, caller: str | None = None,
                    caller_ip: str | None = None, reason: str | None = None,
                    request_id: str | None = None, credits_spent: int = 0) -> UsageEvent:
        """The usage event of one verification or authenticated call, every text field made storable and
        redacted (:func:`~keyledger.domain.usage.sanitized`: never a secret); of an unverified key only
        what :func:`~keyledger.domain.usage.attempted_start` allows."""
        key = verdict.key if verdict is not None else None
        granted = verdict.granted_by if verdict is not None else None
        if key is not None:
            start: str | None = key.start
        elif presented:
            well_formed = verdict is not None and verdict.code != "MALFORMED"
            start = attempted_start(presented, self._start_length, well_formed) or None
        else:
            start = None
        # by position, in UsageEvent's field order (tests/unit/services/verify/test_flow.py checks each field)
        return sanitized(UsageEvent(
            new_id(), at or self._clock(), action, outcome or (verdict.code if verdict is not None else "MISSING"),
            key.key_id if key else None, start, key.organization_id if key else None, scope,
            granted.label() if granted else None,
            reason or (verdict.reason if verdict is not None else "no key presented"),
            website_id, data, ip, user_agent, request_id, caller, caller_ip, credits_spent), self._redaction)

    async def record(self, event: UsageEvent) -> None:
        """Queue ``event`` for the audit trail; with a durable usage sink (``KEYLEDGER_USAGE_DURABLE``),
        return once it is safe, so that the request is answered only then."""
        settled = self._usage.emit(event)
        if settled is not None:
            await settled


def _short_of_credits(verdict: Verdict, credits: CreditDecision, cost: int) -> Verdict:
    """A VALID verdict refused for the key's credits: ``USAGE_EXCEEDED`` (``UNAVAILABLE`` when Postgres could
    not lease and this process held too few), nothing spent."""
    if credits.unavailable:
        return Verdict(valid=False, code="UNAVAILABLE", reason="usage credits could not be leased; retry",
                       key=verdict.key)
    reason = _NO_CREDITS.format(remaining=credits.remaining, cost=cost)
    return Verdict(valid=False, code="USAGE_EXCEEDED", reason=reason, key=verdict.key, granted_by=verdict.granted_by)
